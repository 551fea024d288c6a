package gateway

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
)

// The simulator refuses what Meta refuses. Each schedule here is one the
// local check refuses, naming the field; sent anyway, on purpose, past that
// check (the Graph client's own Validate knows neither the clock nor the
// time zone database), it comes back as Meta's error: a *whatsapp.GraphError
// with code 100, HTTP 400, Meta's message and the field in
// error_data.details. Meta's settings stay as they were.
func TestSettingsMetaRefusesWhatTheLocalCheckRefuses(t *testing.T) {
	const token = "refuse-test-token"
	sim := newSettingsSim(t, token)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	before := sim.Settings("1000000001")
	ctx := context.Background()

	wantMeta := func(t *testing.T, err error, message, details string) {
		t.Helper()
		var ge *whatsapp.GraphError
		if !errors.As(err, &ge) {
			t.Fatalf("got %v (%T), want Meta's error", err, err)
		}
		if ge.Code != 100 || ge.HTTPStatus != http.StatusBadRequest || ge.Message != message || !strings.Contains(ge.Details, details) {
			t.Errorf("Meta's error: code %d, HTTP %d, %q, details %q\nwant code 100, HTTP 400, %q, details with %q",
				ge.Code, ge.HTTPStatus, ge.Message, ge.Details, message, details)
		}
		if me, ok := AsMetaError(err); !ok || me.Code != 100 || me.Details != ge.Details {
			t.Errorf("AsMetaError: %+v %v", me, ok)
		}
	}

	// A past holiday, through the gateway's settings client with Check
	// skipped: Plan reads Meta's settings, Apply sends the file's.
	t.Run("past holiday", func(t *testing.T) {
		c, err := parseCalling(t, `
call_hours:
  status: enabled
  timezone: Europe/Paris
  weekly: [{day: monday, open: "0900", close: "1700"}]
  holidays: [{date: 2026-05-31, start: "0000", end: "2359"}]
`)
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckCalling(now)
		if err == nil || !strings.Contains(err.Error(), "numbers[0].calling.call_hours.holidays[0].date: 2026-05-31 is in the past (today is 2026-06-01 in Europe/Paris)") {
			t.Fatalf("the local check: %v", err)
		}
		t.Setenv("T", token)
		c.WhatsApp.GraphBaseURL = sim.GraphURL()
		client, err := NewSettingsClient(c, SettingsOptions{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := client.Plan(ctx, "1000000001")
		if err != nil || !plan.Drift() {
			t.Fatalf("plan: %+v %v", plan, err)
		}
		_, err = client.Apply(ctx, plan)
		wantMeta(t, err, "(#100) Holiday given in call_hours is a past date",
			"calling.call_hours.holiday_schedule[0].date 2026-05-31 is before today (2026-06-01 in Europe/Paris)")
	})

	// A time zone not in the IANA database, straight through the Graph
	// client.
	t.Run("unknown timezone", func(t *testing.T) {
		if _, err := parseCalling(t, `
call_hours:
  status: enabled
  timezone: Mars/Olympus_Mons
  weekly: [{day: monday, open: "0900", close: "1700"}]
`); err == nil || !strings.Contains(err.Error(), `numbers[0].calling.call_hours.timezone: "Mars/Olympus_Mons" is not an IANA timezone`) {
			t.Fatalf("the local check: %v", err)
		}
		gc := whatsapp.NewGraphClient(whatsapp.GraphConfig{BaseURL: sim.GraphURL(), AccessToken: token, Timeout: 5 * time.Second})
		err := gc.UpdateCallingSettings(ctx, "1000000001", whatsapp.CallingSettings{CallHours: &whatsapp.CallHours{
			Status: "ENABLED", TimezoneID: "Mars/Olympus_Mons",
			WeeklyOperatingHours: []whatsapp.WeeklyHours{{DayOfWeek: "MONDAY", OpenTime: "0900", CloseTime: "1700"}},
		}})
		wantMeta(t, err, "(#100) Timezone is invalid in call_hours", `calling.call_hours.timezone_id "Mars/Olympus_Mons" is not an IANA time zone`)
	})

	if after := sim.Settings("1000000001"); !reflect.DeepEqual(after, before) {
		t.Errorf("refused updates changed Meta's settings: %s", jsonText(after))
	}
	posts := 0
	for _, r := range sim.SettingsRequests() {
		if r.Method == http.MethodPost {
			posts++
			if r.Status != http.StatusBadRequest {
				t.Errorf("a POST was answered %d", r.Status)
			}
		}
	}
	if posts != 2 {
		t.Errorf("%d settings POSTs reached the simulator, want the 2 sent on purpose", posts)
	}
}

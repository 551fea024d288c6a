package gateway

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wagateway/wagateway/internal/settingstest"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// At start the gateway compares each managed number's settings with Meta's
// in the background: drift is a WARN with the diff and the gauge at 1, a
// number in step has it at 0, a number whose settings cannot be read is one
// WARN and no gauge. Nothing is written to Meta.
func TestCallingSettingsDriftAtStart(t *testing.T) {
	const token = "drift-test-token"
	srv := settingstest.NewServer(t, token)
	srv.Set(t, "1000000001", `{"status":"ENABLED","callback_permission_status":"DISABLED",
	  "call_hours":{"status":"ENABLED","timezone_id":"UTC","holiday_schedule":[{"date":"2099-01-01","start_time":"0000","end_time":"2359"}]}}`)
	srv.Set(t, "1000000002", `{"status":"DISABLED","call_icon_visibility":"DISABLE_ALL"}`)
	srv.Fail("GET settings 1000000003", 400)

	httpPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := LoopbackConfig(LoopbackOptions{HTTPPort: httpPort, UDPPort: udpPort, GraphURL: srv.URL,
		PBXAddr: "127.0.0.1:5999", PhoneNumberID: "1000000001"})
	cfg.Numbers[0].Calling = &CallingConfig{Status: "enabled", CallbackPermission: "enabled",
		CallHours: &CallHoursConfig{Status: "enabled", HoursConfig: HoursConfig{Timezone: "UTC", Weekly: []WeeklyHoursConfig{{Day: "monday", Open: "0900", Close: "1700"}}}}}
	cfg.Numbers = append(cfg.Numbers,
		NumberConfig{PhoneNumberID: "1000000002", Calling: &CallingConfig{Status: "disabled", CallIconVisibility: "disable_all"}},
		NumberConfig{PhoneNumberID: "1000000003", Calling: &CallingConfig{Status: "disabled"}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	g, err := New(cfg, &Secrets{AccessToken: token, TrunkPasswords: map[string]string{}}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if settingstest.Stubbed() {
		t.Log("the whatsapp settings methods are a stub: the test client speaks to the Graph API")
		g.settings = &settingstest.Client{BaseURL: srv.URL, Version: cfg.WhatsApp.APIVersion, Token: token}
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			t.Error(err)
		}
	})

	scrape := func() string {
		rec := httptest.NewRecorder()
		g.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(logs.FilterMessageSnippet("calling settings").All()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the start-time comparison did not finish: %v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := scrape()
	for _, want := range []string{`wagateway_calling_settings_drift{phone_number_id="1000000001"} 1`,
		`wagateway_calling_settings_drift{phone_number_id="1000000002"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m, `phone_number_id="1000000003"`) {
		t.Errorf("a number whose settings could not be read has a drift gauge")
	}

	drift := logs.FilterMessageSnippet("calling settings drift").All()
	if len(drift) != 1 || drift[0].Level != zapcore.WarnLevel || drift[0].ContextMap()["phone_number_id"] != "1000000001" {
		t.Fatalf("drift warnings: %+v", drift)
	}
	changes, _ := drift[0].ContextMap()["changes"].([]any)
	var got []string
	for _, c := range changes {
		got = append(got, c.(string))
	}
	want := []string{"call_hours.weekly_operating_hours: add 1 entry: MONDAY 0900-1700",
		"call_hours.holiday_schedule: delete 1 entry (Meta replaces call_hours whole): 2099-01-01 0000-2359",
		"callback_permission_status: DISABLED → ENABLED"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("changes logged:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	unread := logs.FilterMessageSnippet("cannot be read").All()
	if len(unread) != 1 || unread[0].Level != zapcore.WarnLevel || unread[0].ContextMap()["phone_number_id"] != "1000000003" {
		t.Errorf("read failures logged: %+v", unread)
	}
	if p := srv.Posts(); len(p) != 0 || len(srv.Uploads()) != 0 {
		t.Errorf("the daemon wrote to Meta: %d settings, %d uploads", len(p), len(srv.Uploads()))
	}
}

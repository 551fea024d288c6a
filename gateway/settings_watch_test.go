package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// newSettingsSim starts the simulator as Meta for the settings tests:
// number 1000000001 and the others named are its business numbers.
func newSettingsSim(t *testing.T, token string, more ...string) *wasim.Sim {
	t.Helper()
	sim, err := wasim.New(wasim.Config{GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:9/webhook",
		AppSecret: "s", AccessToken: token, PhoneNumberID: "1000000001"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	for _, pnid := range more {
		if err := sim.SetNumber(pnid, wasim.NumberConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	return sim
}

// seedSettings sets a number's settings at Meta as someone would outside
// the gateway (POST settings to the simulator).
func seedSettings(t *testing.T, sim *wasim.Sim, token, pnid, calling string) {
	t.Helper()
	body := `{"messaging_product":"whatsapp","calling":` + calling + `}`
	req, _ := http.NewRequest(http.MethodPost, sim.GraphURL()+"/v23.0/"+pnid+"/settings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("seeding %s: HTTP %d %s", pnid, res.StatusCode, b)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// At start the gateway compares each managed number's settings with Meta's
// (the simulator's) in the background: drift is a WARN with the diff and
// the gauge at 1, a number in step has it at 0, a number whose settings
// cannot be read (one Meta does not know) is one WARN and no gauge. Nothing
// is written to Meta: the simulator takes GETs only, without the SIP
// credentials, and its settings stay as they were.
func TestCallingSettingsDriftAtStart(t *testing.T) {
	const token = "drift-test-token"
	sim := newSettingsSim(t, token, "1000000002")
	seedSettings(t, sim, token, "1000000001", `{"status":"ENABLED","callback_permission_status":"DISABLED",
	  "call_hours":{"status":"ENABLED","timezone_id":"UTC",
	    "weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0800","close_time":"1700"}],
	    "holiday_schedule":[{"date":"2099-01-01","start_time":"0000","end_time":"2359"}]}}`)
	seedSettings(t, sim, token, "1000000002", `{"status":"DISABLED","call_icon_visibility":"DISABLE_ALL"}`)
	mark := len(sim.SettingsRequests())
	before := []any{sim.Settings("1000000001"), sim.Settings("1000000002")}

	httpPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	cfg := LoopbackConfig(LoopbackOptions{HTTPPort: httpPort, UDPPort: udpPort, GraphURL: sim.GraphURL(),
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
		`wagateway_calling_settings_drift{phone_number_id="1000000002"} 0`,
		`wagateway_graph_requests_total{action="settings_get",result="ok"} 2`,
		`wagateway_graph_requests_total{action="settings_get",result="graph_error"} 1`} {
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
	want := []string{"call_hours.weekly_operating_hours: delete 1 entry (Meta replaces call_hours whole): MONDAY 0800-1700",
		"call_hours.weekly_operating_hours: add 1 entry: MONDAY 0900-1700",
		"call_hours.holiday_schedule: delete 1 entry (Meta replaces call_hours whole): 2099-01-01 0000-2359",
		"callback_permission_status: DISABLED → ENABLED"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("changes logged:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	unread := logs.FilterMessageSnippet("cannot be read").All()
	if len(unread) != 1 || unread[0].Level != zapcore.WarnLevel || unread[0].ContextMap()["phone_number_id"] != "1000000003" {
		t.Errorf("read failures logged: %+v", unread)
	}

	reqs := sim.SettingsRequests()[mark:]
	if len(reqs) != 3 {
		t.Errorf("the simulator took %d requests, want one GET per number: %+v", len(reqs), reqs)
	}
	for _, r := range reqs {
		if r.Method != http.MethodGet || r.Endpoint != "settings" || r.Query != "" {
			t.Errorf("the daemon sent %s %s ?%s for %s", r.Method, r.Endpoint, r.Query, r.PhoneNumberID)
		}
	}
	if after := []any{sim.Settings("1000000001"), sim.Settings("1000000002")}; !reflect.DeepEqual(after, before) {
		t.Errorf("Meta's settings changed:\n %s\nwas\n %s", jsonText(after), jsonText(before))
	}
	if v := sim.Violations(); len(v) != 1 || !strings.Contains(v[0], `"1000000003"`) {
		t.Errorf("violations %q, want only the unknown number's read", v)
	}
}

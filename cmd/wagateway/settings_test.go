package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// The settings subcommands against the simulator, which plays Meta: its
// settings endpoints check what they take by Meta's rules, keep each
// number's settings and record what reached them (SettingsRequests).

const setToken = "EAAG-settings-test-token"

// settingsNowFixed is the clock of the tests, the CLI's and the
// simulator's: holidays before it are past.
var settingsNowFixed = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// settingsConfig: number 1 takes calls and has call hours; number 2 is
// managed for its settings only, with voicemail and an announcement.
const settingsConfig = `
log: {level: error}
whatsapp:
  graph_base_url: %q
  api_version: v23.0
  graph_timeout: 2s
  access_token: {env: WAGW_SET_TOKEN}
  app_secret: {env: WAGW_SET_UNSET_S}
  verify_token: {env: WAGW_SET_UNSET_V}
trunks:
  - {name: pbx, address: "127.0.0.1:5999", options_ping: false}
numbers:
  - phone_number_id: "1000000001"
    routes: [{trunk: pbx, destination: "sip:a@127.0.0.1"}]
    calling:
      status: enabled
      call_icon_visibility: default
      call_hours:
        status: enabled
        timezone: Europe/Paris
        weekly:
%s
        holidays:
          - {date: 2026-12-25, start: "0000", end: "2359"}
      callback_permission: %s
      additional_codecs: [PCMA]
      srtp_key_exchange: dtls
  - phone_number_id: "1000000002"
    calling:
      call_icons: {restrict_to_user_countries: [BR, PT]}
      voicemail:
        status: enabled
        triggers: [timeout]
        timeout_seconds: 20
        announcement_file: %s
`

const weekdays = `          - {day: monday, open: "0900", close: "1800"}
          - {day: tuesday, open: "0900", close: "1800"}
          - {day: wednesday, open: "0900", close: "1230"}
          - {day: wednesday, open: "1400", close: "1800"}`

// Meta before any apply, number 1: calling off, last year's call hours with
// two holidays (set in December, when they were to come), SDES, and Meta's
// SIP mode configured (its password is the simulator's NumberConfig).
// Number 2 has the simulator's defaults for a new number.
const metaBefore = `{"status":"DISABLED","call_icon_visibility":"DEFAULT",
 "call_hours":{"status":"ENABLED","timezone_id":"Europe/Paris",
   "weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0800","close_time":"1700"}],
   "holiday_schedule":[{"date":"2026-01-01","start_time":"0000","end_time":"2359"},{"date":"2026-05-01","start_time":"0000","end_time":"2359"}]},
 "callback_permission_status":"ENABLED",
 "srtp_key_exchange_protocol":"SDES",
 "sip":{"status":"ENABLED","servers":[{"hostname":"sip.example.com","port":5061}]}}`

const (
	metaSIPPassword = "pw-Sup3rSecret"
	metaAppID       = "4242"
)

type settingsEnv struct {
	sim    *wasim.Sim
	dir    string
	config string
	prompt string
	mark   int // SettingsRequests before the test's own
}

// newSettingsEnv starts the simulator with numbers 1 and 2, Meta's settings
// of metaBefore set as a person would in WhatsApp Manager (through the
// Graph API, by the simulator's clock of last December), then both clocks
// at settingsNowFixed, and writes the config pointing at it.
func newSettingsEnv(t *testing.T) *settingsEnv {
	t.Setenv("WAGW_SET_TOKEN", setToken)
	sim, err := wasim.New(wasim.Config{GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:9/webhook",
		AppSecret: "s", AccessToken: setToken, PhoneNumberID: "1000000001", AppID: metaAppID})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	if err := sim.SetNumber("1000000001", wasim.NumberConfig{SIPPassword: metaSIPPassword}); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetNumber("1000000002", wasim.NumberConfig{}); err != nil {
		t.Fatal(err)
	}
	e := &settingsEnv{sim: sim, dir: t.TempDir()}
	sim.SetClock(func() time.Time { return time.Date(2025, 12, 1, 12, 0, 0, 0, time.UTC) })
	e.seed(t, "1000000001", metaBefore)
	sim.SetClock(func() time.Time { return settingsNowFixed })
	settingsNow = func() time.Time { return settingsNowFixed }
	t.Cleanup(func() { settingsNow = nil })
	e.prompt = writeOggOpus(t, e.dir, "prompt.ogg", 4*time.Second)
	e.config = filepath.Join(e.dir, "gateway.yaml")
	e.write(t, weekdays, "disabled")
	return e
}

// seed sets Meta's settings of pnid as someone would outside the gateway
// (POST settings to the simulator); what it sends is not the test's.
func (e *settingsEnv) seed(t *testing.T, pnid, calling string) {
	t.Helper()
	body := `{"messaging_product":"whatsapp","calling":` + calling + `}`
	req, _ := http.NewRequest(http.MethodPost, e.sim.GraphURL()+"/v23.0/"+pnid+"/settings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+setToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("seeding %s: HTTP %d %s", pnid, res.StatusCode, b.String())
	}
	e.mark = len(e.sim.SettingsRequests())
}

func (e *settingsEnv) write(t *testing.T, weekly, callback string) {
	t.Helper()
	if err := os.WriteFile(e.config, []byte(fmt.Sprintf(settingsConfig, e.sim.GraphURL(), weekly, callback, e.prompt)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// requests are what reached the simulator's settings and media endpoints
// since the seeding.
func (e *settingsEnv) requests() []wasim.SettingsRequest {
	return e.sim.SettingsRequests()[e.mark:]
}

// posts are the settings POSTs among the requests, uploads the media POSTs.
func (e *settingsEnv) posts() []wasim.SettingsRequest { return e.only("POST", "settings") }

func (e *settingsEnv) uploads() []wasim.SettingsRequest { return e.only("POST", "media") }

func (e *settingsEnv) only(method, endpoint string) []wasim.SettingsRequest {
	var out []wasim.SettingsRequest
	for _, r := range e.requests() {
		if r.Method == method && r.Endpoint == endpoint {
			out = append(out, r)
		}
	}
	return out
}

// settingsOf is Meta's settings of both numbers as the simulator keeps them.
func (e *settingsEnv) settingsOf() map[string]any {
	return map[string]any{"1000000001": e.sim.Settings("1000000001"), "1000000002": e.sim.Settings("1000000002")}
}

// noViolations: what the CLI sent broke none of Meta's rules.
func (e *settingsEnv) noViolations(t *testing.T) {
	t.Helper()
	if v := e.sim.Violations(); len(v) != 0 {
		t.Errorf("the simulator saw Meta's rules broken: %q", v)
	}
}

// runSettings runs wagateway settings and checks the token never shows.
func runSettings(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"settings"}, args...), &out, &errb)
	if strings.Contains(out.String()+errb.String(), setToken) {
		t.Fatalf("%v printed the access token:\n%s%s", args, out.String(), errb.String())
	}
	return code, out.String(), errb.String()
}

func wantLines(t *testing.T, what, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("%s lacks %q:\n%s", what, l, out)
		}
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// diff shows the drift and sends nothing; apply uploads the announcement,
// sends both numbers, reads them back; then diff finds nothing and apply
// sends nothing.
func TestSettingsApplyThenDiff(t *testing.T) {
	e := newSettingsEnv(t)
	before := e.settingsOf()
	code, out, errs := runSettings(t, "diff", e.config)
	if code != 1 {
		t.Fatalf("diff before apply: exit %d, want 1 (drift)\n%s%s", code, out, errs)
	}
	wantLines(t, "diff", out,
		"1000000001: 8 change(s)",
		"  status: DISABLED → ENABLED",
		"  call_hours.weekly_operating_hours: delete 1 entry (Meta replaces call_hours whole): MONDAY 0800-1700",
		"  call_hours.weekly_operating_hours: add 4 entries: MONDAY 0900-1800, TUESDAY 0900-1800, WEDNESDAY 0900-1230, WEDNESDAY 1400-1800",
		"  call_hours.holiday_schedule: delete 2 entries (Meta replaces call_hours whole): 2026-01-01 0000-2359, 2026-05-01 0000-2359",
		"  call_hours.holiday_schedule: add 1 entry: 2026-12-25 0000-2359",
		"  callback_permission_status: ENABLED → DISABLED",
		"  srtp_key_exchange_protocol: SDES → DTLS",
		"  audio.additional_codecs: (none) → [PCMA]",
		"1000000002: 5 change(s)",
		"  call_icons.restrict_to_user_countries: (none) → [BR, PT]",
		"  voicemail.status: (unset) → ENABLED",
		"  voicemail.triggers: (none) → [TIMEOUT]",
		"  voicemail.timeout_seconds: (unset) → 20",
		"  voicemail.announcement: upload "+e.prompt+" (no upload of it recorded; Meta has none)")
	if p, u := e.posts(), e.uploads(); len(p) != 0 || len(u) != 0 || !reflect.DeepEqual(e.settingsOf(), before) {
		t.Fatalf("diff sent %d settings and %d uploads", len(p), len(u))
	}

	code, out, errs = runSettings(t, "apply", e.config)
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	ups := e.uploads()
	if len(ups) != 1 || ups[0].PhoneNumberID != "1000000002" || ups[0].Fields["use_case"] != "call_voicemail_announcement" ||
		ups[0].Filename != "prompt.ogg" || ups[0].Size == 0 || ups[0].Status != http.StatusOK || ups[0].MediaID == "" {
		t.Fatalf("uploads: %+v", ups)
	}
	mediaID := ups[0].MediaID
	wantLines(t, "apply", out, "  voicemail announcement uploaded: media "+mediaID,
		"  applied; read back, Meta's settings match the config file")
	posts := e.posts()
	if len(posts) != 2 || posts[0].Status != http.StatusOK || posts[1].Status != http.StatusOK {
		t.Fatalf("settings POSTs %+v, want one per number, taken", posts)
	}
	// The announcement's media id goes with the settings; what the file
	// leaves out (call_hours of number 2, sip) is not sent.
	var body struct {
		Calling map[string]json.RawMessage `json:"calling"`
	}
	json.Unmarshal(posts[1].Body, &body)
	if posts[1].PhoneNumberID != "1000000002" || !strings.Contains(string(body.Calling["voicemail"]), `"announcement_media_id":"`+mediaID+`"`) ||
		body.Calling["call_hours"] != nil || body.Calling["sip"] != nil || body.Calling["status"] != nil {
		t.Errorf("number 2's POST: %s", posts[1].Body)
	}
	body.Calling = nil
	json.Unmarshal(posts[0].Body, &body)
	if posts[0].PhoneNumberID != "1000000001" || body.Calling["sip"] != nil || !strings.Contains(string(body.Calling["call_hours"]), `"timezone_id":"Europe/Paris"`) {
		t.Errorf("number 1's POST: %s", posts[0].Body)
	}
	// Meta took them: the simulator keeps the announcement it was given.
	vm, _ := e.sim.Settings("1000000002")["voicemail"].(map[string]any)
	if jsonText(vm) != `{"audio":{"default":{"announcement_media_id":"`+mediaID+`","timeout_seconds":20}},"status":"ENABLED","triggers":["TIMEOUT"]}` {
		t.Errorf("number 2's voicemail at Meta: %s", jsonText(vm))
	}
	// Meta's SIP settings, not managed, are as they were.
	if sip := jsonText(e.sim.Settings("1000000001")["sip"]); sip != `{"servers":[{"hostname":"sip.example.com","port":5061}],"status":"ENABLED"}` {
		t.Errorf("apply touched the SIP settings: %s", sip)
	}
	state, err := os.ReadFile(filepath.Join(e.dir, "gateway.calling-state.json"))
	if err != nil || !strings.Contains(string(state), `"media_id": "`+mediaID+`"`) {
		t.Errorf("state file: %v\n%s", err, state)
	}

	code, out, errs = runSettings(t, "diff", e.config)
	if code != 0 || strings.Count(out, ": in step with the config file") != 2 {
		t.Fatalf("diff after apply: exit %d, want 0 and both in step\n%s%s", code, out, errs)
	}
	after := e.settingsOf()
	code, out, _ = runSettings(t, "apply", e.config)
	if code != 0 || len(e.posts()) != 2 || len(e.uploads()) != 1 || !reflect.DeepEqual(e.settingsOf(), after) {
		t.Fatalf("a second apply: exit %d, %d POSTs, %d uploads (want nothing sent)\n%s", code, len(e.posts()), len(e.uploads()), out)
	}
	e.noViolations(t)
}

// A change in the file shows exactly the fields it changes; a new
// announcement is uploaded again.
func TestSettingsDiffShowsOnlyChangedFields(t *testing.T) {
	e := newSettingsEnv(t)
	if code, out, errs := runSettings(t, "apply", e.config); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	e.write(t, strings.Replace(weekdays, `close: "1230"`, `close: "1300"`, 1), "enabled")
	code, out, errs := runSettings(t, "diff", e.config)
	want := "1000000001: 3 change(s)\n" +
		"  call_hours.weekly_operating_hours: delete 1 entry (Meta replaces call_hours whole): WEDNESDAY 0900-1230\n" +
		"  call_hours.weekly_operating_hours: add 1 entry: WEDNESDAY 0900-1300\n" +
		"  callback_permission_status: DISABLED → ENABLED\n" +
		"1000000002: in step with the config file\n"
	if code != 1 || out != want {
		t.Fatalf("diff: exit %d\n%s%swant\n%s", code, out, errs, want)
	}

	os.WriteFile(e.prompt, oggOpus(t, 7*time.Second), 0o600)
	code, out, _ = runSettings(t, "diff", e.config, "-number", "1000000002")
	if code != 1 || out != "1000000002: 1 change(s)\n  voicemail.announcement: upload "+e.prompt+" (changed since the last apply)\n" {
		t.Fatalf("diff -number 1000000002 after the prompt changed: exit %d\n%s", code, out)
	}
	if code, out, errs = runSettings(t, "apply", e.config, "-number", "1000000002"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	ups := e.uploads()
	if len(ups) != 2 || ups[1].MediaID == ups[0].MediaID || ups[1].Size <= ups[0].Size {
		t.Fatalf("uploads %+v, want the changed prompt uploaded again", ups)
	}
	vm, _ := e.sim.Settings("1000000002")["voicemail"].(map[string]any)
	if !strings.Contains(jsonText(vm), `"announcement_media_id":"`+ups[1].MediaID+`"`) {
		t.Errorf("Meta plays %s, not the new upload", jsonText(vm))
	}
	// Number 1, not named, still differs.
	if code, out, _ = runSettings(t, "diff", e.config); code != 1 || !strings.Contains(out, "1000000001: 3 change(s)") || !strings.Contains(out, "1000000002: in step") {
		t.Errorf("diff: exit %d\n%s", code, out)
	}
	e.noViolations(t)
}

// What breaks Meta's rules is refused before anything is sent (exit 2),
// the field named: the simulator takes no request, and its settings stay.
func TestSettingsInvalidRefusedLocally(t *testing.T) {
	e := newSettingsEnv(t)
	before := e.settingsOf()
	for _, tc := range []struct {
		name, weekly, want string
	}{
		{"close before open", strings.Replace(weekdays, `open: "1400", close: "1800"`, `open: "1800", close: "1700"`, 1),
			`numbers[0].calling.call_hours.weekly[3].close: "1700" is before open "1800"`},
		{"three ranges a day", weekdays + "\n          - {day: wednesday, open: \"1900\", close: \"2000\"}",
			"numbers[0].calling.call_hours.weekly[4].day: range 3 on wednesday: at most 2 a day"},
		{"overlap", weekdays + "\n          - {day: monday, open: \"1700\", close: \"1900\"}",
			"numbers[0].calling.call_hours.weekly[4]: monday 1700-1900 overlaps weekly[0] (0900-1800)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.write(t, tc.weekly, "enabled")
			for _, cmd := range []string{"diff", "apply"} {
				code, out, errs := runSettings(t, cmd, e.config)
				if code != 2 || !strings.Contains(errs, tc.want) {
					t.Errorf("%s: exit %d, want 2 naming %q\n%s%s", cmd, code, tc.want, out, errs)
				}
			}
			if r := e.requests(); len(r) != 0 || !reflect.DeepEqual(e.settingsOf(), before) {
				t.Errorf("the simulator took %d requests: %+v", len(r), r)
			}
		})
	}
	// A holiday in the past (by the clock given), and a prompt too long.
	e.write(t, weekdays, "enabled")
	cfg, _ := os.ReadFile(e.config)
	long := writeOggOpus(t, e.dir, "long.ogg", 65*time.Second)
	bad := strings.Replace(strings.Replace(string(cfg), "2026-12-25", "2026-05-31", 1), e.prompt, long, 1)
	os.WriteFile(e.config, []byte(bad), 0o600)
	code, _, errs := runSettings(t, "apply", e.config)
	wantLines(t, "apply", errs, "numbers[0].calling.call_hours.holidays[0].date: 2026-05-31 is in the past (today is 2026-06-01 in Europe/Paris)",
		"numbers[1].calling.voicemail.announcement_file: "+long+" lasts 6")
	if code != 2 || len(e.requests()) != 0 || !reflect.DeepEqual(e.settingsOf(), before) {
		t.Errorf("apply: exit %d, %d requests", code, len(e.requests()))
	}
	// Voicemail on in the file while Meta has call hours on for that number:
	// Meta's settings are read, nothing is written.
	e.write(t, weekdays, "enabled")
	e.seed(t, "1000000002", `{"call_hours":{"status":"ENABLED","timezone_id":"UTC",
	  "weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0900","close_time":"1700"}]}}`)
	before = e.settingsOf()
	code, _, errs = runSettings(t, "apply", e.config)
	if code != 2 || !strings.Contains(errs, "numbers[1].calling.voicemail.status: enabled while call_hours are enabled at Meta") {
		t.Errorf("apply against Meta's call hours: exit %d\n%s", code, errs)
	}
	if p, u := e.posts(), e.uploads(); len(p) != 0 || len(u) != 0 || !reflect.DeepEqual(e.settingsOf(), before) {
		t.Errorf("sent %d settings, %d uploads", len(p), len(u))
	}
	e.noViolations(t)
}

// The simulator refuses what Meta refuses: a holiday that is still to come
// by the local clock but past by Meta's passes the local check, is sent,
// and Meta's error comes back (exit 3, Meta's code, message and details
// printed); nothing is changed at Meta.
func TestSettingsMetaRefusesWhatPassesLocally(t *testing.T) {
	e := newSettingsEnv(t)
	metaToday := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) // Meta's clock a month ahead of ours
	e.sim.SetClock(func() time.Time { return metaToday })
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "2026-12-25", "2026-06-15", 1)), 0o600)
	before := e.settingsOf()

	code, out, errs := runSettings(t, "diff", e.config, "-number", "1000000001")
	if code != 1 || !strings.Contains(out, "call_hours.holiday_schedule: add 1 entry: 2026-06-15 0000-2359") {
		t.Fatalf("diff: exit %d, want 1 (the local check passes)\n%s%s", code, out, errs)
	}
	code, out, errs = runSettings(t, "apply", e.config, "-number", "1000000001")
	want := "wagateway settings apply: 1000000001: Meta error 100 (HTTP 400): (#100) Holiday given in call_hours is a past date " +
		"(calling.call_hours.holiday_schedule[0].date 2026-06-15 is before today (2026-07-01 in Europe/Paris))"
	if code != 3 || !strings.Contains(errs, want) || !strings.Contains(out, "  not applied (the error is on stderr)") {
		t.Fatalf("apply: exit %d, want 3 with\n%s\n%s%s", code, want, out, errs)
	}
	posts := e.posts()
	if len(posts) != 1 || posts[0].Status != http.StatusBadRequest || !strings.Contains(string(posts[0].Body), `"date":"2026-06-15"`) {
		t.Errorf("POSTs: %+v", posts)
	}
	if !reflect.DeepEqual(e.settingsOf(), before) {
		t.Errorf("a refused update changed Meta's settings")
	}
	// Meta refusing a request is not a broken rule of the protocol, but the
	// simulator notes the refusal.
	if v := e.sim.Violations(); len(v) != 1 || !strings.Contains(v[0], "holiday_schedule[0].date 2026-06-15") {
		t.Errorf("violations: %q", v)
	}
}

// An empty list in the file clears Meta's: "additional_codecs: []" and
// "restrict_to_user_countries: []" are sent as empty lists, and the diff is
// clean afterwards.
func TestSettingsApplyClearsLists(t *testing.T) {
	e := newSettingsEnv(t)
	e.seed(t, "1000000001", `{"audio":{"additional_codecs":["PCMA"]},"call_icons":{"restrict_to_user_countries":["BR"]}}`)
	cfg := fmt.Sprintf(`
log: {level: error}
whatsapp:
  graph_base_url: %q
  api_version: v23.0
  graph_timeout: 2s
  access_token: {env: WAGW_SET_TOKEN}
  app_secret: {env: WAGW_SET_UNSET_S}
  verify_token: {env: WAGW_SET_UNSET_V}
trunks:
  - {name: pbx, address: "127.0.0.1:5999", options_ping: false}
numbers:
  - phone_number_id: "1000000001"
    routes: [{trunk: pbx, destination: "sip:a@127.0.0.1"}]
    calling:
      call_icons: {restrict_to_user_countries: []}
      additional_codecs: []
`, e.sim.GraphURL())
	os.WriteFile(e.config, []byte(cfg), 0o600)

	code, out, errs := runSettings(t, "diff", e.config)
	if code != 1 || out != "1000000001: 2 change(s)\n  call_icons.restrict_to_user_countries: [BR] → (none)\n  audio.additional_codecs: [PCMA] → (none)\n" {
		t.Fatalf("diff: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runSettings(t, "apply", e.config)
	if code != 0 || !strings.Contains(out, "applied; read back, Meta's settings match the config file") {
		t.Fatalf("apply: exit %d, want 0\n%s%s", code, out, errs)
	}
	posts := e.posts()
	if len(posts) != 1 || !strings.Contains(string(posts[0].Body), `"call_icons":{"restrict_to_user_countries":[]}`) ||
		!strings.Contains(string(posts[0].Body), `"audio":{"additional_codecs":[]}`) {
		t.Fatalf("POSTs %+v, want the lists sent empty", posts)
	}
	s := e.sim.Settings("1000000001")
	if jsonText(s["audio"]) != `{"additional_codecs":[]}` || jsonText(s["call_icons"]) != `{"restrict_to_user_countries":[]}` {
		t.Errorf("Meta has audio %s, call_icons %s", jsonText(s["audio"]), jsonText(s["call_icons"]))
	}
	if code, out, errs = runSettings(t, "diff", e.config); code != 0 || out != "1000000001: in step with the config file\n" {
		t.Errorf("diff after apply: exit %d\n%s%s", code, out, errs)
	}
	e.noViolations(t)
}

// show masks the SIP password and does not even ask for it; only
// -sip-credentials asks for and prints it, with a warning.
func TestSettingsShowMasksSIPPassword(t *testing.T) {
	e := newSettingsEnv(t)
	for _, args := range [][]string{{"show", e.config}, {"show", e.config, "-json"}} {
		code, out, errs := runSettings(t, args...)
		if code != 0 || strings.Contains(out+errs, metaSIPPassword) {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
		if args[len(args)-1] == "-json" {
			var got map[string]map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil || got["1000000001"]["status"] != "DISABLED" {
				t.Errorf("-json: %v\n%s", err, out)
			}
		} else {
			wantLines(t, "show", out, "1000000001\n  status                       DISABLED",
				"  call_hours                   ENABLED, timezone Europe/Paris", "    holiday  2026-01-01 0000-2359",
				"  sip                          ENABLED", "    server   sip.example.com:5061 app_id "+metaAppID+"\n",
				"1000000002\n  status                       DISABLED")
		}
	}
	reqs := e.requests()
	if len(reqs) != 4 {
		t.Errorf("%d requests, want 2 GETs per show", len(reqs))
	}
	for _, r := range reqs {
		if r.Method != http.MethodGet || strings.Contains(r.Query, "include_sip_credentials") {
			t.Errorf("show sent %+v", r)
		}
	}
	code, out, errs := runSettings(t, "show", e.config, "-number", "1000000001", "-sip-credentials")
	if code != 0 || !strings.Contains(out, "    server   sip.example.com:5061 app_id "+metaAppID+" sip_user_password "+metaSIPPassword) ||
		!strings.Contains(errs, "warning: -sip-credentials") || strings.Contains(out, "1000000002") {
		t.Fatalf("show -sip-credentials: exit %d\n%s%s", code, out, errs)
	}
	if r := e.requests(); r[len(r)-1].Query != "include_sip_credentials=true" {
		t.Errorf("last request %+v", r[len(r)-1])
	}
	e.noViolations(t)
}

// Exit codes: 2 for usage and config, 3 for Meta's refusals and the
// network, Meta's code named.
func TestSettingsExitCodes(t *testing.T) {
	e := newSettingsEnv(t)
	for _, args := range [][]string{{}, {"sync"}, {"diff"}, {"diff", e.config, "extra"}, {"diff", e.config, "-number", "999"},
		{"show", e.config, "-bogus"}, {"diff", filepath.Join(e.dir, "missing.yaml")}} {
		if code, out, errs := runSettings(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s%s", args, code, out, errs)
		}
	}
	t.Setenv("WAGW_SET_TOKEN", "")
	if code, _, errs := runSettings(t, "show", e.config); code != 2 || !strings.Contains(errs, "whatsapp.access_token: environment variable WAGW_SET_TOKEN is not set") {
		t.Errorf("no token: exit %d\n%s", code, errs)
	}
	if len(e.requests()) != 0 {
		t.Errorf("usage and config errors sent %d requests", len(e.requests()))
	}

	// Meta refuses the update: the number's messaging limit is below what
	// calling needs.
	t.Setenv("WAGW_SET_TOKEN", setToken)
	if err := e.sim.SetNumber("1000000001", wasim.NumberConfig{MessagingLimit: 1000}); err != nil {
		t.Fatal(err)
	}
	before := e.settingsOf()
	code, out, errs := runSettings(t, "apply", e.config, "-number", "1000000001")
	if code != 3 || !strings.Contains(errs, "wagateway settings apply: 1000000001: Meta error 138015 (HTTP 400): (#138015) Calling APIs cannot be enabled") {
		t.Errorf("Meta refuses the update: exit %d, want 3 naming 138015\n%s%s", code, out, errs)
	}
	if !reflect.DeepEqual(e.settingsOf(), before) {
		t.Errorf("a refused update changed Meta's settings")
	}
	// Meta refuses the read: a number it does not know.
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.ReplaceAll(string(cfg), "1000000002", "1000000003")), 0o600)
	if code, _, errs = runSettings(t, "diff", e.config); code != 3 || !strings.Contains(errs, "wagateway settings diff: 1000000003: Meta error 100 (HTTP 400): Unsupported get request. Object with ID '1000000003' does not exist") {
		t.Errorf("Meta refuses the read: exit %d\n%s", code, errs)
	}
	// Meta refuses the token.
	t.Setenv("WAGW_SET_TOKEN", "EAAG-revoked-token")
	if code, _, errs = runSettings(t, "show", e.config, "-number", "1000000001"); code != 3 || !strings.Contains(errs, "Meta error 190 (HTTP 401)") ||
		strings.Contains(errs, "EAAG-revoked-token") {
		t.Errorf("Meta refuses the token: exit %d\n%s", code, errs)
	}
}

// oggOpus is an OGG/Opus file of d of silence.
func oggOpus(t testing.TB, d time.Duration) []byte {
	t.Helper()
	return wasim.OggOpusSilence(d)
}

// writeOggOpus writes oggOpus(d) to dir/name and returns its path.
func writeOggOpus(t testing.TB, dir, name string, d time.Duration) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, oggOpus(t, d), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

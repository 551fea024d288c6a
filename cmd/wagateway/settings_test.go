package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/internal/settingstest"
)

const setToken = "EAAG-settings-test-token"

// settingsNowFixed is the clock of the tests: holidays before it are past.
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

// Meta before any apply: calling off, last year's call hours with two
// holidays, Meta's SIP mode configured with a password.
const metaBefore = `{"status":"DISABLED","call_icon_visibility":"DEFAULT",
 "call_hours":{"status":"ENABLED","timezone_id":"Europe/Paris",
   "weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0800","close_time":"1700"}],
   "holiday_schedule":[{"date":"2026-01-01","start_time":"0000","end_time":"2359"},{"date":"2026-05-01","start_time":"0000","end_time":"2359"}]},
 "callback_permission_status":"ENABLED",
 "sip":{"status":"ENABLED","servers":[{"hostname":"sip.example.com","port":5061,"app_id":"4242","sip_user_password":"pw-Sup3rSecret"}]}}`

type settingsEnv struct {
	srv    *settingstest.Server
	dir    string
	config string
	prompt string
}

// newSettingsEnv starts the Graph API and points the subcommands at it:
// through the whatsapp package's client, or the test client while that is
// a stub.
func newSettingsEnv(t *testing.T) *settingsEnv {
	t.Setenv("WAGW_SET_TOKEN", setToken)
	e := &settingsEnv{srv: settingstest.NewServer(t, setToken), dir: t.TempDir()}
	e.srv.Set(t, "1000000001", metaBefore)
	if settingstest.Stubbed() {
		t.Log("the whatsapp settings methods are a stub: the test client speaks to the Graph API")
		settingsGraph = &settingstest.Client{BaseURL: e.srv.URL, Version: "v23.0", Token: setToken}
	}
	settingsNow = func() time.Time { return settingsNowFixed }
	t.Cleanup(func() { settingsGraph, settingsNow = nil, nil })
	e.prompt = settingstest.WriteOggOpus(t, e.dir, "prompt.ogg", 4*time.Second)
	e.config = filepath.Join(e.dir, "gateway.yaml")
	e.write(t, weekdays, "disabled")
	return e
}

func (e *settingsEnv) write(t *testing.T, weekly, callback string) {
	t.Helper()
	if err := os.WriteFile(e.config, []byte(fmt.Sprintf(settingsConfig, e.srv.URL, weekly, callback, e.prompt)), 0o600); err != nil {
		t.Fatal(err)
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

// diff shows the drift and sends nothing; apply uploads the announcement,
// sends both numbers, reads them back; then diff finds nothing and apply
// sends nothing.
func TestSettingsApplyThenDiff(t *testing.T) {
	e := newSettingsEnv(t)
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
		"  srtp_key_exchange_protocol: (unset) → DTLS",
		"  audio.additional_codecs: (none) → [PCMA]",
		"1000000002: 5 change(s)",
		"  call_icons.restrict_to_user_countries: (none) → [BR, PT]",
		"  voicemail.status: (unset) → ENABLED",
		"  voicemail.triggers: (none) → [TIMEOUT]",
		"  voicemail.timeout_seconds: (unset) → 20",
		"  voicemail.announcement: upload "+e.prompt+" (no upload of it recorded; Meta has none)")
	if p := e.srv.Posts(); len(p) != 0 || len(e.srv.Uploads()) != 0 {
		t.Fatalf("diff sent %d settings and %d uploads", len(p), len(e.srv.Uploads()))
	}

	code, out, errs = runSettings(t, "apply", e.config)
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	ups := e.srv.Uploads()
	if len(ups) != 1 || ups[0].PhoneNumberID != "1000000002" || ups[0].UseCase != "call_voicemail_announcement" || ups[0].Filename != "prompt.ogg" || ups[0].Size == 0 {
		t.Fatalf("uploads: %+v", ups)
	}
	wantLines(t, "apply", out, "  voicemail announcement uploaded: media "+ups[0].MediaID,
		"  applied; read back, Meta's settings match the config file")
	posts := e.srv.Posts()
	if len(posts) != 2 {
		t.Fatalf("%d settings POSTs, want one per number", len(posts))
	}
	// The announcement's media id goes with the settings; what the file
	// leaves out (call_hours of number 2, sip) is not sent.
	var body struct {
		Calling map[string]json.RawMessage `json:"calling"`
	}
	json.Unmarshal(posts[1].Body, &body)
	if posts[1].PhoneNumberID != "1000000002" || !strings.Contains(string(body.Calling["voicemail"]), `"announcement_media_id":"`+ups[0].MediaID+`"`) ||
		body.Calling["call_hours"] != nil || body.Calling["sip"] != nil || body.Calling["status"] != nil {
		t.Errorf("number 2's POST: %s", posts[1].Body)
	}
	json.Unmarshal(posts[0].Body, &body)
	if body.Calling["sip"] != nil || !strings.Contains(string(body.Calling["call_hours"]), `"timezone_id":"Europe/Paris"`) {
		t.Errorf("number 1's POST: %s", posts[0].Body)
	}
	// Meta's SIP settings, not managed, are as they were.
	if !strings.Contains(e.srv.Get("1000000001"), "pw-Sup3rSecret") {
		t.Errorf("apply touched the SIP settings: %s", e.srv.Get("1000000001"))
	}
	state, err := os.ReadFile(filepath.Join(e.dir, "gateway.calling-state.json"))
	if err != nil || !strings.Contains(string(state), `"media_id": "`+ups[0].MediaID+`"`) {
		t.Errorf("state file: %v\n%s", err, state)
	}

	code, out, errs = runSettings(t, "diff", e.config)
	if code != 0 || strings.Count(out, ": in step with the config file") != 2 {
		t.Fatalf("diff after apply: exit %d, want 0 and both in step\n%s%s", code, out, errs)
	}
	code, out, _ = runSettings(t, "apply", e.config)
	if code != 0 || len(e.srv.Posts()) != 2 || len(e.srv.Uploads()) != 1 {
		t.Fatalf("a second apply: exit %d, %d POSTs, %d uploads (want nothing sent)\n%s", code, len(e.srv.Posts()), len(e.srv.Uploads()), out)
	}
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

	os.WriteFile(e.prompt, settingstest.OggOpus(t, 7*time.Second), 0o600)
	code, out, _ = runSettings(t, "diff", e.config, "-number", "1000000002")
	if code != 1 || out != "1000000002: 1 change(s)\n  voicemail.announcement: upload "+e.prompt+" (changed since the last apply)\n" {
		t.Fatalf("diff -number 1000000002 after the prompt changed: exit %d\n%s", code, out)
	}
	if code, out, errs = runSettings(t, "apply", e.config, "-number", "1000000002"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	if n := len(e.srv.Uploads()); n != 2 {
		t.Errorf("%d uploads, want the changed prompt uploaded again", n)
	}
	// Number 1, not named, still differs.
	if code, out, _ = runSettings(t, "diff", e.config); code != 1 || !strings.Contains(out, "1000000001: 3 change(s)") || !strings.Contains(out, "1000000002: in step") {
		t.Errorf("diff: exit %d\n%s", code, out)
	}
}

// What breaks Meta's rules is refused before anything is sent (exit 2),
// the field named.
func TestSettingsInvalidRefusedLocally(t *testing.T) {
	e := newSettingsEnv(t)
	for _, tc := range []struct {
		name, weekly, want string
		requests           bool // the refusal needs Meta's settings (read, never written)
	}{
		{"close before open", strings.Replace(weekdays, `open: "1400", close: "1800"`, `open: "1800", close: "1700"`, 1),
			`numbers[0].calling.call_hours.weekly[3].close: "1700" is before open "1800"`, false},
		{"three ranges a day", weekdays + "\n          - {day: wednesday, open: \"1900\", close: \"2000\"}",
			"numbers[0].calling.call_hours.weekly[4].day: range 3 on wednesday: at most 2 a day", false},
		{"overlap", weekdays + "\n          - {day: monday, open: \"1700\", close: \"1900\"}",
			"numbers[0].calling.call_hours.weekly[4]: monday 1700-1900 overlaps weekly[0] (0900-1800)", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.write(t, tc.weekly, "enabled")
			for _, cmd := range []string{"diff", "apply"} {
				code, out, errs := runSettings(t, cmd, e.config)
				if code != 2 || !strings.Contains(errs, tc.want) {
					t.Errorf("%s: exit %d, want 2 naming %q\n%s%s", cmd, code, tc.want, out, errs)
				}
			}
			if r := e.srv.Requests(); len(r) != 0 {
				t.Errorf("the Graph API saw %d requests: %+v", len(r), r)
			}
		})
	}
	// A holiday in the past (by the clock given), and a prompt too long.
	e.write(t, weekdays, "enabled")
	cfg, _ := os.ReadFile(e.config)
	long := settingstest.WriteOggOpus(t, e.dir, "long.ogg", 65*time.Second)
	bad := strings.Replace(strings.Replace(string(cfg), "2026-12-25", "2026-05-31", 1), e.prompt, long, 1)
	os.WriteFile(e.config, []byte(bad), 0o600)
	code, _, errs := runSettings(t, "apply", e.config)
	wantLines(t, "apply", errs, "numbers[0].calling.call_hours.holidays[0].date: 2026-05-31 is in the past (today is 2026-06-01 in Europe/Paris)",
		"numbers[1].calling.voicemail.announcement_file: "+long+" lasts 6")
	if code != 2 || len(e.srv.Requests()) != 0 {
		t.Errorf("apply: exit %d, %d requests", code, len(e.srv.Requests()))
	}
	// Voicemail on in the file while Meta has call hours on for that number:
	// Meta's settings are read, nothing is written.
	e.write(t, weekdays, "enabled")
	e.srv.Set(t, "1000000002", `{"call_hours":{"status":"ENABLED","timezone_id":"UTC"}}`)
	code, _, errs = runSettings(t, "apply", e.config)
	if code != 2 || !strings.Contains(errs, "numbers[1].calling.voicemail.status: enabled while call_hours are enabled at Meta") {
		t.Errorf("apply against Meta's call hours: exit %d\n%s", code, errs)
	}
	if len(e.srv.Posts()) != 0 || len(e.srv.Uploads()) != 0 {
		t.Errorf("sent %d settings, %d uploads", len(e.srv.Posts()), len(e.srv.Uploads()))
	}
}

// show masks the SIP password and does not even ask for it; only
// -sip-credentials asks for and prints it, with a warning.
func TestSettingsShowMasksSIPPassword(t *testing.T) {
	e := newSettingsEnv(t)
	for _, args := range [][]string{{"show", e.config}, {"show", e.config, "-json"}} {
		code, out, errs := runSettings(t, args...)
		if code != 0 || strings.Contains(out+errs, "pw-Sup3rSecret") {
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
				"  sip                          ENABLED", "    server   sip.example.com:5061 app_id 4242", "1000000002\n  status                       (unset)")
		}
	}
	for _, r := range e.srv.Requests() {
		if strings.Contains(r.Query, "include_sip_credentials") {
			t.Errorf("show asked for the SIP credentials: %+v", r)
		}
	}
	code, out, errs := runSettings(t, "show", e.config, "-number", "1000000001", "-sip-credentials")
	if code != 0 || !strings.Contains(out, "sip_user_password pw-Sup3rSecret") || !strings.Contains(errs, "warning: -sip-credentials") ||
		strings.Contains(out, "1000000002") {
		t.Fatalf("show -sip-credentials: exit %d\n%s%s", code, out, errs)
	}
	if r := e.srv.Requests(); r[len(r)-1].Query != "include_sip_credentials=true" {
		t.Errorf("last request %+v", r[len(r)-1])
	}
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
	settingsGraph = nil
	if code, _, errs := runSettings(t, "show", e.config); code != 2 || !strings.Contains(errs, "whatsapp.access_token: environment variable WAGW_SET_TOKEN is not set") {
		t.Errorf("no token: exit %d\n%s", code, errs)
	}
	e = newSettingsEnv(t)
	e.srv.Fail("POST settings", 400)
	code, out, errs := runSettings(t, "apply", e.config, "-number", "1000000001")
	if code != 3 || !strings.Contains(errs, "wagateway settings apply: 1000000001: ") || !strings.Contains(errs, "138015") {
		t.Errorf("Meta refuses the update: exit %d, want 3 naming 138015\n%s%s", code, out, errs)
	}
	e.srv.Fail("GET settings", 400)
	if code, _, errs = runSettings(t, "diff", e.config); code != 3 || !strings.Contains(errs, "Meta error 1 (HTTP 400)") {
		t.Errorf("Meta refuses the read: exit %d\n%s", code, errs)
	}
}

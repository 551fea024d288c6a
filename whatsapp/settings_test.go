package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const testSIPPassword = "s3cr3t-SIP-pa55word"

// fullSettings sets every field, SIP and restrictions included.
func fullSettings() CallingSettings {
	return CallingSettings{
		Status:             "ENABLED",
		CallIconVisibility: "DEFAULT",
		CallIcons:          &CallIcons{RestrictToUserCountries: []string{"US", "BR"}},
		CallHours: &CallHours{
			Status:     "ENABLED",
			TimezoneID: "America/Manaus",
			WeeklyOperatingHours: []WeeklyHours{
				{DayOfWeek: "MONDAY", OpenTime: "0400", CloseTime: "1020"},
				{DayOfWeek: "MONDAY", OpenTime: "1300", CloseTime: "1800"},
				{DayOfWeek: "TUESDAY", OpenTime: "0108", CloseTime: "1020"},
			},
			HolidaySchedule: []Holiday{{Date: "2026-01-01", StartTime: "0000", EndTime: "2359"}},
		},
		CallbackPermissionStatus: "ENABLED",
		SRTPKeyExchangeProtocol:  "SDES",
		Audio:                    &AudioSettings{AdditionalCodecs: []string{"PCMA", "PCMU"}},
		Voicemail: &VoicemailSettings{
			Status:   "ENABLED",
			Triggers: []string{"REJECT", "TIMEOUT"},
			Audio:    &VoicemailAudio{Default: &VoicemailPrompt{AnnouncementMediaID: "938884519013664", TimeoutSeconds: 20}},
		},
		SIP: &SIPSettings{Status: "ENABLED", Servers: []SIPServer{{
			Hostname: "sip.example.com", Port: 5061, RequestURIUserParams: map[string]string{"trunk": "wa"},
			AppID: "1234", SIPUserPassword: testSIPPassword,
		}}},
		Restrictions: &Restrictions{RestrictionsList: []Restriction{{Type: "RESTRICTED_BUSINESS_INITIATED_CALLING", Expiration: "1754072386"}}},
	}
}

// R1: POST /{PNID}/settings with {"calling":{…}} and nothing else, field by
// field; SIP and restrictions are never sent and the caller's copy keeps
// them.
func TestUpdateCallingSettingsShape(t *testing.T) {
	var actions []string
	g := newGraphRig(t, okReply)
	c := g.client(func(cfg *GraphConfig) {
		cfg.OnRequest = func(action, result string, _ time.Duration) { actions = append(actions, action+"/"+result) }
	})
	s := fullSettings()
	if err := c.UpdateCallingSettings(context.Background(), "106540352242922", s); err != nil {
		t.Fatal(err)
	}
	if s.SIP == nil || s.SIP.Servers[0].SIPUserPassword != testSIPPassword || s.Restrictions == nil {
		t.Error("the caller's settings were changed")
	}
	reqs := g.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v23.0/106540352242922/settings" || r.Query != "" {
		t.Errorf("%s %s?%s", r.Method, r.Path, r.Query)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		t.Errorf("Authorization %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("body not JSON: %v\n%s", err, r.Body)
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(`{"calling":{
		"status":"ENABLED","call_icon_visibility":"DEFAULT",
		"call_icons":{"restrict_to_user_countries":["US","BR"]},
		"call_hours":{"status":"ENABLED","timezone_id":"America/Manaus","weekly_operating_hours":[
			{"day_of_week":"MONDAY","open_time":"0400","close_time":"1020"},
			{"day_of_week":"MONDAY","open_time":"1300","close_time":"1800"},
			{"day_of_week":"TUESDAY","open_time":"0108","close_time":"1020"}],
			"holiday_schedule":[{"date":"2026-01-01","start_time":"0000","end_time":"2359"}]},
		"callback_permission_status":"ENABLED","srtp_key_exchange_protocol":"SDES",
		"audio":{"additional_codecs":["PCMA","PCMU"]},
		"voicemail":{"status":"ENABLED","triggers":["REJECT","TIMEOUT"],
			"audio":{"default":{"announcement_media_id":"938884519013664","timeout_seconds":20}}}}}`), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("body\n%s\nwant\n%v", r.Body, want)
	}
	if strings.Contains(string(r.Body), testSIPPassword) || strings.Contains(string(r.Body), "sip") ||
		strings.Contains(string(r.Body), "restrictions") || strings.Contains(string(r.Body), "messaging_product") {
		t.Errorf("body carries what it must not: %s", r.Body)
	}
	if !reflect.DeepEqual(actions, []string{"settings_update/ok"}) {
		t.Errorf("OnRequest %v", actions)
	}

	// Only what is set is sent; call_hours' status always.
	if err := c.UpdateCallingSettings(context.Background(), "P", CallingSettings{
		CallIconVisibility: "DISABLE_ALL", CallHours: &CallHours{Status: "DISABLED"},
	}); err != nil {
		t.Fatal(err)
	}
	if b := string(g.requests()[1].Body); b != `{"calling":{"call_icon_visibility":"DISABLE_ALL","call_hours":{"status":"DISABLED"}}}` {
		t.Errorf("body %s", b)
	}
}

// An empty list is sent as [] (Meta clears its list: the call button in
// every country, Opus only); a nil one is left out. Read back, an empty
// list stays empty and a copy keeps it so.
func TestUpdateCallingSettingsClearsLists(t *testing.T) {
	g := newGraphRig(t, okReply)
	c := g.client(nil)
	empty := CallingSettings{CallIcons: &CallIcons{RestrictToUserCountries: []string{}}, Audio: &AudioSettings{AdditionalCodecs: []string{}}}
	if err := c.UpdateCallingSettings(context.Background(), "P", empty); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateCallingSettings(context.Background(), "P", CallingSettings{
		Status: "ENABLED", CallIcons: &CallIcons{}, Audio: &AudioSettings{AdditionalCodecs: []string{"PCMU"}},
	}); err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	for i, want := range []string{
		`{"calling":{"call_icons":{"restrict_to_user_countries":[]},"audio":{"additional_codecs":[]}}}`,
		`{"calling":{"status":"ENABLED","call_icons":{},"audio":{"additional_codecs":["PCMU"]}}}`,
	} {
		if got := string(reqs[i].Body); got != want {
			t.Errorf("body %d\n %s\nwant\n %s", i, got, want)
		}
	}
	if b := mustJSON(t, empty.Masked()); b != `{"call_icons":{"restrict_to_user_countries":[]},"audio":{"additional_codecs":[]}}` {
		t.Errorf("Masked() marshals as %s", b)
	}

	var got CallingSettings
	if err := json.Unmarshal([]byte(`{"call_icons":{"restrict_to_user_countries":[]},"audio":{}}`), &got); err != nil {
		t.Fatal(err)
	}
	if got.CallIcons == nil || got.CallIcons.RestrictToUserCountries == nil || len(got.CallIcons.RestrictToUserCountries) != 0 ||
		got.Audio == nil || got.Audio.AdditionalCodecs != nil {
		t.Errorf("read as %#v, %#v", got.CallIcons, got.Audio)
	}
	if b := mustJSON(t, got); b != `{"call_icons":{"restrict_to_user_countries":[]},"audio":{}}` {
		t.Errorf("read and written again: %s", b)
	}
}

// R2: GET /{PNID}/settings, include_sip_credentials=true only when asked;
// the answer read field by field, numbers where strings are declared
// taken.
func TestGetCallingSettingsShape(t *testing.T) {
	answer := readTestdata(t, "settings-get.json")
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, string(answer)) })
	c := g.client(nil)
	ctx := context.Background()
	if _, err := c.GetCallingSettings(ctx, "106540352242922", false); err != nil {
		t.Fatal(err)
	}
	s, err := c.GetCallingSettings(ctx, "106540352242922", true)
	if err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	for i, wantQuery := range []string{"", "include_sip_credentials=true"} {
		r := reqs[i]
		if r.Method != http.MethodGet || r.Path != "/v23.0/106540352242922/settings" || r.Query != wantQuery || len(r.Body) != 0 {
			t.Errorf("req %d: %s %s?%s body %q", i, r.Method, r.Path, r.Query, r.Body)
		}
		if r.Header.Get("Content-Type") != "" || r.Header.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("req %d: headers %v", i, r.Header)
		}
	}
	want := CallingSettings{
		Status:             "ENABLED",
		CallIconVisibility: "DEFAULT",
		CallIcons:          &CallIcons{RestrictToUserCountries: []string{"US", "BR"}},
		CallHours: &CallHours{Status: "ENABLED", TimezoneID: "America/Manaus",
			WeeklyOperatingHours: []WeeklyHours{
				{DayOfWeek: "MONDAY", OpenTime: "0400", CloseTime: "1020"},
				{DayOfWeek: "TUESDAY", OpenTime: "0108", CloseTime: "1020"}, // numbers in the answer
			},
			HolidaySchedule: []Holiday{{Date: "2026-01-01", StartTime: "0000", EndTime: "2359"}},
		},
		CallbackPermissionStatus: "ENABLED",
		SRTPKeyExchangeProtocol:  "DTLS",
		Audio:                    &AudioSettings{AdditionalCodecs: []string{"PCMA", "PCMU"}},
		Voicemail: &VoicemailSettings{Status: "ENABLED", Triggers: []string{"REJECT", "TIMEOUT"},
			Audio: &VoicemailAudio{Default: &VoicemailPrompt{AnnouncementMediaID: "938884519013664", TimeoutSeconds: 20}}},
		SIP: &SIPSettings{Status: "ENABLED", Servers: []SIPServer{{
			Hostname: "sip.example.com", Port: 5061, RequestURIUserParams: map[string]string{"trunk": "wa", "n": "7"},
			AppID: "1234567890123456", SIPUserPassword: testSIPPassword,
		}}},
		Restrictions: &Restrictions{RestrictionsList: []Restriction{{
			Type:       "RESTRICTED_BUSINESS_INITIATED_CALLING",
			Reason:     "Business initiated calling capability has been temporarily disabled for this phone number due to high negative feedback from users.",
			Expiration: "1754072386",
		}}},
	}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("got  %s\nwant %s", mustJSON(t, s.Masked()), mustJSON(t, want.Masked()))
	}
	if got := s.Restrictions.RestrictionsList[0].ExpirationTime(); !got.Equal(time.Unix(1754072386, 0)) {
		t.Errorf("expiration %v", got)
	}
	// What R2 read can be written back as it is (R1 leaves SIP and
	// restrictions out).
	if err := s.Validate(); err != nil {
		t.Errorf("R2's answer does not validate: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Meta's errors are GraphErrors; 4xx are final, 5xx and throttling
// repeated (both requests are idempotent); a 2xx without the expected
// object is ErrUnexpectedResponse. The token is never in an error.
func TestCallingSettingsErrors(t *testing.T) {
	ctx := context.Background()
	limitErr := `{"error":{"message":"(#138015) Messaging limit too low","type":"OAuthException","code":138015,"fbtrace_id":"Ab1"}}`
	for _, tc := range []struct {
		name     string
		reply    func(n int, w http.ResponseWriter, r *http.Request)
		attempts int
		check    func(error) bool
	}{
		{"4xx final", func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 400, limitErr) }, 1,
			func(err error) bool {
				var ge *GraphError
				return errors.As(err, &ge) && ge.Code == 138015 && ge.HTTPStatus == 400 && ge.FBTraceID == "Ab1"
			}},
		{"5xx repeated", func(n int, w http.ResponseWriter, r *http.Request) {
			if n < 3 {
				writeJSON(w, 503, `{"error":{"message":"try later","code":2}}`)
				return
			}
			okOrSettings(w, r)
		}, 3, func(err error) bool { return err == nil }},
		{"throttled repeated", func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				writeJSON(w, 400, `{"error":{"message":"rate","code":613}}`)
				return
			}
			okOrSettings(w, r)
		}, 2, func(err error) bool { return err == nil }},
		{"2xx unexpected", func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 200, `{"success":false,"storage_configuration":{}}`)
		}, 1, func(err error) bool { return errors.Is(err, ErrUnexpectedResponse) }},
		{"token quoted", func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 401, `{"error":{"message":"Invalid OAuth access token - `+testToken+`","code":190}}`)
		}, 1, func(err error) bool { var ge *GraphError; return errors.As(err, &ge) && ge.Code == 190 }},
	} {
		for _, op := range []string{"get", "update"} {
			g := newGraphRig(t, tc.reply)
			c := g.client(nil)
			var err error
			if op == "get" {
				_, err = c.GetCallingSettings(ctx, "P", false)
			} else {
				err = c.UpdateCallingSettings(ctx, "P", CallingSettings{Status: "DISABLED"})
			}
			if !tc.check(err) {
				t.Errorf("%s, %s: %v", tc.name, op, err)
			}
			assertNoToken(t, err)
			if n := int(g.attempts.Load()); n != tc.attempts {
				t.Errorf("%s, %s: %d attempts, want %d", tc.name, op, n, tc.attempts)
			}
		}
	}
}

// okOrSettings answers R1 or R2 with success.
func okOrSettings(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		writeJSON(w, 200, `{"calling":{"status":"ENABLED"}}`)
		return
	}
	writeJSON(w, 200, `{"success":true}`)
}

// Masked hides the password in a deep copy; fmt never prints it; the
// client never logs it.
func TestCallingSettingsMasked(t *testing.T) {
	s := fullSettings()
	m := s.Masked()
	if m.SIP.Servers[0].SIPUserPassword != "•••" {
		t.Errorf("masked %q", m.SIP.Servers[0].SIPUserPassword)
	}
	if s.SIP.Servers[0].SIPUserPassword != testSIPPassword {
		t.Error("Masked changed the original")
	}
	// A deep copy: changing the copy leaves the original.
	m.SIP.Servers[0].RequestURIUserParams["trunk"] = "x"
	m.CallHours.WeeklyOperatingHours[0].OpenTime = "0000"
	m.Voicemail.Audio.Default.TimeoutSeconds = 1
	m.CallIcons.RestrictToUserCountries[0] = "XX"
	if s.SIP.Servers[0].RequestURIUserParams["trunk"] != "wa" || s.CallHours.WeeklyOperatingHours[0].OpenTime != "0400" ||
		s.Voicemail.Audio.Default.TimeoutSeconds != 20 || s.CallIcons.RestrictToUserCountries[0] != "US" {
		t.Error("Masked shares memory with the original")
	}
	if b := mustJSON(t, s.Masked()); strings.Contains(b, testSIPPassword) || !strings.Contains(b, `"sip_user_password":"•••"`) {
		t.Errorf("masked JSON %s", b)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, *s.SIP); strings.Contains(out, testSIPPassword) {
			t.Errorf("%s prints the password: %s", f, out)
		}
		if out := fmt.Sprintf(f, s.SIP.Servers[0]); strings.Contains(out, testSIPPassword) || !strings.Contains(out, "sip.example.com") {
			t.Errorf("%s of a server: %s", f, out)
		}
	}
	var empty CallingSettings
	if !reflect.DeepEqual(empty.Masked(), empty) {
		t.Error("Masked of empty settings")
	}

	core, logs := observer.New(zapcore.DebugLevel)
	answer := readTestdata(t, "settings-get.json")
	var mu sync.Mutex
	n := 0
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 1 { // an error quoting the password
			writeJSON(w, 500, `{"calling":{"sip":{"servers":[{"sip_user_password":"`+testSIPPassword+`"}]}}}`)
			return
		}
		if r.Method == http.MethodPost {
			writeJSON(w, 200, `{"success":true}`)
			return
		}
		writeJSON(w, 200, string(answer))
	})
	c := g.client(func(cfg *GraphConfig) { cfg.Logger = zap.New(core) })
	if _, err := c.GetCallingSettings(context.Background(), "P", true); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateCallingSettings(context.Background(), "P", fullSettings()); err != nil {
		t.Fatal(err)
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, testSIPPassword) || strings.Contains(line, testToken) {
			t.Errorf("logged a secret: %s", line)
		}
	}
}

// Validate finds what Meta would refuse; UpdateCallingSettings sends
// nothing then.
func TestCallingSettingsValidate(t *testing.T) {
	if err := fullSettings().Validate(); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
	hours := func(w ...WeeklyHours) *CallHours {
		return &CallHours{Status: "ENABLED", TimezoneID: "Europe/Lisbon", WeeklyOperatingHours: w}
	}
	mon := func(open, close string) WeeklyHours {
		return WeeklyHours{DayOfWeek: "MONDAY", OpenTime: open, CloseTime: close}
	}
	holidays := make([]Holiday, 21)
	for i := range holidays {
		holidays[i] = Holiday{Date: fmt.Sprintf("2027-01-%02d", i+1), StartTime: "0000", EndTime: "2359"}
	}
	vm := func(status string, timeout int, triggers ...string) *VoicemailSettings {
		return &VoicemailSettings{Status: status, Triggers: triggers,
			Audio: &VoicemailAudio{Default: &VoicemailPrompt{AnnouncementMediaID: "1", TimeoutSeconds: timeout}}}
	}
	for name, tc := range map[string]struct {
		s    CallingSettings
		want string
	}{
		"status":            {CallingSettings{Status: "ENABLE"}, `status is "ENABLE"`},
		"icon visibility":   {CallingSettings{CallIconVisibility: "HIDDEN"}, "call_icon_visibility"},
		"callback":          {CallingSettings{CallbackPermissionStatus: "enabled"}, "callback_permission_status"},
		"srtp":              {CallingSettings{SRTPKeyExchangeProtocol: "ZRTP"}, "srtp_key_exchange_protocol"},
		"country":           {CallingSettings{CallIcons: &CallIcons{RestrictToUserCountries: []string{"USA"}}}, "ISO 3166-1"},
		"hours status":      {CallingSettings{CallHours: &CallHours{}}, "call_hours.status"},
		"hours no timezone": {CallingSettings{CallHours: &CallHours{Status: "ENABLED", WeeklyOperatingHours: []WeeklyHours{mon("0900", "1000")}}}, "timezone_id"},
		"hours empty week":  {CallingSettings{CallHours: hours()}, "without weekly_operating_hours"},
		"day":               {CallingSettings{CallHours: hours(WeeklyHours{DayOfWeek: "MON", OpenTime: "0900", CloseTime: "1000"})}, "day_of_week"},
		"hhmm":              {CallingSettings{CallHours: hours(mon("9:00", "1000"))}, "not HHMM"},
		"hour 24":           {CallingSettings{CallHours: hours(mon("0900", "2400"))}, "not HHMM"},
		"open after close":  {CallingSettings{CallHours: hours(mon("1000", "0900"))}, "not before"},
		"three a day":       {CallingSettings{CallHours: hours(mon("0100", "0200"), mon("0300", "0400"), mon("0500", "0600"))}, "3 ranges"},
		"overlap":           {CallingSettings{CallHours: hours(mon("0900", "1200"), mon("1100", "1300"))}, "overlapping"},
		"holiday date":      {CallingSettings{CallHours: &CallHours{Status: "DISABLED", HolidaySchedule: []Holiday{{Date: "2026-1-1", StartTime: "0000", EndTime: "0100"}}}}, "YYYY-MM-DD"},
		"holidays":          {CallingSettings{CallHours: &CallHours{Status: "DISABLED", HolidaySchedule: holidays}}, "more than 20"},
		"codec":             {CallingSettings{Audio: &AudioSettings{AdditionalCodecs: []string{"G729"}}}, "additional_codecs"},
		"codec twice":       {CallingSettings{Audio: &AudioSettings{AdditionalCodecs: []string{"PCMA", "PCMA"}}}, "twice"},
		"trigger":           {CallingSettings{Voicemail: vm("ENABLED", 10, "BUSY")}, "voicemail.triggers"},
		"no triggers":       {CallingSettings{Voicemail: vm("ENABLED", 10)}, "without triggers"},
		"no announcement":   {CallingSettings{Voicemail: &VoicemailSettings{Status: "ENABLED", Triggers: []string{"REJECT"}}}, "announcement_media_id"},
		"timeout range":     {CallingSettings{Voicemail: vm("ENABLED", 31, "TIMEOUT")}, "1..30"},
		"timeout missing":   {CallingSettings{Voicemail: vm("ENABLED", 0, "TIMEOUT")}, "needs audio.default.timeout_seconds"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	// Several problems are all reported, bounded.
	many := CallingSettings{CallIcons: &CallIcons{RestrictToUserCountries: strings.Split(strings.Repeat("x,", 30), ",")}}
	if err := many.Validate(); err == nil || strings.Count(err.Error(), "\n") != maxSettingsValidateErrs-1 {
		t.Errorf("many problems: %v", err)
	}
	// Valid edges.
	for name, s := range map[string]CallingSettings{
		"two ranges touching": {CallHours: hours(mon("0900", "1200"), mon("1200", "1300"))},
		"disabled, no week":   {CallHours: &CallHours{Status: "DISABLED"}},
		"reject only":         {Voicemail: &VoicemailSettings{Status: "ENABLED", Triggers: []string{"REJECT"}, Audio: &VoicemailAudio{Default: &VoicemailPrompt{AnnouncementMediaID: "9"}}}},
		"voicemail off":       {Voicemail: &VoicemailSettings{Status: "DISABLED"}},
		"no countries":        {CallIcons: &CallIcons{}},
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	g := newGraphRig(t, okReply)
	c := g.client(nil)
	if err := c.UpdateCallingSettings(context.Background(), "P", CallingSettings{Status: "ON"}); err == nil {
		t.Error("invalid settings sent")
	}
	if err := c.UpdateCallingSettings(context.Background(), "P", CallingSettings{SIP: fullSettings().SIP}); err == nil ||
		!strings.Contains(err.Error(), "no calling setting") {
		t.Errorf("SIP only: %v", err)
	}
	if err := c.UpdateCallingSettings(context.Background(), "", CallingSettings{Status: "ENABLED"}); err == nil {
		t.Error("no phone number id accepted")
	}
	if _, err := c.GetCallingSettings(context.Background(), "", false); err == nil {
		t.Error("no phone number id accepted")
	}
	if n := g.attempts.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestRedactSIPPassword(t *testing.T) {
	for in, want := range map[string]string{
		`{"sip_user_password":"pw\"x","port":1}`: `{"sip_user_password":"[REDACTED]","port":1}`,
		`{"sip_user_password" : 1234, "a":2}`:    `{"sip_user_password" : "[REDACTED]", "a":2}`,
		`x {"sip_user_password":"cut sh`:         `x {"sip_user_password":"[REDACTED]"`,
		`"{\"sip_user_password\":\"pw\"}"`:       `"{\"sip_user_password\":"[REDACTED]"`,
		`no password here ` + testToken:          `no password here [REDACTED]`,
		`{"a":"sip_user_password","b":"kept"}`:   `{"a":"sip_user_password","b":"kept"}`,
	} {
		if got := redact(in, testToken); got != want {
			t.Errorf("redact(%s) = %s, want %s", in, got, want)
		}
	}
}

// What is read from Meta is bounded.
func TestCallingSettingsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"calling":{"restrictions":{"restrictions_list":[`)
	for i := range 500 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"R%d","reason":"%s","expiration":%d}`, i, strings.Repeat("r", maxSettingsString+100), i)
	}
	b.WriteString(`]},"sip":{"servers":[`)
	for i := range 20 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"hostname":"h","request_uri_user_params":{`)
		for j := range 100 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%03d":"v"`, j)
		}
		b.WriteString(`}}`)
	}
	b.WriteString(`]},"call_hours":{"status":"ENABLED","holiday_schedule":[`)
	for i := range 200 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"date":"2026-01-01","start_time":"0000","end_time":"0100"}`)
	}
	b.WriteString(`]}}}`)
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, b.String()) })
	s, err := g.client(nil).GetCallingSettings(context.Background(), "P", false)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Restrictions.RestrictionsList); n != maxSettingsRestrictions {
		t.Errorf("%d restrictions", n)
	}
	if n := len(s.Restrictions.RestrictionsList[0].Reason); n != maxSettingsString {
		t.Errorf("reason of %d bytes", n)
	}
	if n := len(s.SIP.Servers); n != maxSettingsSIPServers {
		t.Errorf("%d servers", n)
	}
	if n := len(s.SIP.Servers[0].RequestURIUserParams); n != maxSettingsSIPParams {
		t.Errorf("%d params", n)
	}
	if _, ok := s.SIP.Servers[0].RequestURIUserParams["k000"]; !ok {
		t.Error("params kept are not the first by name")
	}
	if n := len(s.CallHours.HolidaySchedule); n != maxSettingsHolidays {
		t.Errorf("%d holidays", n)
	}
	// An answer whose calling object cannot be read is unexpected, and its
	// error quotes no part of it.
	g2 := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, `{"calling":{"sip":{"servers":[{"sip_user_password":"`+testSIPPassword+`","port":{}}]}}}`)
	})
	_, err = g2.client(nil).GetCallingSettings(context.Background(), "P", true)
	if !errors.Is(err, ErrUnexpectedResponse) || strings.Contains(err.Error(), testSIPPassword) {
		t.Errorf("odd calling object: %v", err)
	}
	g3 := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, `{"calling":null}`) })
	if _, err := g3.client(nil).GetCallingSettings(context.Background(), "P", false); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("null calling: %v", err)
	}
}

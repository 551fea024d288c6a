package wasim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// settingsClock is 2026-03-01 02:00 UTC: still February 28 in Manaus (UTC-4).
func settingsClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)}
}

// settingsReq sends a settings request for pnid; query is appended to the
// path ("" for none).
func settingsReq(t *testing.T, s *Sim, method, pnid, query string, body any) (int, map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if raw, ok := body.(string); ok {
			buf.WriteString(raw)
		} else {
			_ = json.NewEncoder(&buf).Encode(body)
		}
	}
	req, _ := http.NewRequest(method, s.GraphURL()+"/v23.0/"+pnid+"/settings"+query, &buf)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	return doJSON(t, req)
}

func postSettings(t *testing.T, s *Sim, calling map[string]any) (int, map[string]any) {
	t.Helper()
	return settingsReq(t, s, http.MethodPost, testPhoneID, "", map[string]any{"messaging_product": "whatsapp", "calling": calling})
}

func mustPost(t *testing.T, s *Sim, calling map[string]any) {
	t.Helper()
	if code, body := postSettings(t, s, calling); code != 200 || !reflect.DeepEqual(body, map[string]any{"success": true}) {
		t.Fatalf("POST settings %v: HTTP %d %v", calling, code, body)
	}
}

func getCalling(t *testing.T, s *Sim, pnid, query string) map[string]any {
	t.Helper()
	code, body := settingsReq(t, s, http.MethodGet, pnid, query, nil)
	c, ok := body["calling"].(map[string]any)
	if code != 200 || !ok || len(body) != 1 {
		t.Fatalf("GET settings: HTTP %d %v", code, body)
	}
	return c
}

// norm gives v the shape JSON decoding gives it (numbers float64).
func norm(v any) any {
	var out any
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &out)
	return out
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func weekly(entries ...string) []any { // "MONDAY 0900-1200"
	var out []any
	for _, e := range entries {
		day, span, _ := strings.Cut(e, " ")
		open, shut, _ := strings.Cut(span, "-")
		out = append(out, map[string]any{"day_of_week": day, "open_time": open, "close_time": shut})
	}
	return out
}

func holiday(date, start, end string) map[string]any {
	return map[string]any{"date": date, "start_time": start, "end_time": end}
}

func fullSettings() map[string]any {
	return map[string]any{
		"status":               "ENABLED",
		"call_icon_visibility": "DEFAULT",
		"call_icons":           map[string]any{"restrict_to_user_countries": []any{"US", "BR"}},
		"call_hours": map[string]any{
			"status": "ENABLED", "timezone_id": "America/Manaus",
			"weekly_operating_hours": weekly("MONDAY 0400-1020", "MONDAY 1300-1700", "TUESDAY 0108-1020"),
			"holiday_schedule":       []any{holiday("2026-02-28", "0000", "2359"), holiday("2026-12-25", "0900", "1200")},
		},
		"callback_permission_status": "ENABLED",
		"sip": map[string]any{"status": "ENABLED", "servers": []any{map[string]any{
			"hostname": "sip.example.com", "port": 5061, "request_uri_user_params": map[string]any{"tgrp": "wa", "trunk-context": "example.com"}}}},
		"srtp_key_exchange_protocol": "SDES",
		"audio":                      map[string]any{"additional_codecs": []any{"PCMA", "PCMU"}},
		"voicemail":                  map[string]any{"status": "DISABLED"},
	}
}

// R1/R2: a valid update is taken whole and GET shows it, with app_id and,
// only when asked, the SIP password.
func TestSettingsApplyAndGet(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	s.SetClock(settingsClock().now)
	if err := s.SetNumber(testPhoneID, NumberConfig{SIPPassword: "sip-secret"}); err != nil {
		t.Fatal(err)
	}
	// A new number: calling disabled.
	if c := getCalling(t, s, testPhoneID, ""); c["status"] != "DISABLED" || c["restrictions"] != nil {
		t.Fatalf("initial settings: %v", c)
	}
	mustPost(t, s, fullSettings())
	want := norm(fullSettings()).(map[string]any)
	if got := s.Settings(testPhoneID); !reflect.DeepEqual(got, want) {
		t.Errorf("Settings:\n got %s\nwant %s", jsonOf(got), jsonOf(want))
	}
	shown := norm(fullSettings()).(map[string]any)
	server := shown["sip"].(map[string]any)["servers"].([]any)[0].(map[string]any)
	server["app_id"] = defaultAppID
	if got := getCalling(t, s, testPhoneID, ""); !reflect.DeepEqual(got, shown) {
		t.Errorf("GET:\n got %s\nwant %s", jsonOf(got), jsonOf(shown))
	}
	for _, q := range []string{"?include_sip_credentials=false", "?include_sip_credentials=nope"} {
		if got := getCalling(t, s, testPhoneID, q); !reflect.DeepEqual(got, shown) {
			t.Errorf("GET %s shows %s", q, jsonOf(got))
		}
	}
	server["sip_user_password"] = "sip-secret"
	if got := getCalling(t, s, testPhoneID, "?include_sip_credentials=true"); !reflect.DeepEqual(got, shown) {
		t.Errorf("GET with credentials:\n got %s\nwant %s", jsonOf(got), jsonOf(shown))
	}
	if s.Settings("999") != nil {
		t.Error("Settings of an unknown number")
	}
	// Settings is a copy.
	s.Settings(testPhoneID)["status"] = "DISABLED"
	if s.Settings(testPhoneID)["status"] != "ENABLED" {
		t.Error("Settings shares the stored map")
	}
}

// A field not given is left as it was; call_hours is replaced whole, so a
// call_hours without holiday_schedule deletes the holidays.
func TestSettingsPartialUpdateAndCallHoursReplace(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	s.SetClock(settingsClock().now)
	mustPost(t, s, fullSettings())
	before := s.Settings(testPhoneID)

	mustPost(t, s, map[string]any{"call_icon_visibility": "DISABLE_ALL"})
	after := s.Settings(testPhoneID)
	if after["call_icon_visibility"] != "DISABLE_ALL" {
		t.Errorf("call_icon_visibility %v", after["call_icon_visibility"])
	}
	delete(after, "call_icon_visibility")
	delete(before, "call_icon_visibility")
	if !reflect.DeepEqual(after, before) {
		t.Errorf("a partial update changed other fields:\n%s\n%s", jsonOf(before), jsonOf(after))
	}

	hours := map[string]any{"status": "ENABLED", "timezone_id": "Asia/Singapore", "weekly_operating_hours": weekly("FRIDAY 0800-1800")}
	mustPost(t, s, map[string]any{"call_hours": hours})
	got := getCalling(t, s, testPhoneID, "")["call_hours"]
	if !reflect.DeepEqual(got, norm(hours)) {
		t.Errorf("call_hours after a replace without holidays: %s", jsonOf(got))
	}
	if s.Settings(testPhoneID)["sip"] == nil || s.Settings(testPhoneID)["status"] != "ENABLED" {
		t.Errorf("replacing call_hours touched other fields: %s", jsonOf(s.Settings(testPhoneID)))
	}
	// Other top-level settings are ignored; messaging_product may be absent
	// (Meta's sample has none).
	if code, body := settingsReq(t, s, http.MethodPost, testPhoneID, "", map[string]any{"calling": map[string]any{"status": "DISABLED"}, "storage_configuration": map[string]any{"status": "DEFAULT"}}); code != 200 {
		t.Errorf("without messaging_product: HTTP %d %v", code, body)
	}
}

// Every broken rule: HTTP 400, Meta's error object, the listed message and
// details naming the problem; the settings stay as they were.
func TestSettingsInvalid(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	s.SetClock(settingsClock().now)
	if err := s.SetNumber("2000000002", NumberConfig{}); err != nil {
		t.Fatal(err)
	}
	announcement := uploadAnnouncement(t, s, testPhoneID)
	otherNumbers := uploadAnnouncement(t, s, "2000000002")
	_, plain := upload(t, s, testPhoneID, map[string]string{"messaging_product": "whatsapp"}, oggOpus(time.Second), "audio/ogg")
	mustPost(t, s, fullSettings())
	before := s.Settings(testPhoneID)

	hours := func(mod func(h map[string]any)) map[string]any {
		h := map[string]any{"status": "ENABLED", "timezone_id": "America/Manaus", "weekly_operating_hours": weekly("MONDAY 0900-1700")}
		mod(h)
		return map[string]any{"call_hours": h}
	}
	vm := func(v map[string]any) map[string]any {
		return map[string]any{"call_hours": map[string]any{"status": "DISABLED"}, "voicemail": v}
	}
	vmAudio := func(id any, timeout any) map[string]any {
		d := map[string]any{"announcement_media_id": id}
		if timeout != nil {
			d["timeout_seconds"] = timeout
		}
		return map[string]any{"default": d}
	}
	twentyOne := []any{}
	for i := range 21 {
		twentyOne = append(twentyOne, holiday(fmt.Sprintf("2026-05-%02d", i+1), "0000", "2359"))
	}
	cases := []struct {
		name    string
		calling any
		message string // in error.message
		details string // in error_data.details
	}{
		{"status", map[string]any{"status": "ON"}, "Invalid status", `calling.status must be ENABLED or DISABLED, not "ON"`},
		{"status type", map[string]any{"status": true}, "Invalid status", "not true"},
		{"icon visibility", map[string]any{"call_icon_visibility": "HIDE"}, "Invalid parameter", "calling.call_icon_visibility must be DEFAULT or DISABLE_ALL"},
		{"callback", map[string]any{"callback_permission_status": "YES"}, "Invalid status", "calling.callback_permission_status"},
		{"srtp", map[string]any{"srtp_key_exchange_protocol": "ZRTP"}, "Invalid parameter", "calling.srtp_key_exchange_protocol must be DTLS or SDES"},
		{"unknown key", map[string]any{"video": map[string]any{"status": "ENABLED"}}, "Invalid parameter", "calling.video is not a parameter"},
		{"country", map[string]any{"call_icons": map[string]any{"restrict_to_user_countries": []any{"USA"}}}, "Invalid parameter", "restrict_to_user_countries[0]"},
		{"no calling", nil, "Invalid parameter", "calling is required"},
		{"calling not object", "[1]", "Invalid parameter", "calling must be a JSON object"},

		{"hours status", hours(func(h map[string]any) { delete(h, "status") }), "Invalid status", "call_hours.status is required"},
		{"no timezone", hours(func(h map[string]any) { delete(h, "timezone_id") }), "Timezone is invalid in call_hours", "timezone_id is required"},
		{"bad timezone", hours(func(h map[string]any) { h["timezone_id"] = "Mars/Olympus_Mons" }), "Timezone is invalid in call_hours", `"Mars/Olympus_Mons" is not an IANA time zone`},
		{"Local timezone", hours(func(h map[string]any) { h["timezone_id"] = "Local" }), "Timezone is invalid in call_hours", "not an IANA"},
		{"no weekly", hours(func(h map[string]any) { delete(h, "weekly_operating_hours") }), "weekly_operating_hours in call_hours cannot be empty", "required"},
		{"empty weekly", hours(func(h map[string]any) { h["weekly_operating_hours"] = []any{} }), "weekly_operating_hours in call_hours cannot be empty", "is empty"},
		{"day", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("MON 0900-1700") }), "Invalid schedule for call_hours", `weekly_operating_hours[0].day_of_week must be MONDAY or`},
		{"open format", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("MONDAY 900-1700") }), "Invalid schedule for call_hours", `weekly_operating_hours[0].open_time "900" is not a time "HHMM"`},
		{"close 2400", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("MONDAY 0900-2400") }), "Invalid schedule for call_hours", `close_time "2400"`},
		{"minutes 60", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("MONDAY 0960-1000") }), "Invalid schedule for call_hours", `open_time "0960"`},
		{"open after close", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("MONDAY 1700-0900") }), "Invalid schedule for call_hours", "open_time 1700 is not before close_time 0900"},
		{"open equals close", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("MONDAY 0900-0900") }), "Invalid schedule for call_hours", "not before"},
		{"three a day", hours(func(h map[string]any) {
			h["weekly_operating_hours"] = weekly("TUESDAY 0800-0900", "TUESDAY 1000-1100", "TUESDAY 1200-1300")
		}), "More than 2 entries not allowed in weekly_operating_hours schedule in call_hours", "TUESDAY has 3 entries"},
		{"overlap", hours(func(h map[string]any) { h["weekly_operating_hours"] = weekly("FRIDAY 1200-1800", "FRIDAY 0900-1300") }),
			"Overlapping schedule in call_hours is not allowed", "weekly_operating_hours[1] and calling.call_hours.weekly_operating_hours[0] overlap on FRIDAY"},
		{"21 holidays", hours(func(h map[string]any) { h["holiday_schedule"] = twentyOne }), "Invalid schedule for call_hours", "holiday_schedule has 21 entries; at most 20"},
		{"holiday format", hours(func(h map[string]any) { h["holiday_schedule"] = []any{holiday("2026/12/25", "0000", "2359")} }),
			"Date format in holiday_schedule for call_hours is invalid", `holiday_schedule[0].date "2026/12/25"`},
		{"holiday no date", hours(func(h map[string]any) { h["holiday_schedule"] = []any{holiday("2026-02-30", "0000", "2359")} }),
			"Date format in holiday_schedule for call_hours is invalid", `"2026-02-30"`},
		{"holiday past", hours(func(h map[string]any) { h["holiday_schedule"] = []any{holiday("2026-02-27", "0000", "2359")} }),
			"Holiday given in call_hours is a past date", "2026-02-27 is before today (2026-02-28 in America/Manaus)"},
		{"holiday past in Singapore", hours(func(h map[string]any) {
			h["timezone_id"] = "Asia/Singapore"
			h["holiday_schedule"] = []any{holiday("2026-02-28", "0000", "2359")}
		}), "Holiday given in call_hours is a past date", "(2026-03-01 in Asia/Singapore)"},
		{"holiday start after end", hours(func(h map[string]any) { h["holiday_schedule"] = []any{holiday("2026-12-25", "1200", "0900")} }),
			"Invalid schedule for call_hours", "start_time 1200 is not before end_time 0900"},
		{"holiday overlap", hours(func(h map[string]any) {
			h["holiday_schedule"] = []any{holiday("2026-12-25", "0900", "1200"), holiday("2026-12-25", "1100", "1300")}
		}), "Overlapping schedule in call_hours is not allowed", "on 2026-12-25"},

		{"sip status", map[string]any{"sip": map[string]any{"servers": []any{}}}, "Invalid status", "calling.sip.status is required"},
		{"sip two servers", map[string]any{"sip": map[string]any{"status": "ENABLED", "servers": []any{
			map[string]any{"hostname": "a.example.com"}, map[string]any{"hostname": "b.example.com"}}}}, "Invalid parameter", "one server per app"},
		{"sip no server", map[string]any{"sip": map[string]any{"status": "ENABLED"}}, "Invalid parameter", "calling.sip.servers needs the SIP server"},
		{"sip hostname", map[string]any{"sip": map[string]any{"status": "ENABLED", "servers": []any{map[string]any{"hostname": "sips://sip.example.com:5061"}}}},
			"Invalid parameter", "calling.sip.servers[0].hostname"},
		{"sip port", map[string]any{"sip": map[string]any{"status": "ENABLED", "servers": []any{map[string]any{"hostname": "sip.example.com", "port": 70000}}}},
			"Invalid parameter", "calling.sip.servers[0].port 70000"},

		{"codec", map[string]any{"audio": map[string]any{"additional_codecs": []any{"PCMA", "G722"}}}, "Invalid parameter", `calling.audio.additional_codecs[1] must be PCMA or PCMU, not "G722"`},
		{"codec twice", map[string]any{"audio": map[string]any{"additional_codecs": []any{"PCMU", "PCMU"}}}, "Invalid parameter", "listed twice"},

		{"voicemail status", vm(map[string]any{"status": "MAYBE"}), "Invalid status", "calling.voicemail.status"},
		{"voicemail no triggers", vm(map[string]any{"status": "ENABLED", "audio": vmAudio(announcement, 20)}), "Invalid parameter", "voicemail.triggers is required"},
		{"voicemail empty triggers", vm(map[string]any{"status": "ENABLED", "triggers": []any{}, "audio": vmAudio(announcement, 20)}), "Invalid parameter", "at least one trigger"},
		{"voicemail trigger", vm(map[string]any{"status": "ENABLED", "triggers": []any{"BUSY"}, "audio": vmAudio(announcement, 20)}), "Invalid parameter", `triggers[0] must be REJECT or TIMEOUT, not "BUSY"`},
		{"voicemail no audio", vm(map[string]any{"status": "ENABLED", "triggers": []any{"REJECT"}}), "Invalid parameter", "announcement_media_id is required"},
		{"voicemail unknown media", vm(map[string]any{"status": "ENABLED", "triggers": []any{"REJECT"}, "audio": vmAudio(123456789, nil)}), "Invalid parameter",
			"announcement_media_id 123456789 is not a media id this number uploaded with use_case=call_voicemail_announcement"},
		{"voicemail plain media", vm(map[string]any{"status": "ENABLED", "triggers": []any{"REJECT"}, "audio": vmAudio(str(plain, "id"), nil)}), "Invalid parameter", "use_case=call_voicemail_announcement"},
		{"voicemail other number's media", vm(map[string]any{"status": "ENABLED", "triggers": []any{"REJECT"}, "audio": vmAudio(otherNumbers, nil)}), "Invalid parameter", "this number uploaded"},
		{"voicemail timeout 31", vm(map[string]any{"status": "ENABLED", "triggers": []any{"TIMEOUT"}, "audio": vmAudio(announcement, 31)}), "Invalid parameter", "timeout_seconds 31 is not a whole number of seconds from 0 to 30"},
		{"voicemail timeout -1", vm(map[string]any{"status": "ENABLED", "triggers": []any{"TIMEOUT"}, "audio": vmAudio(announcement, -1)}), "Invalid parameter", "timeout_seconds -1"},
		{"voicemail timeout 2.5", vm(map[string]any{"status": "ENABLED", "triggers": []any{"TIMEOUT"}, "audio": vmAudio(announcement, 2.5)}), "Invalid parameter", "timeout_seconds 2.5"},
		// call_hours is ENABLED in the stored settings.
		{"voicemail with call hours", map[string]any{"voicemail": map[string]any{"status": "ENABLED", "triggers": []any{"REJECT"}, "audio": vmAudio(announcement, nil)}},
			"Invalid parameter", "calling.voicemail and calling.call_hours cannot both be ENABLED"},
	}
	for _, c := range cases {
		var body any = map[string]any{"messaging_product": "whatsapp", "calling": c.calling}
		if raw, ok := c.calling.(string); ok {
			body = `{"messaging_product":"whatsapp","calling":` + raw + `}`
		}
		code, resp := settingsReq(t, s, http.MethodPost, testPhoneID, "", body)
		details := wantGraphError(t, c.name, code, resp, 400, 100)
		e := resp["error"].(map[string]any)
		if msg := str(e, "message"); msg != "(#100) "+c.message || !strings.Contains(details, c.details) || e["type"] != "OAuthException" {
			t.Errorf("%s: message %q details %q, want %q and %q", c.name, msg, details, c.message, c.details)
		}
		if after := s.Settings(testPhoneID); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s: a refused update changed the settings:\n%s", c.name, jsonOf(after))
		}
	}
	// Not JSON; another messaging product; an unknown number.
	for name, body := range map[string]any{"not JSON": `{"calling":`, "product": map[string]any{"messaging_product": "sms", "calling": map[string]any{}}} {
		code, resp := settingsReq(t, s, http.MethodPost, testPhoneID, "", body)
		wantGraphError(t, name, code, resp, 400, 100)
	}
	code, resp := settingsReq(t, s, http.MethodGet, "999", "", nil)
	wantGraphError(t, "unknown number", code, resp, 400, 100)
	if e := resp["error"].(map[string]any); e["error_subcode"] != 33.0 {
		t.Errorf("unknown number: %v", e)
	}
	// The valid voicemail: call hours off, the announcement this number
	// uploaded (as a number or a string), TIMEOUT without timeout_seconds.
	for _, id := range []any{announcement, json.Number(announcement)} {
		mustPost(t, s, vm(map[string]any{"status": "ENABLED", "triggers": []any{"REJECT", "TIMEOUT"}, "audio": vmAudio(id, 0)}))
		mustPost(t, s, vm(map[string]any{"status": "ENABLED", "triggers": []any{"TIMEOUT"}, "audio": vmAudio(id, nil)}))
	}
	got := getCalling(t, s, testPhoneID, "")["voicemail"]
	if !reflect.DeepEqual(got, norm(map[string]any{"status": "ENABLED", "triggers": []any{"TIMEOUT"}, "audio": vmAudio(json.Number(announcement), nil)})) {
		t.Errorf("voicemail: %s", jsonOf(got))
	}
	// Now call hours cannot come back on while voicemail is ENABLED.
	code, resp = postSettings(t, s, hours(func(map[string]any) {}))
	if d := wantGraphError(t, "call hours with voicemail", code, resp, 400, 100); !strings.Contains(d, "cannot both be ENABLED") {
		t.Errorf("call hours with voicemail: %q", d)
	}
	// Today's holiday in the business's time zone is not in the past.
	mustPost(t, s, map[string]any{"voicemail": map[string]any{"status": "DISABLED"}})
	mustPost(t, s, hours(func(h map[string]any) {
		h["holiday_schedule"] = []any{holiday("2026-02-28", "0000", "1200"), holiday("2026-02-28", "1200", "2359")}
	}))
}

// Enabling calling needs a messaging limit of 2,000 (138015); the rest of
// the settings do not.
func TestSettingsMessagingLimit(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	if err := s.SetNumber(testPhoneID, NumberConfig{MessagingLimit: 1000}); err != nil {
		t.Fatal(err)
	}
	code, body := postSettings(t, s, map[string]any{"status": "ENABLED", "callback_permission_status": "ENABLED"})
	details := wantGraphError(t, "limit 1000", code, body, 400, 138015)
	e := body["error"].(map[string]any)
	if e["error_subcode"] != 2593145.0 || e["message"] != "(#138015) Calling APIs cannot be enabled" || !strings.Contains(details, "messaging limit is 1000") {
		t.Errorf("138015: %v", e)
	}
	if s.Settings(testPhoneID)["status"] != "DISABLED" || s.Settings(testPhoneID)["callback_permission_status"] != "DISABLED" {
		t.Errorf("a refused update changed the settings: %v", s.Settings(testPhoneID))
	}
	mustPost(t, s, map[string]any{"status": "DISABLED", "callback_permission_status": "ENABLED"})
	if err := s.SetNumber(testPhoneID, NumberConfig{MessagingLimit: 2000}); err != nil {
		t.Fatal(err)
	}
	mustPost(t, s, map[string]any{"status": "ENABLED"})
	// Settings are kept per number: a second one starts afresh.
	if err := s.SetNumber("2000000002", NumberConfig{}); err != nil {
		t.Fatal(err)
	}
	if c := getCalling(t, s, "2000000002", ""); c["status"] != "DISABLED" || c["callback_permission_status"] != "DISABLED" {
		t.Errorf("second number: %v", c)
	}
	if err := s.SetNumber("bad/id", NumberConfig{}); err == nil {
		t.Error("SetNumber took a path")
	}
}

// With SettingsWebhooks, an update that changes what Meta observes posts
// account_settings_update with the whole calling object (no password); one
// that does not, none.
func TestSettingsWebhookOnOwnChange(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, func(c *Config) { c.SettingsWebhooks = true })
	s.SetClock(settingsClock().now)
	mustPost(t, s, map[string]any{"call_hours": map[string]any{"status": "DISABLED"}})
	if !hooks.quiet(300 * time.Millisecond) {
		t.Fatal("a webhook for a change Meta does not observe")
	}
	mustPost(t, s, fullSettings())
	ev := hooks.expect(t, 5*time.Second, "settings_update")[0]
	calling := ev.value["phone_number_settings"].(map[string]any)["calling"].(map[string]any)
	if ev.id != testPhoneID || calling["status"] != "ENABLED" || calling["srtp_key_exchange_protocol"] != "SDES" || calling["call_hours"] == nil {
		t.Errorf("account_settings_update: %s", ev.raw)
	}
	if strings.Contains(string(ev.raw), "sip_user_password") {
		t.Errorf("the webhook carries the SIP password: %s", ev.raw)
	}
	mustPost(t, s, map[string]any{"sip": map[string]any{"status": "DISABLED"}})
	hooks.expect(t, 5*time.Second, "settings_update")
}

// SettingsRequests records what the settings and media upload endpoints
// took, refused requests included, and nothing of the other endpoints.
func TestSettingsRequestsRecorded(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	if len(s.SettingsRequests()) != 0 {
		t.Fatal("requests before any")
	}
	getCalling(t, s, testPhoneID, "?include_sip_credentials=true")
	mustPost(t, s, map[string]any{"status": "ENABLED"})
	postSettings(t, s, map[string]any{"status": "ON"})
	id := uploadAnnouncement(t, s, testPhoneID)
	upload(t, s, testPhoneID, announcementFields, []byte("not ogg"), "audio/ogg")
	settingsReq(t, s, http.MethodGet, "999", "", nil)
	graphPost(t, s, testToken, action("nope", "accept", ""))

	got := s.SettingsRequests()
	if len(got) != 6 {
		t.Fatalf("%d requests recorded, want 6: %+v", len(got), got)
	}
	want := []struct {
		method, endpoint, pnid, query string
		status                        int
	}{
		{"GET", "settings", testPhoneID, "include_sip_credentials=true", 200},
		{"POST", "settings", testPhoneID, "", 200},
		{"POST", "settings", testPhoneID, "", 400},
		{"POST", "media", testPhoneID, "", 200},
		{"POST", "media", testPhoneID, "", 400},
		{"GET", "settings", "999", "", 400},
	}
	for i, w := range want {
		r := got[i]
		if r.Method != w.method || r.Endpoint != w.endpoint || r.PhoneNumberID != w.pnid || r.Query != w.query || r.Status != w.status {
			t.Errorf("request %d: %+v, want %+v", i, r, w)
		}
	}
	if !strings.Contains(string(got[1].Body), `"status":"ENABLED"`) || got[0].Body != nil {
		t.Errorf("bodies: %q, %q", got[0].Body, got[1].Body)
	}
	up := got[3]
	if up.MediaID != id || up.Filename != "prompt.ogg" || up.Size == 0 || up.Fields["use_case"] != "call_voicemail_announcement" || up.Body != nil {
		t.Errorf("upload recorded as %+v", up)
	}
	if got[4].MediaID != "" || got[4].Size != len("not ogg") {
		t.Errorf("refused upload recorded as %+v", got[4])
	}
	// A copy.
	got[1].Body[0] = 'X'
	got[3].Fields["use_case"] = "x"
	if again := s.SettingsRequests(); again[1].Body[0] != '{' || again[3].Fields["use_case"] != "call_voicemail_announcement" {
		t.Error("SettingsRequests shares its records")
	}
}

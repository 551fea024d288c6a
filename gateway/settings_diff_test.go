package gateway

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wagateway/wagateway/whatsapp"
)

func metaSettings(t *testing.T, js string) *whatsapp.CallingSettings {
	t.Helper()
	var s whatsapp.CallingSettings
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func callingOf(t *testing.T, calling string) *CallingConfig {
	t.Helper()
	c, err := parseCalling(t, calling)
	if err != nil {
		t.Fatal(err)
	}
	return c.Numbers[0].Calling
}

func TestSettingsDiff(t *testing.T) {
	const meta = `{"status":"DISABLED","call_icon_visibility":"DEFAULT","callback_permission_status":"ENABLED",
	 "call_icons":{"restrict_to_user_countries":["US"]},
	 "call_hours":{"status":"ENABLED","timezone_id":"Europe/Paris",
	   "weekly_operating_hours":[{"day_of_week":"TUESDAY","open_time":"0900","close_time":"1800"},{"day_of_week":"MONDAY","open_time":"0900","close_time":"1800"}],
	   "holiday_schedule":[{"date":"2099-05-01","start_time":"0000","end_time":"2359"},{"date":"2099-01-01","start_time":"0000","end_time":"2359"}]},
	 "audio":{"additional_codecs":["PCMU"]},
	 "sip":{"status":"DISABLED"},
	 "restrictions":{"restrictions_list":[{"type":"RESTRICTED_USER_INITIATED_CALLING","expiration":"1900000000"}]}}`
	for _, tc := range []struct {
		name, calling string
		want          []string
	}{
		{"in step, in another order and case", `
status: disabled
call_icons: {restrict_to_user_countries: [us]}
call_hours:
  status: enabled
  timezone: Europe/Paris
  weekly:
    - {day: monday, open: "0900", close: "1800"}
    - {day: tuesday, open: "0900", close: "1800"}
  holidays:
    - {date: 2099-01-01, start: "0000", end: "2359"}
    - {date: 2099-05-01, start: "0000", end: "2359"}
additional_codecs: [pcmu]`, nil},
		{"fields left out are not compared", "callback_permission: enabled", nil},
		{"scalars", "status: enabled\ncall_icon_visibility: disable_all\nsrtp_key_exchange: sdes",
			[]string{"status: DISABLED → ENABLED", "call_icon_visibility: DEFAULT → DISABLE_ALL", "srtp_key_exchange_protocol: (unset) → SDES"}},
		{"lists as sets", "call_icons: {restrict_to_user_countries: [BR, US]}\nadditional_codecs: []",
			[]string{"call_icons.restrict_to_user_countries: [US] → [BR, US]", "audio.additional_codecs: [PCMU] → (none)"}},
		// call_hours is replaced whole: the file's hours without holidays
		// delete Meta's holidays.
		{"holidays deleted", `
call_hours:
  status: enabled
  timezone: Europe/Paris
  weekly:
    - {day: monday, open: "0900", close: "1800"}
    - {day: tuesday, open: "0900", close: "1800"}`,
			[]string{"call_hours.holiday_schedule: delete 2 entries (Meta replaces call_hours whole): 2099-01-01 0000-2359, 2099-05-01 0000-2359"}},
		{"hours changed", `
call_hours:
  status: enabled
  timezone: America/Sao_Paulo
  weekly:
    - {day: monday, open: "0800", close: "1800"}
    - {day: tuesday, open: "0900", close: "1800"}
  holidays:
    - {date: 2099-01-01, start: "0000", end: "2359"}
    - {date: 2099-05-01, start: "0000", end: "2359"}
    - {date: 2099-12-25, start: "0000", end: "1200"}`,
			[]string{"call_hours.timezone_id: Europe/Paris → America/Sao_Paulo",
				"call_hours.weekly_operating_hours: delete 1 entry (Meta replaces call_hours whole): MONDAY 0900-1800",
				"call_hours.weekly_operating_hours: add 1 entry: MONDAY 0800-1800",
				"call_hours.holiday_schedule: add 1 entry: 2099-12-25 0000-1200"}},
		{"hours turned off", "call_hours: {status: disabled}", []string{
			"call_hours.status: ENABLED → DISABLED",
			"call_hours.weekly_operating_hours: delete 2 entries (Meta replaces call_hours whole): MONDAY 0900-1800, TUESDAY 0900-1800",
			"call_hours.holiday_schedule: delete 2 entries (Meta replaces call_hours whole): 2099-01-01 0000-2359, 2099-05-01 0000-2359"}},
		{"voicemail", "voicemail: {status: enabled, triggers: [reject, timeout], timeout_seconds: 25}", []string{
			"voicemail.status: (unset) → ENABLED", "voicemail.triggers: (none) → [REJECT, TIMEOUT]", "voicemail.timeout_seconds: (unset) → 25"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := DiffCallingSettings(callingOf(t, tc.calling), metaSettings(t, meta), nil)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
	// Meta with nothing set: every managed field is a change.
	got := DiffCallingSettings(callingOf(t, "status: enabled\ncall_hours: {status: disabled}"), nil, nil)
	if strings.Join(got, "|") != "status: (unset) → ENABLED|call_hours.status: (unset) → DISABLED" {
		t.Errorf("against no settings: %q", got)
	}
}

// The announcement is compared by the file's hash and the media id the last
// apply recorded: Meta returns only the media id.
func TestSettingsDiffAnnouncement(t *testing.T) {
	cc := callingOf(t, "voicemail: {status: enabled, triggers: [timeout], timeout_seconds: 20, announcement_file: /x/prompt.ogg}")
	meta := metaSettings(t, `{"voicemail":{"status":"ENABLED","triggers":["TIMEOUT"],"audio":{"default":{"announcement_media_id":"111","timeout_seconds":20}}}}`)
	rec := &AnnouncementRecord{SHA256: "aa", MediaID: "111"}
	for _, tc := range []struct {
		name string
		ann  *AnnouncementCheck
		want string
	}{
		{"recorded and unchanged", &AnnouncementCheck{File: "/x/prompt.ogg", SHA256: "aa", Last: rec}, ""},
		{"never recorded", &AnnouncementCheck{File: "/x/prompt.ogg", SHA256: "aa"}, "voicemail.announcement: upload /x/prompt.ogg (no upload of it recorded; Meta has 111)"},
		{"file changed", &AnnouncementCheck{File: "/x/prompt.ogg", SHA256: "bb", Last: rec}, "voicemail.announcement: upload /x/prompt.ogg (changed since the last apply)"},
		{"changed at Meta", &AnnouncementCheck{File: "/x/prompt.ogg", SHA256: "aa", Last: &AnnouncementRecord{SHA256: "aa", MediaID: "222"}},
			"voicemail.announcement: upload /x/prompt.ogg (Meta has media 111, the last apply set 222)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, upload := diffCalling(callingSettings(cc), meta, tc.ann)
			if strings.Join(lines, "\n") != tc.want || upload != (tc.want != "") {
				t.Errorf("got %q (upload %v), want %q", lines, upload, tc.want)
			}
		})
	}
}

// What apply sends: the managed fields only; in voicemail, what the file
// leaves out is Meta's, so the object goes whole.
func TestSettingsPlanBody(t *testing.T) {
	meta := metaSettings(t, `{"status":"ENABLED","call_icon_visibility":"DEFAULT",
	 "voicemail":{"status":"DISABLED","triggers":["REJECT"],"audio":{"default":{"announcement_media_id":"111","timeout_seconds":30}}}}`)
	p, err := planCalling("numbers[0].calling", callingOf(t,
		"callback_permission: disabled\nvoicemail: {status: disabled, triggers: [reject]}"), meta, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(p.body)
	want := `{"callback_permission_status":"DISABLED","voicemail":{"status":"DISABLED","triggers":["REJECT"],"audio":{"default":{"announcement_media_id":"111","timeout_seconds":30}}}}`
	if string(body) != want {
		t.Errorf("body\n %s\nwant\n %s", body, want)
	}
	if strings.Join(p.lines, "|") != "callback_permission_status: (unset) → DISABLED" {
		t.Errorf("lines %q", p.lines)
	}

	// Voicemail turned on by the file while Meta has call hours on (and the
	// file leaves them alone): refused before anything is sent.
	meta = metaSettings(t, `{"call_hours":{"status":"ENABLED","timezone_id":"UTC"}}`)
	_, err = planCalling("numbers[0].calling", callingOf(t, "voicemail: {status: enabled, triggers: [reject]}"), meta, nil)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "numbers[0].calling.voicemail.status: enabled while call_hours are enabled at Meta") {
		t.Errorf("conflict with Meta's call hours: %v", err)
	}
}

// show's text: every field, the SIP password only as given.
func TestSettingsFormat(t *testing.T) {
	s := metaSettings(t, `{"status":"ENABLED","call_hours":{"status":"ENABLED","timezone_id":"UTC","weekly_operating_hours":[{"day_of_week":"FRIDAY","open_time":"0900","close_time":"1700"}]},
	 "sip":{"status":"ENABLED","servers":[{"hostname":"sip.example.com","port":5061,"app_id":"42","sip_user_password":"s3cret-pw"}]},
	 "restrictions":{"restrictions_list":[{"type":"RESTRICTED_USER_INITIATED_CALLING","reason":"LOW_PICKUP","expiration":"1900000000"}]}}`)
	masked := strings.Join(FormatCallingSettings(s.Masked()), "\n")
	for _, want := range []string{"status                       ENABLED", "call_hours                   ENABLED, timezone UTC", "  weekly   FRIDAY 0900-1700",
		"  server   sip.example.com:5061 app_id 42", "restriction                  RESTRICTED_USER_INITIATED_CALLING (LOW_PICKUP) until 1900000000"} {
		if !strings.Contains(masked, want) {
			t.Errorf("lacks %q:\n%s", want, masked)
		}
	}
	if strings.Contains(masked, "s3cret-pw") {
		t.Errorf("masked output shows the password:\n%s", masked)
	}
}

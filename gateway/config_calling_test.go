package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// callingBase is a config whose number 0 takes the calling: section the
// test appends (indented under numbers[0]).
const callingBase = `
whatsapp:
  access_token: {env: T}
  app_secret: {env: S}
  verify_token: {env: V}
trunks:
  - {name: pbx, address: "127.0.0.1:5070"}
numbers:
  - phone_number_id: "1000000001"
    routes: [{trunk: pbx, destination: "sip:a@127.0.0.1"}]
    calling:
`

func parseCalling(t *testing.T, calling string) (*Config, error) {
	t.Helper()
	var b strings.Builder
	b.WriteString(callingBase)
	for _, l := range strings.Split(strings.Trim(calling, "\n"), "\n") {
		b.WriteString("      " + l + "\n")
	}
	return ParseConfig([]byte(b.String()))
}

// A full calling: section loads, and maps onto Meta's values.
func TestCallingConfigMapsToMeta(t *testing.T) {
	c, err := parseCalling(t, `
status: enabled
call_icon_visibility: default
call_icons: {restrict_to_user_countries: [us, BR]}
call_hours:
  status: enabled
  timezone: Europe/Paris
  weekly:
    - {day: monday, open: "0900", close: "1230"}
    - {day: Monday, open: 1400, close: 1800}
    - {day: saturday, open: "1000", close: "1300"}
  holidays:
    - {date: 2099-12-25, start: "0000", end: "2359"}
callback_permission: enabled
additional_codecs: [pcma, PCMU]
srtp_key_exchange: sdes
`)
	if err != nil {
		t.Fatal(err)
	}
	s := callingSettings(c.Numbers[0].Calling)
	if s.Status != "ENABLED" || s.CallIconVisibility != "DEFAULT" || s.CallbackPermissionStatus != "ENABLED" || s.SRTPKeyExchangeProtocol != "SDES" {
		t.Errorf("scalars: %+v", s)
	}
	if got := strings.Join(s.CallIcons.RestrictToUserCountries, ","); got != "US,BR" {
		t.Errorf("countries %s", got)
	}
	if got := strings.Join(s.Audio.AdditionalCodecs, ","); got != "PCMA,PCMU" {
		t.Errorf("codecs %s", got)
	}
	h := s.CallHours
	if h.Status != "ENABLED" || h.TimezoneID != "Europe/Paris" || len(h.WeeklyOperatingHours) != 3 || h.WeeklyOperatingHours[1].DayOfWeek != "MONDAY" ||
		h.WeeklyOperatingHours[1].OpenTime != "1400" || h.HolidaySchedule[0].Date != "2099-12-25" || h.HolidaySchedule[0].EndTime != "2359" {
		t.Errorf("call hours: %+v", h)
	}
	if s.Voicemail != nil {
		t.Errorf("voicemail not in the file, yet %+v", s.Voicemail)
	}

	// Absent: not managed; [] is "none", managed.
	c, err = parseCalling(t, "status: disabled\nadditional_codecs: []\n")
	if err != nil {
		t.Fatal(err)
	}
	s = callingSettings(c.Numbers[0].Calling)
	if s.Audio == nil || len(s.Audio.AdditionalCodecs) != 0 || s.CallHours != nil || s.CallIcons != nil || s.CallIconVisibility != "" {
		t.Errorf("managed fields: %+v", s)
	}
}

// Each of Meta's rules is checked locally, the error naming the field.
func TestCallingConfigValidation(t *testing.T) {
	hours := func(weekly string) string {
		return "call_hours:\n  status: enabled\n  timezone: Europe/Paris\n  weekly:\n" + weekly
	}
	for _, tc := range []struct{ name, calling, want string }{
		{"status", "status: on", `numbers[0].calling.status: "on" is not enabled or disabled`},
		{"icon", "call_icon_visibility: hidden", `numbers[0].calling.call_icon_visibility: "hidden" is not default or disable_all`},
		{"callback", "callback_permission: yes", `numbers[0].calling.callback_permission: "yes" is not enabled or disabled`},
		{"srtp", "srtp_key_exchange: zrtp", `numbers[0].calling.srtp_key_exchange: "zrtp" is not dtls or sdes`},
		{"country", "call_icons: {restrict_to_user_countries: [USA]}", `numbers[0].calling.call_icons.restrict_to_user_countries[0]: "USA" is not a two-letter country code`},
		{"codec", "additional_codecs: [PCMA, G722]", `numbers[0].calling.additional_codecs[1]: "G722" is not PCMA or PCMU`},
		{"codec twice", "additional_codecs: [PCMA, pcma]", `numbers[0].calling.additional_codecs[1]: "pcma" is listed twice`},
		{"hours status", "call_hours: {timezone: UTC}", `numbers[0].calling.call_hours.status: missing`},
		{"timezone missing", "call_hours: {status: enabled}", `numbers[0].calling.call_hours.timezone: missing`},
		{"timezone", "call_hours: {status: enabled, timezone: Mars/Olympus}", `numbers[0].calling.call_hours.timezone: "Mars/Olympus" is not an IANA timezone`},
		{"day", hours(`    - {day: mon, open: "0900", close: "1700"}`), `numbers[0].calling.call_hours.weekly[0].day: "mon" is not monday`},
		{"hhmm hour", hours(`    - {day: monday, open: "2400", close: "2359"}`), `numbers[0].calling.call_hours.weekly[0].open: "2400" is not a time HHMM within 0000-2359`},
		{"hhmm minute", hours(`    - {day: monday, open: "0900", close: "1760"}`), `numbers[0].calling.call_hours.weekly[0].close: "1760" is not a time HHMM`},
		{"hhmm form", hours(`    - {day: monday, open: "9:00", close: "1700"}`), `numbers[0].calling.call_hours.weekly[0].open: "9:00" is not a time HHMM`},
		{"hhmm missing", hours(`    - {day: monday, open: "0900"}`), `numbers[0].calling.call_hours.weekly[0].close: missing (HHMM`},
		{"close before open", hours(`    - {day: monday, open: "0900", close: "1200"}
    - {day: tuesday, open: "0900", close: "1200"}
    - {day: tuesday, open: "1800", close: "1700"}`), `numbers[0].calling.call_hours.weekly[2].close: "1700" is before open "1800"`},
		{"close at open", hours(`    - {day: monday, open: "0900", close: "0900"}`), `numbers[0].calling.call_hours.weekly[0].close: "0900" is not after open "0900"`},
		{"three a day", hours(`    - {day: friday, open: "0800", close: "1000"}
    - {day: friday, open: "1100", close: "1300"}
    - {day: friday, open: "1400", close: "1600"}`), `numbers[0].calling.call_hours.weekly[2].day: range 3 on friday: at most 2 a day`},
		{"overlap", hours(`    - {day: monday, open: "0900", close: "1300"}
    - {day: monday, open: "1200", close: "1400"}`), `numbers[0].calling.call_hours.weekly[1]: monday 1200-1400 overlaps weekly[0] (0900-1300)`},
		{"holiday date", "call_hours:\n  status: enabled\n  timezone: UTC\n  holidays:\n    - {date: 2099-13-01, start: \"0000\", end: \"2359\"}",
			`numbers[0].calling.call_hours.holidays[0].date: "2099-13-01" is not a date YYYY-MM-DD`},
		{"holiday end", "call_hours:\n  status: enabled\n  timezone: UTC\n  holidays:\n    - {date: 2099-12-24, start: \"1200\", end: \"1100\"}",
			`numbers[0].calling.call_hours.holidays[0].end: "1100" is before start "1200"`},
		{"holiday overlap", "call_hours:\n  status: enabled\n  timezone: UTC\n  holidays:\n    - {date: 2099-12-24, start: \"0000\", end: \"1200\"}\n    - {date: 2099-12-24, start: \"1100\", end: \"2359\"}",
			`numbers[0].calling.call_hours.holidays[1]: 2099-12-24 1100-2359 overlaps holidays[0]`},
		{"21 holidays", "call_hours:\n  status: enabled\n  timezone: UTC\n  holidays:\n" + holidays(21),
			`numbers[0].calling.call_hours.holidays: 21 entries, at most 20`},
		{"voicemail status", "voicemail: {triggers: [reject]}", `numbers[0].calling.voicemail.status: missing`},
		{"trigger", "voicemail: {status: enabled, triggers: [busy]}", `numbers[0].calling.voicemail.triggers[0]: "busy" is not reject or timeout`},
		{"no trigger", "voicemail: {status: enabled}", `numbers[0].calling.voicemail.triggers: voicemail is enabled: name reject, timeout or both`},
		{"timeout range", "voicemail: {status: enabled, triggers: [timeout], timeout_seconds: 31}", `numbers[0].calling.voicemail.timeout_seconds: 31 is not within 1-30`},
		{"timeout without trigger", "voicemail: {status: enabled, triggers: [reject], timeout_seconds: 20}", `numbers[0].calling.voicemail.timeout_seconds: set, but timeout is not among the triggers`},
		{"voicemail and hours", "call_hours: {status: enabled, timezone: UTC}\nvoicemail: {status: enabled, triggers: [reject]}",
			`numbers[0].calling.voicemail.status: voicemail and call_hours cannot both be enabled`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCalling(t, tc.calling)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant a problem containing %q", err, tc.want)
			}
		})
	}
	// At the limits: 20 holidays, two ranges a day meeting end to start,
	// a disabled voicemail beside enabled call hours.
	if _, err := parseCalling(t, "call_hours:\n  status: enabled\n  timezone: America/Sao_Paulo\n  weekly:\n"+
		"    - {day: monday, open: \"0000\", close: \"1200\"}\n    - {day: monday, open: \"1200\", close: \"2359\"}\n  holidays:\n"+holidays(20)+
		"voicemail: {status: disabled}\n"); err != nil {
		t.Fatal(err)
	}
}

func holidays(n int) string {
	var b strings.Builder
	day := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		b.WriteString("    - {date: " + day.AddDate(0, 0, i).Format(time.DateOnly) + ", start: \"0000\", end: \"2359\"}\n")
	}
	return b.String()
}

// A number may carry calling: without routes (its settings only), unless
// it turns calling on: its calls would have nowhere to go.
func TestCallingConfigSettingsOnlyNumber(t *testing.T) {
	base := `
whatsapp:
  access_token: {env: T}
  app_secret: {env: S}
  verify_token: {env: V}
trunks:
  - {name: pbx, address: "127.0.0.1:5070"}
numbers:
  - phone_number_id: "1"
    routes: [{trunk: pbx, destination: "sip:a@127.0.0.1"}]
  - phone_number_id: "2"
`
	c, err := ParseConfig([]byte(base + "    calling: {status: disabled}\n"))
	if err != nil {
		t.Fatalf("settings-only number refused: %v", err)
	}
	if _, err := NewRouter(c.Numbers).RouteFor("2", "", ""); err == nil || !strings.Contains(err.Error(), "has no routes") {
		t.Errorf("a call to a settings-only number: %v", err)
	}
	c, err = ParseConfig([]byte(base + "    calling: {callback_permission: enabled}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "numbers[1]: 2 has calling settings but no routes") {
		t.Errorf("warnings: %s", w)
	}
	_, err = ParseConfig([]byte(base + "    calling: {status: enabled}\n"))
	if err == nil || !strings.Contains(err.Error(), "numbers[1].routes: calling.status is enabled, so its calls need at least one route") {
		t.Errorf("enabled without routes: %v", err)
	}
	_, err = ParseConfig([]byte(base))
	if err == nil || !strings.Contains(err.Error(), "numbers[1].routes: at least one route is needed") {
		t.Errorf("neither routes nor calling: %v", err)
	}
}

// No holiday in the past, by the call hours' timezone and the clock given.
func TestCallingCheckPastHoliday(t *testing.T) {
	c, err := parseCalling(t, "call_hours:\n  status: enabled\n  timezone: Pacific/Kiritimati\n  holidays:\n"+
		"    - {date: 2026-03-01, start: \"0000\", end: \"2359\"}\n    - {date: 2026-03-02, start: \"0000\", end: \"2359\"}\n")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-01 11:00 UTC is already March 2 in Kiritimati (UTC+14).
	now := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	err = c.CheckCalling(now)
	if err == nil || !strings.Contains(err.Error(), "numbers[0].calling.call_hours.holidays[0].date: 2026-03-01 is in the past (today is 2026-03-02 in Pacific/Kiritimati)") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "holidays[1]") {
		t.Errorf("today's holiday refused: %v", err)
	}
	if err := c.CheckCalling(now.Add(-12 * time.Hour)); err != nil {
		t.Errorf("the day before: %v", err)
	}
}

// The announcement: OGG (OggS), Opus (OpusHead), under 60 s.
func TestCallingAnnouncementFile(t *testing.T) {
	dir := t.TempDir()
	good := writeOggOpus(t, dir, "good.ogg", 5*time.Second)
	long := writeOggOpus(t, dir, "long.ogg", 62*time.Second)
	notOgg := filepath.Join(dir, "prompt.wav")
	os.WriteFile(notOgg, []byte("RIFF\x00\x00\x00\x00WAVEfmt "), 0o600)
	vorbis := filepath.Join(dir, "vorbis.ogg")
	b := oggOpus(t, time.Second)
	copy(b[28:], "\x01vorbis\x00") // the first packet is not OpusHead
	os.WriteFile(vorbis, b, 0o600)
	truncated := filepath.Join(dir, "cut.ogg")
	b = oggOpus(t, 2*time.Second)
	os.WriteFile(truncated, b[:len(b)-10], 0o600)

	a, err := readAnnouncement(good)
	if err != nil || a.duration < 4*time.Second || a.duration > 5*time.Second || len(a.sha256) != 64 {
		t.Fatalf("good: %+v %v", a, err)
	}
	for file, want := range map[string]string{
		long:                              "long.ogg lasts 61",
		notOgg:                            "not an OGG file",
		vorbis:                            "not Opus",
		truncated:                         "truncated",
		filepath.Join(dir, "missing.ogg"): "no such file",
	} {
		c, err := parseCalling(t, "voicemail: {status: enabled, triggers: [timeout], timeout_seconds: 20, announcement_file: "+file+"}")
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckCalling(time.Now())
		if err == nil || !strings.Contains(err.Error(), "numbers[0].calling.voicemail.announcement_file: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", filepath.Base(file), err, want)
		}
	}
}

// LoadConfig puts calling_state_file beside the config unless it is set.
func TestCallingConfigStateFileDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(path, []byte(minimal), 0o600)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSuffix(path, ".yaml") + ".calling-state.json"; c.CallingStateFile != want {
		t.Errorf("calling_state_file %q, want %q", c.CallingStateFile, want)
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

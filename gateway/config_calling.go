package gateway

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
)

// CallingConfig is a business number's calling settings as Meta keeps them
// (POST /{PHONE_NUMBER_ID}/settings), managed from the config file by
// `wagateway settings apply`. Values are written in any case (enabled,
// ENABLED) and sent in Meta's. A field left out is not managed: apply leaves
// Meta's value as it is, and diff does not compare it. call_hours is the
// exception Meta makes: it is replaced whole, so when it is present its
// weekly hours and holidays are exactly those listed (none when absent).
type CallingConfig struct {
	Status             string           `yaml:"status"`               // enabled | disabled (calling on the number)
	CallIconVisibility string           `yaml:"call_icon_visibility"` // default | disable_all
	CallIcons          *CallIconsConfig `yaml:"call_icons"`
	CallHours          *CallHoursConfig `yaml:"call_hours"`
	CallbackPermission string           `yaml:"callback_permission"` // enabled | disabled: callers are asked for call permission
	// AdditionalCodecs beside Opus on the WhatsApp leg: PCMA, PCMU; [] for
	// none (absent: not managed).
	AdditionalCodecs []string         `yaml:"additional_codecs"`
	SRTPKeyExchange  string           `yaml:"srtp_key_exchange"` // dtls | sdes
	Voicemail        *VoicemailConfig `yaml:"voicemail"`
}

// CallIconsConfig restricts the call button to users of some countries.
type CallIconsConfig struct {
	RestrictToUserCountries []string `yaml:"restrict_to_user_countries"` // ISO 3166 alpha-2; [] for everyone
}

// CallHoursConfig is when the call button shows (Meta's call_hours): its
// status and the hours (hours.go), the shape a route's hours share.
type CallHoursConfig struct {
	Status      string `yaml:"status"` // enabled | disabled
	HoursConfig `yaml:",inline"`
}

// WeeklyHoursConfig is one opening range of a day of the week.
type WeeklyHoursConfig struct {
	Day   string `yaml:"day"`   // monday … sunday
	Open  string `yaml:"open"`  // HHMM
	Close string `yaml:"close"` // HHMM, after open
}

// HolidayConfig is a date whose hours override the weekly ones.
type HolidayConfig struct {
	Date  string `yaml:"date"`  // YYYY-MM-DD
	Start string `yaml:"start"` // HHMM
	End   string `yaml:"end"`   // HHMM, after start
}

// VoicemailConfig is Meta's voicemail for missed calls.
type VoicemailConfig struct {
	Status         string   `yaml:"status"`          // enabled | disabled
	Triggers       []string `yaml:"triggers"`        // reject, timeout
	TimeoutSeconds int      `yaml:"timeout_seconds"` // with the timeout trigger (0: not managed)
	// AnnouncementFile is an OGG/Opus prompt under 60 s, uploaded by apply
	// when it changed since the last apply (see calling_state_file).
	AnnouncementFile string `yaml:"announcement_file"`
}

// Meta's rules and values.
const (
	maxRangesPerDay       = 2  // ranges a day, in weekly hours and holidays
	maxHolidays           = 20 // holiday entries
	maxAnnouncementLength = 60 * time.Second
	maxVoicemailTimeout   = 30 // seconds: Meta's "between 0 and 30 seconds inclusive" (0 cannot be sent: it disables the timeout trigger)
)

var (
	settingsStatuses = []string{"ENABLED", "DISABLED"}
	iconVisibilities = []string{"DEFAULT", "DISABLE_ALL"}
	srtpProtocols    = []string{"DTLS", "SDES"}
	metaCodecs       = []string{"PCMA", "PCMU"}
	voicemailTrigger = []string{"REJECT", "TIMEOUT"}
	weekDays         = []string{"MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"}
	countryPattern   = regexp.MustCompile(`^[A-Z]{2}$`)
	hhmmPattern      = regexp.MustCompile(`^([01][0-9]|2[0-3])[0-5][0-9]$`)
)

// oneOf checks v (any case) against Meta's values; the error lists them as
// they may be written.
func oneOf(v string, allowed []string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(v))
	if slices.Contains(allowed, u) {
		return u, nil
	}
	low := make([]string, len(allowed))
	for i, a := range allowed {
		low[i] = strings.ToLower(a)
	}
	return "", fmt.Errorf("%q is not %s", v, orList(low))
}

func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// ManagesCalling reports whether the number's settings are in the file.
func (n NumberConfig) ManagesCalling() bool { return n.Calling != nil }

// callingEnabled: the file turns calling on for the number.
func (n NumberConfig) callingEnabled() bool {
	return n.Calling != nil && strings.EqualFold(n.Calling.Status, "ENABLED")
}

// validateCalling returns the problems of numbers[i].calling that need no
// clock and no file (Meta's rules on values and schedules), each naming its
// field. CheckCalling adds past holidays and the announcement file.
func validateCalling(f string, cc *CallingConfig) []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, f+"."+field+": "+fmt.Sprintf(format, a...)) }
	enum := func(field, v string, allowed []string) {
		if v == "" {
			return
		}
		if _, err := oneOf(v, allowed); err != nil {
			bad(field, "%v", err)
		}
	}
	enum("status", cc.Status, settingsStatuses)
	enum("call_icon_visibility", cc.CallIconVisibility, iconVisibilities)
	enum("callback_permission", cc.CallbackPermission, settingsStatuses)
	enum("srtp_key_exchange", cc.SRTPKeyExchange, srtpProtocols)
	if cc.CallIcons != nil {
		seen := map[string]bool{}
		for j, c := range cc.CallIcons.RestrictToUserCountries {
			u := strings.ToUpper(c)
			field := fmt.Sprintf("call_icons.restrict_to_user_countries[%d]", j)
			switch {
			case !countryPattern.MatchString(u):
				bad(field, "%q is not a two-letter country code (ISO 3166, e.g. US)", c)
			case seen[u]:
				bad(field, "%q is listed twice", c)
			}
			seen[u] = true
		}
	}
	seen := map[string]bool{}
	for j, c := range cc.AdditionalCodecs {
		field := fmt.Sprintf("additional_codecs[%d]", j)
		u, err := oneOf(c, metaCodecs)
		switch {
		case err != nil:
			bad(field, "%q is not PCMA or PCMU (Meta's only additional codecs; Opus is always on)", c)
		case seen[u]:
			bad(field, "%q is listed twice", c)
		}
		seen[u] = true
	}
	if h := cc.CallHours; h != nil {
		p = append(p, validateCallHours(f+".call_hours", h)...)
	}
	if v := cc.Voicemail; v != nil {
		if v.Status == "" {
			bad("voicemail.status", "missing (enabled or disabled)")
		} else {
			enum("voicemail.status", v.Status, settingsStatuses)
		}
		trig := map[string]bool{}
		for j, t := range v.Triggers {
			field := fmt.Sprintf("voicemail.triggers[%d]", j)
			u, err := oneOf(t, voicemailTrigger)
			switch {
			case err != nil:
				bad(field, "%v", err)
			case trig[u]:
				bad(field, "%q is listed twice", t)
			}
			trig[u] = true
		}
		enabled := strings.EqualFold(v.Status, "ENABLED")
		if enabled && len(v.Triggers) == 0 {
			bad("voicemail.triggers", "voicemail is enabled: name reject, timeout or both")
		}
		switch {
		case v.TimeoutSeconds < 0 || v.TimeoutSeconds > maxVoicemailTimeout:
			bad("voicemail.timeout_seconds", "%d is not within 1-%d", v.TimeoutSeconds, maxVoicemailTimeout)
		case v.TimeoutSeconds > 0 && len(v.Triggers) > 0 && !trig["TIMEOUT"]:
			bad("voicemail.timeout_seconds", "set, but timeout is not among the triggers")
		}
		if enabled && cc.CallHours != nil && strings.EqualFold(cc.CallHours.Status, "ENABLED") {
			bad("voicemail.status", "voicemail and call_hours cannot both be enabled (Meta refuses it)")
		}
	}
	return p
}

// validateCallHours checks call_hours by Meta's rules: HHMM times, open
// before close, at most 2 ranges a day and none overlapping, at most 20
// holidays, a valid IANA timezone.
func validateCallHours(f string, h *CallHoursConfig) []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, f+"."+field+": "+fmt.Sprintf(format, a...)) }
	if h.Status == "" {
		bad("status", "missing (enabled or disabled)")
	} else if _, err := oneOf(h.Status, settingsStatuses); err != nil {
		bad("status", "%v", err)
	}
	if h.Timezone == "" && !strings.EqualFold(h.Status, "ENABLED") && len(h.Weekly) == 0 && len(h.Holidays) == 0 {
		return p // disabled, nothing else given
	}
	return append(p, h.HoursConfig.check(f)...)
}

// check applies Meta's rules for call hours (at most 2 ranges a day, no
// overlap, HHMM times with the end after the start, at most 20 holidays, an
// IANA timezone) to h, each problem naming its field under f.
func (h *HoursConfig) check(f string) []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, f+"."+field+": "+fmt.Sprintf(format, a...)) }
	switch {
	case h.Timezone == "":
		bad("timezone", "missing: an IANA timezone such as Europe/Paris")
	case !validTimezone(h.Timezone):
		bad("timezone", "%q is not an IANA timezone (e.g. Europe/Paris, America/Sao_Paulo)", h.Timezone)
	}
	type span struct {
		idx         int
		start, stop string
	}
	byDay := map[string][]span{}
	for j, w := range h.Weekly {
		wf := fmt.Sprintf("weekly[%d]", j)
		day, err := oneOf(w.Day, weekDays)
		if err != nil {
			bad(wf+".day", "%q is not monday, tuesday, wednesday, thursday, friday, saturday or sunday", w.Day)
		}
		okOpen, okClose := checkHHMM(&p, f+"."+wf+".open", w.Open), checkHHMM(&p, f+"."+wf+".close", w.Close)
		if !okOpen || !okClose || err != nil {
			continue
		}
		if !orderedTimes(&p, f+"."+wf+".close", w.Open, w.Close, "open") {
			continue
		}
		for _, o := range byDay[day] {
			if w.Open < o.stop && o.start < w.Close {
				bad(wf, "%s %s-%s overlaps weekly[%d] (%s-%s)", strings.ToLower(day), w.Open, w.Close, o.idx, o.start, o.stop)
			}
		}
		byDay[day] = append(byDay[day], span{j, w.Open, w.Close})
		if n := len(byDay[day]); n > maxRangesPerDay {
			bad(wf+".day", "range %d on %s: at most %d a day", n, strings.ToLower(day), maxRangesPerDay)
		}
	}
	if n := len(h.Holidays); n > maxHolidays {
		bad("holidays", "%d entries, at most %d", n, maxHolidays)
	}
	byDate := map[string][]span{}
	for j, d := range h.Holidays {
		hf := fmt.Sprintf("holidays[%d]", j)
		_, err := time.Parse(time.DateOnly, d.Date)
		if err != nil {
			bad(hf+".date", "%q is not a date YYYY-MM-DD", d.Date)
		}
		okStart, okEnd := checkHHMM(&p, f+"."+hf+".start", d.Start), checkHHMM(&p, f+"."+hf+".end", d.End)
		if !okStart || !okEnd || err != nil {
			continue
		}
		if !orderedTimes(&p, f+"."+hf+".end", d.Start, d.End, "start") {
			continue
		}
		for _, o := range byDate[d.Date] {
			if d.Start < o.stop && o.start < d.End {
				bad(hf, "%s %s-%s overlaps holidays[%d] (%s-%s)", d.Date, d.Start, d.End, o.idx, o.start, o.stop)
			}
		}
		byDate[d.Date] = append(byDate[d.Date], span{j, d.Start, d.End})
	}
	return p
}

func checkHHMM(p *[]string, field, v string) bool {
	if hhmmPattern.MatchString(v) {
		return true
	}
	if v == "" {
		*p = append(*p, field+": missing (HHMM, e.g. 0900)")
	} else {
		*p = append(*p, fmt.Sprintf("%s: %q is not a time HHMM within 0000-2359", field, v))
	}
	return false
}

// orderedTimes checks a range's end (field) comes after its start; HHMM
// strings compare as times.
func orderedTimes(p *[]string, field, start, end, startName string) bool {
	switch {
	case end < start:
		*p = append(*p, fmt.Sprintf("%s: %q is before %s %q", field, end, startName, start))
	case end == start:
		*p = append(*p, fmt.Sprintf("%s: %q is not after %s %q", field, end, startName, start))
	default:
		return true
	}
	return false
}

func validTimezone(tz string) bool {
	if tz == "" || strings.EqualFold(tz, "local") {
		return false
	}
	_, err := time.LoadLocation(tz)
	return err == nil
}

// CheckCalling checks what the settings of numbers[].calling need beyond
// Validate, before anything is sent to Meta: no holiday in the past (today
// in the call hours' timezone, from now), and each announcement file an OGG
// Opus file under 60 s. `wagateway settings diff|apply` and check-config
// run it; the daemon does not (a holiday that passes must not stop it).
func (c *Config) CheckCalling(now time.Time) error {
	var p []string
	for i, n := range c.Numbers {
		cc := n.Calling
		if cc == nil {
			continue
		}
		f := fmt.Sprintf("numbers[%d].calling", i)
		if h := cc.CallHours; h != nil {
			loc := time.UTC
			if l, err := time.LoadLocation(h.Timezone); err == nil && validTimezone(h.Timezone) {
				loc = l
			}
			today := now.In(loc).Format(time.DateOnly)
			for j, d := range h.Holidays {
				if _, err := time.Parse(time.DateOnly, d.Date); err == nil && d.Date < today {
					p = append(p, fmt.Sprintf("%s.call_hours.holidays[%d].date: %s is in the past (today is %s in %s); Meta refuses past holidays: remove it",
						f, j, d.Date, today, loc))
				}
			}
		}
		if v := cc.Voicemail; v != nil && v.AnnouncementFile != "" {
			if _, err := readAnnouncement(v.AnnouncementFile); err != nil {
				p = append(p, fmt.Sprintf("%s.voicemail.announcement_file: %v", f, err))
			}
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// callingSettings is what the file asks of Meta, in Meta's values: only
// the managed fields are set. The voicemail announcement's media id is
// not known here (apply uploads the file, or reuses the last upload).
func callingSettings(cc *CallingConfig) whatsapp.CallingSettings {
	up := strings.ToUpper
	s := whatsapp.CallingSettings{
		Status:                   up(cc.Status),
		CallIconVisibility:       up(cc.CallIconVisibility),
		CallbackPermissionStatus: up(cc.CallbackPermission),
		SRTPKeyExchangeProtocol:  up(cc.SRTPKeyExchange),
	}
	upAll := func(in []string) []string {
		out := make([]string, len(in))
		for i, v := range in {
			out[i] = up(v)
		}
		return out
	}
	if cc.CallIcons != nil {
		s.CallIcons = &whatsapp.CallIcons{RestrictToUserCountries: upAll(cc.CallIcons.RestrictToUserCountries)}
	}
	if cc.AdditionalCodecs != nil {
		s.Audio = &whatsapp.AudioSettings{AdditionalCodecs: upAll(cc.AdditionalCodecs)}
	}
	if h := cc.CallHours; h != nil {
		ch := &whatsapp.CallHours{Status: up(h.Status), TimezoneID: h.Timezone}
		for _, w := range h.Weekly {
			ch.WeeklyOperatingHours = append(ch.WeeklyOperatingHours, whatsapp.WeeklyHours{DayOfWeek: up(w.Day), OpenTime: w.Open, CloseTime: w.Close})
		}
		for _, d := range h.Holidays {
			ch.HolidaySchedule = append(ch.HolidaySchedule, whatsapp.Holiday{Date: d.Date, StartTime: d.Start, EndTime: d.End})
		}
		s.CallHours = ch
	}
	if v := cc.Voicemail; v != nil {
		vs := &whatsapp.VoicemailSettings{Status: up(v.Status), Triggers: upAll(v.Triggers)}
		if v.TimeoutSeconds > 0 {
			vs.Audio = &whatsapp.VoicemailAudio{Default: &whatsapp.VoicemailPrompt{TimeoutSeconds: v.TimeoutSeconds}}
		}
		s.Voicemail = vs
	}
	return s
}

// defaultCallingStatePath is calling_state_file when the config says
// nothing: beside the config file, gateway.yaml → gateway.calling-state.json.
func defaultCallingStatePath(configPath string) string {
	base := strings.TrimSuffix(configPath, filepath.Ext(configPath))
	return base + ".calling-state.json"
}

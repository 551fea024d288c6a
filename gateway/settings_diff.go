package gateway

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
)

// Comparing a number's calling settings in the config file with Meta's
// (GET /{PNID}/settings), field by field, only the fields the file manages.

// AnnouncementRecord is the last voicemail announcement `settings apply`
// uploaded for a number (kept in calling_state_file): Meta returns only the
// media id, so whether the file changed is known by its hash.
type AnnouncementRecord struct {
	File     string    `json:"file"`
	SHA256   string    `json:"sha256"`
	MediaID  string    `json:"media_id"`
	Uploaded time.Time `json:"uploaded"`
}

// AnnouncementCheck is a configured announcement file as it is now, and the
// last upload recorded for its number (nil: none).
type AnnouncementCheck struct {
	File   string
	SHA256 string
	Last   *AnnouncementRecord
}

// needsUpload: the file is not what Meta plays, as far as the record tells.
func (a *AnnouncementCheck) needsUpload(metaMediaID string) (bool, string) {
	switch {
	case a.Last == nil || a.Last.MediaID == "":
		return true, fmt.Sprintf("upload %s (no upload of it recorded; Meta has %s)", a.File, orNone(metaMediaID))
	case a.Last.SHA256 != a.SHA256:
		return true, fmt.Sprintf("upload %s (changed since the last apply)", a.File)
	case a.Last.MediaID != metaMediaID:
		return true, fmt.Sprintf("upload %s (Meta has media %s, the last apply set %s)", a.File, orNone(metaMediaID), a.Last.MediaID)
	}
	return false, ""
}

// DiffCallingSettings lists what apply would change on Meta's side to make
// have (Meta's settings; nil: none) what want (a number's calling: section)
// asks, one human-readable line per field, in a fixed order; none when they
// agree. Fields the file leaves out are not compared. call_hours is
// compared whole, as Meta replaces it whole: entries Meta has and the file
// does not are deletions. ann, when the file names an announcement, says
// whether it must be uploaded.
func DiffCallingSettings(want *CallingConfig, have *whatsapp.CallingSettings, ann *AnnouncementCheck) []string {
	lines, _ := diffCalling(callingSettings(want), have, ann)
	return lines
}

// diffCalling is DiffCallingSettings on the settings the file asks for;
// upload reports the announcement must be uploaded.
func diffCalling(want whatsapp.CallingSettings, have *whatsapp.CallingSettings, ann *AnnouncementCheck) (lines []string, upload bool) {
	if have == nil {
		have = &whatsapp.CallingSettings{}
	}
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }
	scalar := func(field, w, h string) {
		if w != "" && !strings.EqualFold(w, h) {
			add("%s: %s → %s", field, orUnset(h), w)
		}
	}
	set := func(field string, w, h []string) {
		ws, hs := sortedUpper(w), sortedUpper(h)
		if !slices.Equal(ws, hs) {
			add("%s: %s → %s", field, listOrNone(hs), listOrNone(ws))
		}
	}

	scalar("status", want.Status, have.Status)
	scalar("call_icon_visibility", want.CallIconVisibility, have.CallIconVisibility)
	if want.CallIcons != nil {
		var h []string
		if have.CallIcons != nil {
			h = have.CallIcons.RestrictToUserCountries
		}
		set("call_icons.restrict_to_user_countries", want.CallIcons.RestrictToUserCountries, h)
	}
	if w := want.CallHours; w != nil {
		h := have.CallHours
		if h == nil {
			h = &whatsapp.CallHours{}
		}
		scalar("call_hours.status", w.Status, h.Status)
		if w.TimezoneID != "" && w.TimezoneID != h.TimezoneID {
			add("call_hours.timezone_id: %s → %s", orUnset(h.TimezoneID), w.TimezoneID)
		}
		entries := func(field string, w, h []string) {
			del, ins := multisetDiff(h, w), multisetDiff(w, h)
			if len(del) > 0 {
				add("%s: delete %s (Meta replaces call_hours whole): %s", field, plural(len(del), "entry", "entries"), strings.Join(del, ", "))
			}
			if len(ins) > 0 {
				add("%s: add %s: %s", field, plural(len(ins), "entry", "entries"), strings.Join(ins, ", "))
			}
		}
		entries("call_hours.weekly_operating_hours", weeklyKeys(w.WeeklyOperatingHours), weeklyKeys(h.WeeklyOperatingHours))
		entries("call_hours.holiday_schedule", holidayKeys(w.HolidaySchedule), holidayKeys(h.HolidaySchedule))
	}
	scalar("callback_permission_status", want.CallbackPermissionStatus, have.CallbackPermissionStatus)
	scalar("srtp_key_exchange_protocol", want.SRTPKeyExchangeProtocol, have.SRTPKeyExchangeProtocol)
	if want.Audio != nil {
		var h []string
		if have.Audio != nil {
			h = have.Audio.AdditionalCodecs
		}
		set("audio.additional_codecs", want.Audio.AdditionalCodecs, h)
	}
	if w := want.Voicemail; w != nil {
		h := have.Voicemail
		if h == nil {
			h = &whatsapp.VoicemailSettings{}
		}
		hp := voicemailPrompt(h)
		scalar("voicemail.status", w.Status, h.Status)
		if len(w.Triggers) > 0 {
			set("voicemail.triggers", w.Triggers, h.Triggers)
		}
		if wp := voicemailPrompt(w); wp.TimeoutSeconds > 0 && wp.TimeoutSeconds != hp.TimeoutSeconds {
			add("voicemail.timeout_seconds: %s → %d", orUnset(itoaNonZero(hp.TimeoutSeconds)), wp.TimeoutSeconds)
		}
		if ann != nil {
			if up, why := ann.needsUpload(hp.AnnouncementMediaID); up {
				upload = true
				add("voicemail.announcement: %s", why)
			}
		}
	}
	return lines, upload
}

// voicemailPrompt is voicemail.audio.default, empty when absent.
func voicemailPrompt(v *whatsapp.VoicemailSettings) whatsapp.VoicemailPrompt {
	if v == nil || v.Audio == nil || v.Audio.Default == nil {
		return whatsapp.VoicemailPrompt{}
	}
	return *v.Audio.Default
}

func weeklyKeys(ws []whatsapp.WeeklyHours) []string {
	sorted := slices.Clone(ws)
	slices.SortStableFunc(sorted, func(a, b whatsapp.WeeklyHours) int {
		if d := dayIndex(a.DayOfWeek) - dayIndex(b.DayOfWeek); d != 0 {
			return d
		}
		return strings.Compare(a.OpenTime, b.OpenTime)
	})
	out := make([]string, len(sorted))
	for i, w := range sorted {
		out[i] = fmt.Sprintf("%s %s-%s", strings.ToUpper(w.DayOfWeek), w.OpenTime, w.CloseTime)
	}
	return out
}

func dayIndex(d string) int {
	if i := slices.Index(weekDays, strings.ToUpper(d)); i >= 0 {
		return i
	}
	return len(weekDays)
}

func holidayKeys(hs []whatsapp.Holiday) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = fmt.Sprintf("%s %s-%s", h.Date, h.StartTime, h.EndTime)
	}
	slices.Sort(out) // dates and HHMM sort as text
	return out
}

// multisetDiff is a less b, each element counted, in a's order.
func multisetDiff(a, b []string) []string {
	left := map[string]int{}
	for _, s := range b {
		left[s]++
	}
	var out []string
	for _, s := range a {
		if left[s] > 0 {
			left[s]--
			continue
		}
		out = append(out, s)
	}
	return out
}

func sortedUpper(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToUpper(s)
	}
	slices.Sort(out)
	return out
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func itoaNonZero(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// callingPlan is what apply does for one number.
type callingPlan struct {
	lines  []string
	upload bool                     // the announcement goes first (POST media)
	body   whatsapp.CallingSettings // POST settings; the announcement's media id is filled in after an upload
}

// planCalling compares a number's calling: section with Meta's settings and
// builds what apply sends: the managed fields; in voicemail, what the file
// leaves out (triggers, timeout, announcement) is carried over from Meta's,
// so the object is sent whole whatever Meta does with a partial one. ann is
// nil when the file names no announcement (or, at daemon start, it could
// not be read). The error is a *ConfigError when the settings would break
// one of Meta's rules once merged with Meta's (voicemail enabled by the
// file while Meta has call hours on, or the reverse).
func planCalling(f string, cc *CallingConfig, have *whatsapp.CallingSettings, ann *AnnouncementCheck) (*callingPlan, error) {
	if have == nil {
		have = &whatsapp.CallingSettings{}
	}
	want := callingSettings(cc)
	vmOn := statusAfter(want.Voicemail, have.Voicemail, func(v *whatsapp.VoicemailSettings) string { return v.Status })
	chOn := statusAfter(want.CallHours, have.CallHours, func(h *whatsapp.CallHours) string { return h.Status })
	if vmOn && chOn {
		field := f + ".voicemail.status"
		what := "call_hours are enabled at Meta and the file does not manage call_hours"
		if want.Voicemail == nil {
			field, what = f+".call_hours.status", "voicemail is enabled at Meta and the file does not manage voicemail"
		}
		return nil, &ConfigError{Problems: []string{field + ": enabled while " + what + "; Meta refuses both on: disable one in the file"}}
	}
	lines, upload := diffCalling(want, have, ann)
	p := &callingPlan{lines: lines, upload: upload, body: want}
	if w := want.Voicemail; w != nil {
		h := have.Voicemail
		if h == nil {
			h = &whatsapp.VoicemailSettings{}
		}
		hp, wp := voicemailPrompt(h), voicemailPrompt(w)
		if len(w.Triggers) == 0 {
			w.Triggers = slices.Clone(h.Triggers)
		}
		if wp.TimeoutSeconds == 0 {
			wp.TimeoutSeconds = hp.TimeoutSeconds
		}
		switch {
		case ann == nil:
			wp.AnnouncementMediaID = hp.AnnouncementMediaID
		case !upload:
			wp.AnnouncementMediaID = ann.Last.MediaID
		}
		if wp != (whatsapp.VoicemailPrompt{}) {
			w.Audio = &whatsapp.VoicemailAudio{Default: &wp}
		}
	}
	return p, nil
}

// statusAfter: the object's status is ENABLED once apply has sent want
// (nil: not managed, Meta's stays).
func statusAfter[T any](want, have *T, status func(*T) string) bool {
	switch {
	case want != nil && status(want) != "":
		return strings.EqualFold(status(want), "ENABLED")
	case have != nil:
		return strings.EqualFold(status(have), "ENABLED")
	}
	return false
}

// FormatCallingSettings renders Meta's settings of a number for people,
// one line per field; a SIP password shows as it is in s (Masked() first
// unless asked for).
func FormatCallingSettings(s whatsapp.CallingSettings) []string {
	var out []string
	line := func(k, format string, a ...any) {
		out = append(out, fmt.Sprintf("%-28s %s", k, fmt.Sprintf(format, a...)))
	}
	line("status", "%s", orUnset(s.Status))
	line("call_icon_visibility", "%s", orUnset(s.CallIconVisibility))
	if s.CallIcons != nil && len(s.CallIcons.RestrictToUserCountries) > 0 {
		line("call_icons", "restricted to users in %s", strings.Join(s.CallIcons.RestrictToUserCountries, ", "))
	} else {
		line("call_icons", "every country")
	}
	if h := s.CallHours; h != nil {
		line("call_hours", "%s, timezone %s", orUnset(h.Status), orUnset(h.TimezoneID))
		for _, k := range weeklyKeys(h.WeeklyOperatingHours) {
			out = append(out, "  weekly   "+k)
		}
		for _, k := range holidayKeys(h.HolidaySchedule) {
			out = append(out, "  holiday  "+k)
		}
	} else {
		line("call_hours", "(unset)")
	}
	line("callback_permission_status", "%s", orUnset(s.CallbackPermissionStatus))
	line("srtp_key_exchange_protocol", "%s", orUnset(s.SRTPKeyExchangeProtocol))
	var codecs []string
	if s.Audio != nil {
		codecs = s.Audio.AdditionalCodecs
	}
	line("audio.additional_codecs", "%s", listOrNone(codecs))
	if v := s.Voicemail; v != nil {
		p := voicemailPrompt(v)
		line("voicemail", "%s, triggers %s, timeout %s s, announcement media %s",
			orUnset(v.Status), listOrNone(v.Triggers), orUnset(itoaNonZero(p.TimeoutSeconds)), orNone(p.AnnouncementMediaID))
	} else {
		line("voicemail", "(unset)")
	}
	if sp := s.SIP; sp != nil {
		line("sip", "%s", orUnset(sp.Status))
		for _, sv := range sp.Servers {
			l := fmt.Sprintf("  server   %s:%d", sv.Hostname, sv.Port)
			if sv.AppID != "" {
				l += " app_id " + sv.AppID
			}
			if sv.SIPUserPassword != "" {
				l += " sip_user_password " + sv.SIPUserPassword
			}
			out = append(out, l)
		}
	}
	if r := s.Restrictions; r != nil && len(r.RestrictionsList) > 0 {
		for _, x := range r.RestrictionsList {
			l := x.Type
			if x.Reason != "" {
				l += " (" + x.Reason + ")"
			}
			if x.Expiration != "" {
				l += " until " + x.Expiration
			}
			line("restriction", "%s", l)
		}
	}
	return out
}

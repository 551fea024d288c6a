package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Call settings of a business phone number (R1 POST and R2 GET
// /{PNID}/settings, the "calling" object), as code.

// CallingSettings is the "calling" object of POST/GET /{PNID}/settings (R1, R2).
//
// Every field is optional on a write and left as Meta has it when omitted,
// except inside call_hours, which Meta replaces whole (an omitted
// holiday_schedule deletes the holidays). The two lists a business clears
// by sending them empty, call_icons.restrict_to_user_countries and
// audio.additional_codecs, tell nil (left out) from empty (sent as [],
// clearing Meta's list): see CallIcons and AudioSettings.
//
// Read from Meta (R2, or a W11 webhook), scalars given as numbers where
// strings are declared (and the reverse) are taken, and lists are bounded.
//
// SIPSettings may hold a password: log Masked(), never the settings
// themselves.
type CallingSettings struct {
	Status                   string             `json:"status,omitempty"`               // ENABLED | DISABLED
	CallIconVisibility       string             `json:"call_icon_visibility,omitempty"` // DEFAULT | DISABLE_ALL
	CallIcons                *CallIcons         `json:"call_icons,omitempty"`
	CallHours                *CallHours         `json:"call_hours,omitempty"`
	CallbackPermissionStatus string             `json:"callback_permission_status,omitempty"` // ENABLED | DISABLED
	SRTPKeyExchangeProtocol  string             `json:"srtp_key_exchange_protocol,omitempty"` // DTLS | SDES
	Audio                    *AudioSettings     `json:"audio,omitempty"`
	Voicemail                *VoicemailSettings `json:"voicemail,omitempty"`
	SIP                      *SIPSettings       `json:"sip,omitempty"`          // as Meta returns it; the gateway never sends it
	Restrictions             *Restrictions      `json:"restrictions,omitempty"` // R2 only
}

// CallIcons restricts the call button to users of some countries. A nil
// RestrictToUserCountries is left out of a write; an empty one is sent as
// [] and lifts Meta's restriction (the button shows in every country).
type CallIcons struct {
	RestrictToUserCountries []string `json:"restrict_to_user_countries"` // ISO 3166-1 alpha-2, e.g. "US"
}

// MarshalJSON writes restrict_to_user_countries unless it is nil: [] for
// an empty list, which Meta takes as "no restriction".
func (c CallIcons) MarshalJSON() ([]byte, error) {
	return marshalList("restrict_to_user_countries", c.RestrictToUserCountries)
}

// CallHours is the weekly schedule and the holidays; Meta replaces it whole
// on every write.
type CallHours struct {
	Status               string        `json:"status"` // ENABLED | DISABLED
	TimezoneID           string        `json:"timezone_id,omitempty"`
	WeeklyOperatingHours []WeeklyHours `json:"weekly_operating_hours,omitempty"`
	HolidaySchedule      []Holiday     `json:"holiday_schedule,omitempty"`
}

// WeeklyHours is one opening range of a day of the week (at most 2 a day).
type WeeklyHours struct {
	DayOfWeek string `json:"day_of_week"` // MONDAY … SUNDAY
	OpenTime  string `json:"open_time"`   // HHMM
	CloseTime string `json:"close_time"`  // HHMM
}

// Holiday overrides the weekly schedule on a date.
type Holiday struct {
	Date      string `json:"date"`       // YYYY-MM-DD
	StartTime string `json:"start_time"` // HHMM
	EndTime   string `json:"end_time"`   // HHMM
}

// AudioSettings adds codecs to Opus (always on). A nil AdditionalCodecs is
// left out of a write; an empty one is sent as [] and removes Meta's
// additional codecs (Opus only).
type AudioSettings struct {
	AdditionalCodecs []string `json:"additional_codecs"` // PCMA, PCMU
}

// MarshalJSON writes additional_codecs unless it is nil: [] for an empty
// list, which Meta takes as "Opus only".
func (a AudioSettings) MarshalJSON() ([]byte, error) {
	return marshalList("additional_codecs", a.AdditionalCodecs)
}

// marshalList is an object of one list field: {} when the list is nil
// (not given), {"key":[]} when it is empty (given, cleared).
func marshalList(key string, l []string) ([]byte, error) {
	if l == nil {
		return []byte("{}"), nil
	}
	return encodeJSON(map[string][]string{key: l})
}

// VoicemailSettings makes Meta answer missed or rejected calls and record
// a voicemail (delivered as W9).
type VoicemailSettings struct {
	Status   string          `json:"status,omitempty"`   // ENABLED | DISABLED
	Triggers []string        `json:"triggers,omitempty"` // REJECT, TIMEOUT
	Audio    *VoicemailAudio `json:"audio,omitempty"`
}

// VoicemailAudio holds the announcement played to every user.
type VoicemailAudio struct {
	Default *VoicemailPrompt `json:"default,omitempty"`
}

// VoicemailPrompt is the announcement (uploaded with
// UploadVoicemailAnnouncement) and, for the TIMEOUT trigger, the seconds
// of ringing before it (1..30 here: 0 cannot be sent, and Meta disables
// TIMEOUT without it).
type VoicemailPrompt struct {
	AnnouncementMediaID string `json:"announcement_media_id,omitempty"`
	TimeoutSeconds      int    `json:"timeout_seconds,omitempty"`
}

// SIPSettings is Meta's SIP mode as R2 returns it.
type SIPSettings struct {
	Status  string      `json:"status,omitempty"`
	Servers []SIPServer `json:"servers,omitempty"`
}

// SIPServer is one SIP server of SIPSettings. Its String and GoString
// mask the password.
type SIPServer struct {
	Hostname             string            `json:"hostname,omitempty"`
	Port                 int               `json:"port,omitempty"`
	RequestURIUserParams map[string]string `json:"request_uri_user_params,omitempty"`
	AppID                string            `json:"app_id,omitempty"`
	SIPUserPassword      string            `json:"sip_user_password,omitempty"` // only with include_sip_credentials; a secret
}

// Restrictions lists the calling restrictions Meta imposes (R2 only).
type Restrictions struct {
	RestrictionsList []Restriction `json:"restrictions_list,omitempty"`
}

// Restriction is one calling restriction: its type
// (RESTRICTED_BUSINESS_INITIATED_CALLING, …), Meta's reason and its
// expiration as Meta gives it (Unix seconds).
type Restriction struct {
	Type       string `json:"type,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Expiration string `json:"expiration,omitempty"`
}

// Masked marks where a password was.
const maskedSecret = "•••"

// Masked returns a deep copy of s whose SIP passwords are replaced by
// "•••": what may be logged or shown.
func (s CallingSettings) Masked() CallingSettings {
	out := s.clone()
	if out.SIP != nil {
		for i := range out.SIP.Servers {
			if out.SIP.Servers[i].SIPUserPassword != "" {
				out.SIP.Servers[i].SIPUserPassword = maskedSecret
			}
		}
	}
	return out
}

// String renders the server without its password.
func (s SIPServer) String() string {
	if s.SIPUserPassword != "" {
		s.SIPUserPassword = maskedSecret
	}
	type plain SIPServer // no String method: no recursion
	return fmt.Sprintf("%+v", plain(s))
}

// GoString is String for %#v.
func (s SIPServer) GoString() string { return "whatsapp.SIPServer" + s.String() }

// clone copies s and everything it points to.
func (s CallingSettings) clone() CallingSettings {
	out := s
	if s.CallIcons != nil {
		ci := CallIcons{RestrictToUserCountries: slices.Clone(s.CallIcons.RestrictToUserCountries)}
		out.CallIcons = &ci
	}
	if s.CallHours != nil {
		ch := *s.CallHours
		ch.WeeklyOperatingHours = slices.Clone(ch.WeeklyOperatingHours)
		ch.HolidaySchedule = slices.Clone(ch.HolidaySchedule)
		out.CallHours = &ch
	}
	if s.Audio != nil {
		a := AudioSettings{AdditionalCodecs: slices.Clone(s.Audio.AdditionalCodecs)}
		out.Audio = &a
	}
	if s.Voicemail != nil {
		vm := *s.Voicemail
		vm.Triggers = slices.Clone(vm.Triggers)
		if vm.Audio != nil {
			va := *vm.Audio
			if va.Default != nil {
				p := *va.Default
				va.Default = &p
			}
			vm.Audio = &va
		}
		out.Voicemail = &vm
	}
	if s.SIP != nil {
		sip := *s.SIP
		sip.Servers = slices.Clone(sip.Servers)
		for i := range sip.Servers {
			sip.Servers[i].RequestURIUserParams = maps.Clone(sip.Servers[i].RequestURIUserParams)
		}
		out.SIP = &sip
	}
	if s.Restrictions != nil {
		r := Restrictions{RestrictionsList: slices.Clone(s.Restrictions.RestrictionsList)}
		out.Restrictions = &r
	}
	return out
}

// Bounds on what is read from Meta (R2, W11). Meta documents at most 2
// ranges a day (14 a week) and 20 holidays, one SIP server per number;
// the bounds leave room and keep a hostile or broken answer small.
const (
	maxSettingsCountries    = 300
	maxSettingsWeekly       = 64
	maxSettingsHolidays     = 64
	maxSettingsList         = 16 // codecs, triggers
	maxSettingsSIPServers   = 8
	maxSettingsSIPParams    = 32
	maxSettingsRestrictions = 64
	maxSettingsString       = 1024 // a reason, a hostname, a parameter
)

// UnmarshalJSON reads the calling object and bounds its lists.
func (s *CallingSettings) UnmarshalJSON(b []byte) error {
	type plain CallingSettings
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = CallingSettings(p)
	s.bound()
	return nil
}

func (s *CallingSettings) bound() {
	if s.CallIcons != nil {
		s.CallIcons.RestrictToUserCountries = capList(s.CallIcons.RestrictToUserCountries, maxSettingsCountries)
	}
	if s.CallHours != nil {
		s.CallHours.WeeklyOperatingHours = capList(s.CallHours.WeeklyOperatingHours, maxSettingsWeekly)
		s.CallHours.HolidaySchedule = capList(s.CallHours.HolidaySchedule, maxSettingsHolidays)
	}
	if s.Audio != nil {
		s.Audio.AdditionalCodecs = capList(s.Audio.AdditionalCodecs, maxSettingsList)
	}
	if s.Voicemail != nil {
		s.Voicemail.Triggers = capList(s.Voicemail.Triggers, maxSettingsList)
	}
	if s.SIP != nil {
		s.SIP.Servers = capList(s.SIP.Servers, maxSettingsSIPServers)
	}
	if s.Restrictions != nil {
		s.Restrictions.RestrictionsList = capList(s.Restrictions.RestrictionsList, maxSettingsRestrictions)
	}
}

func capList[T any](l []T, n int) []T {
	if len(l) > n {
		return l[:n:n]
	}
	return l
}

// UnmarshalJSON takes the times as "HHMM" strings or as numbers (the
// reference calls them integers: 400 is "0400").
func (w *WeeklyHours) UnmarshalJSON(b []byte) error {
	var v struct {
		DayOfWeek string     `json:"day_of_week"`
		OpenTime  flexScalar `json:"open_time"`
		CloseTime flexScalar `json:"close_time"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*w = WeeklyHours{DayOfWeek: v.DayOfWeek, OpenTime: hhmm(v.OpenTime), CloseTime: hhmm(v.CloseTime)}
	return nil
}

// UnmarshalJSON takes the times as "HHMM" strings or as numbers.
func (h *Holiday) UnmarshalJSON(b []byte) error {
	var v struct {
		Date      string     `json:"date"`
		StartTime flexScalar `json:"start_time"`
		EndTime   flexScalar `json:"end_time"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*h = Holiday{Date: v.Date, StartTime: hhmm(v.StartTime), EndTime: hhmm(v.EndTime)}
	return nil
}

// hhmm pads a time given as a number ("400") to four digits.
func hhmm(f flexScalar) string {
	s := string(f)
	if s == "" || len(s) >= 4 || strings.Trim(s, "0123456789") != "" {
		return s
	}
	return strings.Repeat("0", 4-len(s)) + s
}

// UnmarshalJSON takes the media id as a string or a number (Meta's
// examples send a number) and the timeout as a number or a string.
func (p *VoicemailPrompt) UnmarshalJSON(b []byte) error {
	var v struct {
		AnnouncementMediaID flexScalar `json:"announcement_media_id"`
		TimeoutSeconds      flexScalar `json:"timeout_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = VoicemailPrompt{AnnouncementMediaID: string(v.AnnouncementMediaID), TimeoutSeconds: flexInt(v.TimeoutSeconds)}
	return nil
}

// UnmarshalJSON takes the port and the app id as numbers or strings, and
// the request URI parameters' values as strings or numbers (others are
// left out); the parameters are bounded.
func (s *SIPServer) UnmarshalJSON(b []byte) error {
	var v struct {
		Hostname             string                     `json:"hostname"`
		Port                 flexScalar                 `json:"port"`
		RequestURIUserParams map[string]json.RawMessage `json:"request_uri_user_params"`
		AppID                flexScalar                 `json:"app_id"`
		SIPUserPassword      string                     `json:"sip_user_password"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = SIPServer{Hostname: v.Hostname, Port: flexInt(v.Port), AppID: string(v.AppID), SIPUserPassword: v.SIPUserPassword}
	keys := slices.Sorted(maps.Keys(v.RequestURIUserParams))
	for _, k := range capList(keys, maxSettingsSIPParams) {
		var val flexScalar
		if json.Unmarshal(v.RequestURIUserParams[k], &val) != nil {
			continue
		}
		if s.RequestURIUserParams == nil {
			s.RequestURIUserParams = make(map[string]string)
		}
		s.RequestURIUserParams[k] = string(val)
	}
	return nil
}

// UnmarshalJSON takes the expiration as a number (the reference's
// integer) or a string, and bounds the reason.
func (r *Restriction) UnmarshalJSON(b []byte) error {
	var v struct {
		Type       string     `json:"type"`
		Reason     string     `json:"reason"`
		Expiration flexScalar `json:"expiration"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Restriction{Type: v.Type, Reason: cutString(v.Reason, maxSettingsString), Expiration: string(v.Expiration)}
	return nil
}

// flexInt reads a whole number, 0 if absent, unreadable or beyond ±2^31.
func flexInt(f flexScalar) int {
	v, ok := f.float()
	if !ok || v != v || v > 1<<31 || v < -(1<<31) {
		return 0
	}
	return int(v)
}

// cutString bounds s to n bytes, on a rune boundary.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// ExpirationTime reads Expiration (Unix seconds); zero if none.
func (r Restriction) ExpirationTime() time.Time { return flexScalar(r.Expiration).unix() }

var (
	weekDays = []string{"MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"}
	onOff    = []string{"ENABLED", "DISABLED"}
)

// Meta's documented limits of R1.
const (
	maxRangesPerDay         = 2
	maxHolidays             = 20
	maxVoicemailTimeout     = 30
	maxSettingsValidateErrs = 10
)

// Validate checks what UpdateCallingSettings would send against Meta's
// documented rules (values of the enumerations, "HHMM" times with open
// before close, at most 2 ranges a day without overlap, at most 20
// holidays on valid dates, ISO 3166-1 alpha-2 countries, the voicemail's
// triggers, announcement and 1..30 s timeout), so that a mistake is found
// before Meta refuses it. SIP and Restrictions are not checked: they are
// never sent. It returns the problems joined (at most 10).
func (s CallingSettings) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		if len(errs) < maxSettingsValidateErrs {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	oneOf := func(field, v string, allowed ...string) {
		if v != "" && !slices.Contains(allowed, v) {
			bad("%s is %q, not one of %s", field, v, strings.Join(allowed, ", "))
		}
	}
	oneOf("status", s.Status, onOff...)
	oneOf("call_icon_visibility", s.CallIconVisibility, "DEFAULT", "DISABLE_ALL")
	oneOf("callback_permission_status", s.CallbackPermissionStatus, onOff...)
	oneOf("srtp_key_exchange_protocol", s.SRTPKeyExchangeProtocol, "DTLS", "SDES")
	if s.CallIcons != nil {
		for _, c := range s.CallIcons.RestrictToUserCountries {
			if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
				bad("call_icons.restrict_to_user_countries: %q is not an ISO 3166-1 alpha-2 code (e.g. US)", c)
			}
		}
	}
	if s.CallHours != nil {
		s.CallHours.validate(bad)
	}
	if s.Audio != nil {
		checkList("audio.additional_codecs", s.Audio.AdditionalCodecs, bad, "PCMA", "PCMU")
	}
	if vm := s.Voicemail; vm != nil {
		oneOf("voicemail.status", vm.Status, onOff...)
		checkList("voicemail.triggers", vm.Triggers, bad, "REJECT", "TIMEOUT")
		var prompt VoicemailPrompt
		if vm.Audio != nil && vm.Audio.Default != nil {
			prompt = *vm.Audio.Default
		}
		if vm.Status == "ENABLED" {
			if len(vm.Triggers) == 0 {
				bad("voicemail is ENABLED without triggers (REJECT, TIMEOUT)")
			}
			if strings.TrimSpace(prompt.AnnouncementMediaID) == "" {
				bad("voicemail is ENABLED without audio.default.announcement_media_id (UploadVoicemailAnnouncement)")
			}
		}
		switch t := prompt.TimeoutSeconds; {
		case t < 0 || t > maxVoicemailTimeout:
			bad("voicemail.audio.default.timeout_seconds is %d, not within 1..%d", t, maxVoicemailTimeout)
		case t == 0 && slices.Contains(vm.Triggers, "TIMEOUT"):
			bad("voicemail trigger TIMEOUT needs audio.default.timeout_seconds (1..%d): Meta disables it without", maxVoicemailTimeout)
		}
	}
	return errors.Join(errs...)
}

// checkList refuses values outside allowed and repeats.
func checkList(field string, l []string, bad func(string, ...any), allowed ...string) {
	seen := map[string]bool{}
	for _, v := range l {
		switch {
		case !slices.Contains(allowed, v):
			bad("%s: %q is not one of %s", field, v, strings.Join(allowed, ", "))
		case seen[v]:
			bad("%s: %q given twice", field, v)
		}
		seen[v] = true
	}
}

func (h *CallHours) validate(bad func(string, ...any)) {
	switch h.Status {
	case "ENABLED":
		if strings.TrimSpace(h.TimezoneID) == "" {
			bad("call_hours is ENABLED without timezone_id")
		}
		if len(h.WeeklyOperatingHours) == 0 {
			bad("call_hours is ENABLED without weekly_operating_hours")
		}
	case "DISABLED":
	default:
		bad("call_hours.status is %q, not ENABLED or DISABLED (required)", h.Status)
	}
	type span struct{ from, to int }
	days := map[string][]span{}
	for _, w := range h.WeeklyOperatingHours {
		where := "call_hours.weekly_operating_hours " + w.DayOfWeek
		if !slices.Contains(weekDays, w.DayOfWeek) {
			bad("call_hours.weekly_operating_hours: day_of_week %q is not one of %s", w.DayOfWeek, strings.Join(weekDays, ", "))
			continue
		}
		if sp, ok := timeRange(where, w.OpenTime, w.CloseTime, bad); ok {
			days[w.DayOfWeek] = append(days[w.DayOfWeek], span{sp[0], sp[1]})
		}
	}
	if len(h.HolidaySchedule) > maxHolidays {
		bad("call_hours.holiday_schedule has %d entries, more than %d", len(h.HolidaySchedule), maxHolidays)
	}
	for _, d := range h.HolidaySchedule {
		where := "call_hours.holiday_schedule " + d.Date
		if _, err := time.Parse(time.DateOnly, d.Date); err != nil || len(d.Date) != len(time.DateOnly) {
			bad("call_hours.holiday_schedule: date %q is not YYYY-MM-DD", d.Date)
			continue
		}
		if sp, ok := timeRange(where, d.StartTime, d.EndTime, bad); ok {
			days["date "+d.Date] = append(days["date "+d.Date], span{sp[0], sp[1]})
		}
	}
	for _, day := range slices.Sorted(maps.Keys(days)) {
		spans := days[day]
		if len(spans) > maxRangesPerDay {
			bad("call_hours: %s has %d ranges, more than %d", strings.ToLower(day), len(spans), maxRangesPerDay)
		}
		slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
		for i := 1; i < len(spans); i++ {
			if spans[i].from < spans[i-1].to {
				bad("call_hours: %s has overlapping ranges", strings.ToLower(day))
				break
			}
		}
	}
}

// timeRange checks two "HHMM" times, from before to, and returns them as
// minutes of the day.
func timeRange(where, from, to string, bad func(string, ...any)) ([2]int, bool) {
	f, okF := parseHHMM(from)
	t, okT := parseHHMM(to)
	switch {
	case !okF || !okT:
		bad("%s: times %q-%q are not HHMM (0000..2359)", where, from, to)
		return [2]int{}, false
	case f >= t:
		bad("%s: %s is not before %s", where, from, to)
		return [2]int{}, false
	}
	return [2]int{f, t}, true
}

func parseHHMM(s string) (int, bool) {
	if len(s) != 4 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	h, _ := strconv.Atoi(s[:2])
	m, _ := strconv.Atoi(s[2:])
	if h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

// settingsBody is R1's JSON.
type settingsBody struct {
	Calling CallingSettings `json:"calling"`
}

// GetCallingSettings is R2 (GET /{PNID}/settings): the number's calling
// settings and restrictions. With includeSIPCredentials it asks for
// include_sip_credentials=true, and the answer's SIP servers carry their
// password: log Masked().
//
// Being a read, a failed attempt is repeated as for the call actions, and
// a throttled one too. An answer without a "calling" object wraps
// ErrUnexpectedResponse.
func (c *GraphClient) GetCallingSettings(ctx context.Context, phoneNumberID string, includeSIPCredentials bool) (*CallingSettings, error) {
	wrap := func(err error) error { return fmt.Errorf("whatsapp calling settings of %s: %w", phoneNumberID, err) }
	if err := c.checkCommon(phoneNumberID); err != nil {
		return nil, wrap(err)
	}
	var q url.Values
	if includeSIPCredentials {
		q = url.Values{"include_sip_credentials": {"true"}}
	}
	var out *CallingSettings
	gr := &graphRequest{
		action: "settings_get", method: http.MethodGet, phoneNumberID: phoneNumberID, edge: "settings",
		query: q, replayable: true, throttleRetry: true,
		decode: func(body []byte) error {
			var resp struct {
				Calling json.RawMessage `json:"calling"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return errors.New("not JSON")
			}
			if isJSONNull(resp.Calling) {
				return errors.New("no calling object")
			}
			var s CallingSettings
			if err := json.Unmarshal(resp.Calling, &s); err != nil {
				return errors.New("calling object of an unexpected shape") // err could quote a secret
			}
			out = &s
			return nil
		},
	}
	if err := c.do(ctx, gr, c.log.With(zap.String("action", gr.action), zap.String("phone_number_id", phoneNumberID))); err != nil {
		return nil, wrap(err)
	}
	return out, nil
}

// UpdateCallingSettings is R1 (POST /{PNID}/settings, body {"calling":
// {…}}): it sets the given fields and leaves the omitted ones as Meta has
// them (call_hours is replaced whole). SIP and Restrictions are never
// sent, whatever s holds. s must pass Validate, and set something.
//
// A write of the same fields twice leaves the same settings, so failed
// attempts (network errors, 5xx) are repeated as for the call actions, and
// throttled ones too. Meta answers {"success":true}; error 138015 says the
// number's messaging limit is too low for calling.
func (c *GraphClient) UpdateCallingSettings(ctx context.Context, phoneNumberID string, s CallingSettings) error {
	wrap := func(err error) error {
		return fmt.Errorf("whatsapp calling settings update of %s: %w", phoneNumberID, err)
	}
	s.SIP, s.Restrictions = nil, nil // s is a copy: the caller's keeps them
	if err := s.Validate(); err != nil {
		return wrap(err)
	}
	if err := c.checkCommon(phoneNumberID); err != nil {
		return wrap(err)
	}
	payload, err := encodeJSON(settingsBody{Calling: s})
	if err != nil {
		return wrap(err)
	}
	if bytes.Equal(payload, []byte(`{"calling":{}}`)) {
		return wrap(errors.New("no calling setting given"))
	}
	gr := &graphRequest{
		action: "settings_update", method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "settings",
		payload: payload, replayable: true, throttleRetry: true, decode: decodeSuccess,
	}
	if err := c.do(ctx, gr, c.log.With(zap.String("action", gr.action), zap.String("phone_number_id", phoneNumberID))); err != nil {
		return wrap(err)
	}
	return nil
}

package wasim

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // timezone_id is checked against the IANA database wherever the simulator runs

	"go.uber.org/zap"
)

// Calling settings, Meta's side (Meta, "Configure Call Settings", the
// settings reference, the media upload reference): POST
// /{PHONE_NUMBER_ID}/settings with {"calling":{…}} (R1), GET
// /{PHONE_NUMBER_ID}/settings[?include_sip_credentials=true] (R2), and the
// voicemail announcement upload POST /{PHONE_NUMBER_ID}/media (R3,
// graphmedia.go). State is kept per business number (SetNumber adds
// numbers beside Config.PhoneNumberID).
//
// Where Meta's documents are silent the simulator infers, and says so:
//   - the top level of "calling" is a partial update (a field not given is
//     left as it was); every object under it (call_icons, call_hours, sip,
//     audio, voicemail) is replaced whole, as Meta documents for call_hours
//     ("omitting holiday_schedule deletes it");
//   - a number starts with calling DISABLED, call_icon_visibility DEFAULT,
//     callback_permission_status DISABLED, srtp_key_exchange_protocol DTLS
//     and sip DISABLED ("Calling is not enabled by default");
//   - a key the reference does not list under calling (or under one of its
//     objects) is refused with code 100, as are values of the wrong JSON
//     type; messaging_product may be left out (Meta's own sample omits it)
//     and other top-level settings (storage_configuration, …) are ignored;
//   - every refusal is code 100, HTTP 400, with Meta's listed messages where
//     it lists one ("Invalid status", "Timezone is invalid in call_hours",
//     …) and error_data.details naming the field, except the messaging limit
//     below 2,000 when enabling calling: code 138015, subcode 2593145
//     ("Calling APIs cannot be enabled"; the subcode from a partner's
//     error log, not Meta's reference);
//   - holiday dates are "in the past" before today in call_hours.timezone_id
//     (UTC without one), by the simulator's clock; the ≤2 entries, open
//     before close and no-overlap rules of weekly_operating_hours apply to
//     holiday_schedule per date too (Meta's text repeats them there); times
//     are "HHMM" strings 0000–2359 and ranges that touch do not overlap;
//   - voicemail: status is required; when ENABLED, triggers (REJECT, TIMEOUT,
//     at least one, no repeats) and audio.default.announcement_media_id (a
//     media id this number uploaded with use_case=call_voicemail_announcement)
//     are required; timeout_seconds is an integer from 0 to 30 inclusive
//     (Meta's bounds) and may be left out ("the TIMEOUT trigger is
//     disabled"); voicemail and call_hours may not both be ENABLED (Meta:
//     "When voicemail is enabled, turn off call hours");
//   - sip: status is required, at most one server ("one server per app"),
//     ENABLED needs one; a hostname is a DNS name or IP without scheme or
//     port; port is 1–65535 and may be left out;
//   - GET shows calling.sip.servers[] with app_id (Config.AppID) and, only
//     with include_sip_credentials=true, sip_user_password; "restrictions"
//     is present only while a restriction is active (SendAccountUpdate).

// NumberConfig is a business number's account state that the settings
// endpoints depend on.
type NumberConfig struct {
	// DisplayPhoneNumber is the number as Meta shows it (account_update's
	// phone_number, messages webhooks' metadata). Default: the Config's for
	// Config.PhoneNumberID, the phone number id otherwise.
	DisplayPhoneNumber string
	// MessagingLimit is the number's messaging limit (business-initiated
	// conversations in 24 h). Below 2,000 enabling calling fails with
	// 138015. Default 100,000.
	MessagingLimit int
	// SIPPassword is what GET settings?include_sip_credentials=true shows
	// as sip_user_password. Default: a random one.
	SIPPassword string
}

const (
	defaultMessagingLimit = 100_000
	minCallingLimit       = 2000 // "a messaging limit of 2000 or above"
	maxHolidays           = 20
	maxRangesPerDay       = 2
	maxVoicemailTimeout   = 30 // "Must be between 0 and 30 seconds inclusive"
	restrictionPause      = 7 * 24 * time.Hour
)

// numberState is one business number: its account state, settings and
// restrictions.
type numberState struct {
	id           string
	cfg          NumberConfig
	calling      map[string]any // as the business set it, JSON-decoded
	restrictions []restriction
}

type restriction struct {
	typ, reason string
	expiration  time.Time // zero: until lifted
}

func newNumberState(id string, nc NumberConfig) *numberState {
	ns := &numberState{id: id, calling: map[string]any{
		"status":                     "DISABLED",
		"call_icon_visibility":       "DEFAULT",
		"callback_permission_status": "DISABLED",
		"srtp_key_exchange_protocol": "DTLS",
		"sip":                        map[string]any{"status": "DISABLED"},
	}}
	ns.configure(nc)
	return ns
}

func (ns *numberState) configure(nc NumberConfig) {
	if nc.DisplayPhoneNumber == "" {
		nc.DisplayPhoneNumber = ns.cfg.DisplayPhoneNumber
	}
	if nc.DisplayPhoneNumber == "" {
		nc.DisplayPhoneNumber = ns.id
	}
	if nc.MessagingLimit <= 0 {
		nc.MessagingLimit = defaultMessagingLimit
	}
	if nc.SIPPassword == "" {
		nc.SIPPassword = ns.cfg.SIPPassword
	}
	if nc.SIPPassword == "" {
		nc.SIPPassword = "wasim-" + randomID(12)
	}
	ns.cfg = nc
}

// SetNumber adds a business number the settings and media endpoints serve,
// or changes one's account state (its settings stay). Zero fields take
// their defaults (an existing number keeps its display number and
// password).
func (s *Sim) SetNumber(pnid string, nc NumberConfig) error {
	if pnid == "" || strings.ContainsAny(pnid, "/?# ") {
		return fmt.Errorf("wasim: phone number id %q is empty or not a path segment", pnid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.numbers[pnid]; ns != nil {
		ns.configure(nc)
		return nil
	}
	s.numbers[pnid] = newNumberState(pnid, nc)
	return nil
}

// Settings returns a copy of the calling settings stored for pnid, as the
// business set them (JSON-decoded: numbers are float64), without what GET
// adds (app_id, sip_user_password, restrictions); nil for an unknown number.
func (s *Sim) Settings(pnid string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.numbers[pnid]
	if ns == nil {
		return nil
	}
	return deepCopy(ns.calling)
}

// SettingsRequest is one request the settings endpoints (R1, R2) or the
// media upload (R3) took, as the business sent it and as the simulator
// answered: what a test checks was sent, or that nothing was.
type SettingsRequest struct {
	Method        string // GET or POST
	Endpoint      string // "settings" or "media"
	PhoneNumberID string // the path's
	Query         string // the raw query, e.g. "include_sip_credentials=true"
	Status        int    // the HTTP status answered (200: taken)
	// Body is a settings POST's body as sent.
	Body []byte
	// A media upload's form fields (messaging_product, type, use_case), its
	// file's name and size, and the media id answered ("" when refused).
	Fields   map[string]string
	Filename string
	Size     int
	MediaID  string
}

// SettingsRequests returns the requests the settings and media upload
// endpoints took, in order, refused ones included (kept for the
// simulator's life: the endpoints are for configuration, not traffic).
func (s *Sim) SettingsRequests() []SettingsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SettingsRequest, len(s.settingsRq))
	for i, r := range s.settingsRq {
		r.Body = slices.Clone(r.Body)
		r.Fields = maps.Clone(r.Fields)
		out[i] = r
	}
	return out
}

// SetClock replaces the simulator's clock: call permissions and limits,
// holiday dates (not in the past), restriction expiry and media URL expiry
// follow it. nil restores time.Now.
func (s *Sim) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.setClock(now)
}

func (s *Sim) knownNumber(pnid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.numbers[pnid] != nil
}

// deepCopy copies a JSON-decoded value.
func deepCopy[T any](v T) T {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only JSON-decoded values are copied
	}
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// settingsRequest is the body of POST /{PNID}/settings.
type settingsRequest struct {
	MessagingProduct *string         `json:"messaging_product"`
	Calling          json.RawMessage `json:"calling"`
}

// invalid is Graph's "invalid parameter" refusal: code 100, HTTP 400,
// title in the message and the field named in error_data.details.
func invalid(title, format string, args ...any) *graphError {
	return &graphError{status: http.StatusBadRequest, code: 100, message: "(#100) " + title, details: fmt.Sprintf(format, args...)}
}

const titleInvalidParam = "Invalid parameter"

// Meta's listed settings errors ("Configure Call Settings", error response).
const (
	titleInvalidStatus   = "Invalid status"
	titleInvalidSchedule = "Invalid schedule for call_hours"
	titlePastHoliday     = "Holiday given in call_hours is a past date"
	titleBadTimezone     = "Timezone is invalid in call_hours"
	titleEmptyWeekly     = "weekly_operating_hours in call_hours cannot be empty"
	titleBadDate         = "Date format in holiday_schedule for call_hours is invalid"
	titleTooManyRanges   = "More than 2 entries not allowed in weekly_operating_hours schedule in call_hours"
	titleOverlap         = "Overlapping schedule in call_hours is not allowed"
)

func errMessagingLimit(limit int) *graphError {
	return &graphError{status: http.StatusBadRequest, code: 138015, subcode: 2593145,
		message: "(#138015) Calling APIs cannot be enabled",
		details: fmt.Sprintf("the business's messaging limit is %d; calling needs a messaging limit of %d or above", limit, minCallingLimit)}
}

// jsonText shows a JSON value in a message.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// servePostSettings is R1: the calling object is checked as Meta checks it,
// merged at its top level into the number's settings and answered
// {"success":true}.
func (s *Sim) servePostSettings(g *graphRequest, pnid string) {
	var req settingsRequest
	if err := json.Unmarshal(g.body, &req); err != nil {
		g.fail(badRequest("Invalid JSON body: %v", err), fmt.Sprintf("graph: settings body is not JSON: %v", err))
		return
	}
	if req.MessagingProduct != nil && *req.MessagingProduct != "whatsapp" {
		g.fail(badRequest("The parameter messaging_product must be \"whatsapp\""), fmt.Sprintf("graph: settings messaging_product %q, want \"whatsapp\"", *req.MessagingProduct))
		return
	}
	var calling map[string]any
	if len(req.Calling) == 0 || string(req.Calling) == "null" {
		g.fail(invalid(titleInvalidParam, "The parameter calling is required"), "graph: settings update without a calling object")
		return
	}
	if err := json.Unmarshal(req.Calling, &calling); err != nil {
		g.fail(invalid(titleInvalidParam, "calling must be a JSON object: %v", err), fmt.Sprintf("graph: settings calling is not an object: %v", err))
		return
	}

	s.mu.Lock()
	ns := s.numbers[pnid]
	now := s.clock()
	e := s.checkCallingLocked(ns, calling, now)
	if e != nil {
		s.mu.Unlock()
		g.fail(e, "graph: settings refused: "+e.details)
		return
	}
	old := ns.calling
	merged := maps.Clone(old)
	maps.Copy(merged, deepCopy(calling))
	ns.calling = merged
	notify := s.cfg.SettingsWebhooks && observedChange(old, merged) && !s.closing
	var shown map[string]any
	if notify {
		shown = s.shownSettingsLocked(ns, now, false)
		s.wg.Add(1)
	}
	s.mu.Unlock()
	s.log.Info("calling settings updated", zap.String("phone_number_id", pnid), zap.String("calling", jsonText(calling)))
	if notify {
		go func() {
			defer s.wg.Done()
			if err := s.postSettingsUpdate(pnid, shown); err != nil {
				s.log.Warn("account_settings_update webhook not delivered", zap.String("phone_number_id", pnid), zap.Error(err))
			}
		}()
	}
	w := g.w
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"success":true}` + "\n"))
}

// observedChange says whether an update changed what Meta's
// account_settings_update webhook observes.
func observedChange(old, cur map[string]any) bool {
	for _, k := range []string{"status", "call_icon_visibility", "callback_permission_status", "srtp_key_exchange_protocol"} {
		if jsonText(old[k]) != jsonText(cur[k]) {
			return true
		}
	}
	sipStatus := func(m map[string]any) any {
		sip, _ := m["sip"].(map[string]any)
		return sip["status"]
	}
	return jsonText(sipStatus(old)) != jsonText(sipStatus(cur))
}

// serveGetSettings is R2.
func (s *Sim) serveGetSettings(g *graphRequest, pnid string) {
	creds, _ := strconv.ParseBool(g.r.URL.Query().Get("include_sip_credentials"))
	s.mu.Lock()
	calling := s.shownSettingsLocked(s.numbers[pnid], s.clock(), creds)
	s.mu.Unlock()
	writeJSON(g.w, map[string]any{"calling": calling})
}

// shownSettingsLocked is the calling object GET answers: the stored one,
// sip servers with app_id (and the password when asked), and the active
// restrictions.
func (s *Sim) shownSettingsLocked(ns *numberState, now time.Time, creds bool) map[string]any {
	c := deepCopy(ns.calling)
	if sip, ok := c["sip"].(map[string]any); ok {
		servers, _ := sip["servers"].([]any)
		for _, sv := range servers {
			if m, ok := sv.(map[string]any); ok {
				m["app_id"] = s.cfg.AppID
				if creds {
					m["sip_user_password"] = ns.cfg.SIPPassword
				}
			}
		}
	}
	var list []any
	for _, r := range ns.activeRestrictions(now) {
		e := map[string]any{"type": r.typ, "reason": r.reason}
		if !r.expiration.IsZero() {
			e["expiration"] = r.expiration.Unix()
		}
		list = append(list, e)
	}
	if len(list) > 0 {
		c["restrictions"] = map[string]any{"restrictions_list": list}
	}
	return c
}

// activeRestrictions drops the lapsed restrictions and returns the others.
func (ns *numberState) activeRestrictions(now time.Time) []restriction {
	ns.restrictions = slices.DeleteFunc(ns.restrictions, func(r restriction) bool {
		return !r.expiration.IsZero() && !now.Before(r.expiration)
	})
	return ns.restrictions
}

// checkCallingLocked checks one calling object against Meta's rules and the
// number's state.
func (s *Sim) checkCallingLocked(ns *numberState, c map[string]any, now time.Time) *graphError {
	known := []string{"status", "call_icon_visibility", "call_icons", "call_hours", "callback_permission_status",
		"sip", "srtp_key_exchange_protocol", "audio", "voicemail"}
	if e := onlyKeys(c, "calling", known...); e != nil {
		return e
	}
	checks := []struct {
		key   string
		check func(v any) *graphError
	}{
		{"status", func(v any) *graphError { return enum(v, "calling.status", titleInvalidStatus, "ENABLED", "DISABLED") }},
		{"call_icon_visibility", func(v any) *graphError {
			return enum(v, "calling.call_icon_visibility", titleInvalidParam, "DEFAULT", "DISABLE_ALL")
		}},
		{"callback_permission_status", func(v any) *graphError {
			return enum(v, "calling.callback_permission_status", titleInvalidStatus, "ENABLED", "DISABLED")
		}},
		{"srtp_key_exchange_protocol", func(v any) *graphError {
			return enum(v, "calling.srtp_key_exchange_protocol", titleInvalidParam, "DTLS", "SDES")
		}},
		{"call_icons", checkCallIcons},
		{"call_hours", func(v any) *graphError { return checkCallHours(v, now) }},
		{"sip", checkSIP},
		{"audio", checkAudio},
		{"voicemail", func(v any) *graphError { return s.checkVoicemailLocked(ns.id, v) }},
	}
	for _, ch := range checks {
		if v, ok := c[ch.key]; ok {
			if e := ch.check(v); e != nil {
				return e
			}
		}
	}
	_, vm := c["voicemail"]
	_, ch := c["call_hours"]
	if vm || ch {
		merged := maps.Clone(ns.calling)
		maps.Copy(merged, c)
		if statusOf(merged["voicemail"]) == "ENABLED" && statusOf(merged["call_hours"]) == "ENABLED" {
			return invalid(titleInvalidParam, "calling.voicemail and calling.call_hours cannot both be ENABLED: turn call hours off to take voicemail")
		}
	}
	if c["status"] == "ENABLED" && ns.cfg.MessagingLimit < minCallingLimit {
		return errMessagingLimit(ns.cfg.MessagingLimit)
	}
	return nil
}

func statusOf(v any) string {
	m, _ := v.(map[string]any)
	st, _ := m["status"].(string)
	return st
}

// onlyKeys refuses a key of obj not in known.
func onlyKeys(obj map[string]any, path string, known ...string) *graphError {
	keys := slices.Sorted(maps.Keys(obj))
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return invalid(titleInvalidParam, "%s.%s is not a parameter of %s (known: %s)", path, k, path, strings.Join(known, ", "))
		}
	}
	return nil
}

func enum(v any, field, title string, allowed ...string) *graphError {
	if s, ok := v.(string); ok && slices.Contains(allowed, s) {
		return nil
	}
	return invalid(title, "%s must be %s, not %s", field, strings.Join(allowed, " or "), jsonText(v))
}

func object(v any, field string) (map[string]any, *graphError) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalid(titleInvalidParam, "%s must be a JSON object, not %s", field, jsonText(v))
	}
	return m, nil
}

func array(v any, field string) ([]any, *graphError) {
	a, ok := v.([]any)
	if !ok {
		return nil, invalid(titleInvalidParam, "%s must be a JSON array, not %s", field, jsonText(v))
	}
	return a, nil
}

// integer reads a JSON integer (a whole number, or a string of digits when
// strOK).
func integer(v any, strOK bool) (int64, bool) {
	switch n := v.(type) {
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int64(n), true
		}
	case string:
		if strOK {
			i, err := strconv.ParseInt(n, 10, 64)
			return i, err == nil && i >= 0
		}
	}
	return 0, false
}

var countryCode = regexp.MustCompile(`^[A-Z]{2}$`)

func checkCallIcons(v any) *graphError {
	m, e := object(v, "calling.call_icons")
	if e != nil {
		return e
	}
	if e := onlyKeys(m, "calling.call_icons", "restrict_to_user_countries"); e != nil {
		return e
	}
	if raw, ok := m["restrict_to_user_countries"]; ok {
		list, e := array(raw, "calling.call_icons.restrict_to_user_countries")
		if e != nil {
			return e
		}
		for i, c := range list {
			if s, ok := c.(string); !ok || !countryCode.MatchString(s) {
				return invalid(titleInvalidParam, "calling.call_icons.restrict_to_user_countries[%d] %s is not an ISO 3166 two-letter country code", i, jsonText(c))
			}
		}
	}
	return nil
}

// hhmm reads a "HHMM" time, 0000–2359, as minutes of the day.
func hhmm(v any) (int, bool) {
	s, ok := v.(string)
	if !ok || len(s) != 4 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	h, _ := strconv.Atoi(s[:2])
	m, _ := strconv.Atoi(s[2:])
	return h*60 + m, h < 24 && m < 60
}

var weekdays = []string{"MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"}

type timeRange struct {
	where      string
	open, shut int
}

// checkRanges applies Meta's per-day rules to the ranges of one day: at
// most 2, no overlap (ranges that touch do not overlap).
func checkRanges(day string, rs []timeRange, tooMany string) *graphError {
	if len(rs) > maxRangesPerDay {
		return invalid(tooMany, "%s has %d entries (%s); at most %d a day", day, len(rs), rs[len(rs)-1].where, maxRangesPerDay)
	}
	slices.SortFunc(rs, func(a, b timeRange) int { return a.open - b.open })
	for i := 1; i < len(rs); i++ {
		if rs[i].open < rs[i-1].shut {
			return invalid(titleOverlap, "%s and %s overlap on %s", rs[i-1].where, rs[i].where, day)
		}
	}
	return nil
}

// checkCallHours checks a call_hours object (a full replacement).
func checkCallHours(v any, now time.Time) *graphError {
	const p = "calling.call_hours"
	m, e := object(v, p)
	if e != nil {
		return e
	}
	if e := onlyKeys(m, p, "status", "timezone_id", "weekly_operating_hours", "holiday_schedule"); e != nil {
		return e
	}
	st, ok := m["status"]
	if !ok {
		return invalid(titleInvalidStatus, "%s.status is required (ENABLED or DISABLED)", p)
	}
	if e := enum(st, p+".status", titleInvalidStatus, "ENABLED", "DISABLED"); e != nil {
		return e
	}
	enabled := st == "ENABLED"

	loc := time.UTC
	if tz, ok := m["timezone_id"]; ok || enabled {
		name, _ := tz.(string)
		l, err := time.LoadLocation(name)
		if !ok {
			return invalid(titleBadTimezone, "%s.timezone_id is required when call hours are ENABLED", p)
		}
		if name == "" || name == "Local" || err != nil {
			return invalid(titleBadTimezone, "%s.timezone_id %s is not an IANA time zone", p, jsonText(tz))
		}
		loc = l
	}

	raw, ok := m["weekly_operating_hours"]
	if !ok && enabled {
		return invalid(titleEmptyWeekly, "%s.weekly_operating_hours is required when call hours are ENABLED", p)
	}
	if ok {
		list, e := array(raw, p+".weekly_operating_hours")
		if e != nil {
			return e
		}
		if len(list) == 0 && enabled {
			return invalid(titleEmptyWeekly, "%s.weekly_operating_hours is empty", p)
		}
		byDay := map[string][]timeRange{}
		for i, it := range list {
			where := fmt.Sprintf("%s.weekly_operating_hours[%d]", p, i)
			o, e := object(it, where)
			if e != nil {
				return e
			}
			if e := onlyKeys(o, where, "day_of_week", "open_time", "close_time"); e != nil {
				return e
			}
			if e := enum(o["day_of_week"], where+".day_of_week", titleInvalidSchedule, weekdays...); e != nil {
				return e
			}
			open, ok1 := hhmm(o["open_time"])
			if !ok1 {
				return invalid(titleInvalidSchedule, "%s.open_time %s is not a time \"HHMM\" from 0000 to 2359", where, jsonText(o["open_time"]))
			}
			shut, ok2 := hhmm(o["close_time"])
			if !ok2 {
				return invalid(titleInvalidSchedule, "%s.close_time %s is not a time \"HHMM\" from 0000 to 2359", where, jsonText(o["close_time"]))
			}
			if open >= shut {
				return invalid(titleInvalidSchedule, "%s: open_time %s is not before close_time %s", where, o["open_time"], o["close_time"])
			}
			day := o["day_of_week"].(string)
			byDay[day] = append(byDay[day], timeRange{where, open, shut})
		}
		for _, day := range weekdays {
			if e := checkRanges(day, byDay[day], titleTooManyRanges); e != nil {
				return e
			}
		}
	}

	if raw, ok := m["holiday_schedule"]; ok {
		list, e := array(raw, p+".holiday_schedule")
		if e != nil {
			return e
		}
		if len(list) > maxHolidays {
			return invalid(titleInvalidSchedule, "%s.holiday_schedule has %d entries; at most %d", p, len(list), maxHolidays)
		}
		y, mo, d := now.In(loc).Date()
		today := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
		byDate := map[string][]timeRange{}
		var dates []string
		for i, it := range list {
			where := fmt.Sprintf("%s.holiday_schedule[%d]", p, i)
			o, e := object(it, where)
			if e != nil {
				return e
			}
			if e := onlyKeys(o, where, "date", "start_time", "end_time"); e != nil {
				return e
			}
			ds, _ := o["date"].(string)
			date, err := time.Parse(time.DateOnly, ds)
			if err != nil || len(ds) != len(time.DateOnly) {
				return invalid(titleBadDate, "%s.date %s is not a date YYYY-MM-DD", where, jsonText(o["date"]))
			}
			if date.Before(today) {
				return invalid(titlePastHoliday, "%s.date %s is before today (%s in %s)", where, ds, today.Format(time.DateOnly), loc)
			}
			start, ok1 := hhmm(o["start_time"])
			if !ok1 {
				return invalid(titleInvalidSchedule, "%s.start_time %s is not a time \"HHMM\" from 0000 to 2359", where, jsonText(o["start_time"]))
			}
			end, ok2 := hhmm(o["end_time"])
			if !ok2 {
				return invalid(titleInvalidSchedule, "%s.end_time %s is not a time \"HHMM\" from 0000 to 2359", where, jsonText(o["end_time"]))
			}
			if start >= end {
				return invalid(titleInvalidSchedule, "%s: start_time %s is not before end_time %s", where, o["start_time"], o["end_time"])
			}
			if byDate[ds] == nil {
				dates = append(dates, ds)
			}
			byDate[ds] = append(byDate[ds], timeRange{where, start, end})
		}
		for _, ds := range dates {
			if e := checkRanges(ds, byDate[ds], titleInvalidSchedule); e != nil {
				return e
			}
		}
	}
	return nil
}

// hostname accepts a DNS name or an IP address, without scheme or port.
var hostname = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$`)

func checkSIP(v any) *graphError {
	const p = "calling.sip"
	m, e := object(v, p)
	if e != nil {
		return e
	}
	if e := onlyKeys(m, p, "status", "servers"); e != nil {
		return e
	}
	st, ok := m["status"]
	if !ok {
		return invalid(titleInvalidStatus, "%s.status is required (ENABLED or DISABLED)", p)
	}
	if e := enum(st, p+".status", titleInvalidStatus, "ENABLED", "DISABLED"); e != nil {
		return e
	}
	var servers []any
	if raw, ok := m["servers"]; ok {
		if servers, e = array(raw, p+".servers"); e != nil {
			return e
		}
	}
	if len(servers) > 1 {
		return invalid(titleInvalidParam, "%s.servers has %d entries; one server per app", p, len(servers))
	}
	if st == "ENABLED" && len(servers) == 0 {
		return invalid(titleInvalidParam, "%s.servers needs the SIP server when sip.status is ENABLED", p)
	}
	for i, it := range servers {
		where := fmt.Sprintf("%s.servers[%d]", p, i)
		o, e := object(it, where)
		if e != nil {
			return e
		}
		if e := onlyKeys(o, where, "hostname", "port", "request_uri_user_params"); e != nil {
			return e
		}
		h, _ := o["hostname"].(string)
		if len(h) > 253 || !hostname.MatchString(h) {
			return invalid(titleInvalidParam, "%s.hostname %s is not a host name (no scheme, no port)", where, jsonText(o["hostname"]))
		}
		if raw, ok := o["port"]; ok {
			if n, ok := integer(raw, false); !ok || n < 1 || n > 65535 {
				return invalid(titleInvalidParam, "%s.port %s is not a port from 1 to 65535", where, jsonText(raw))
			}
		}
		if raw, ok := o["request_uri_user_params"]; ok {
			params, e := object(raw, where+".request_uri_user_params")
			if e != nil {
				return e
			}
			for _, k := range slices.Sorted(maps.Keys(params)) {
				if _, ok := params[k].(string); !ok || k == "" {
					return invalid(titleInvalidParam, "%s.request_uri_user_params[%q] must be a string, not %s", where, k, jsonText(params[k]))
				}
			}
		}
	}
	return nil
}

func checkAudio(v any) *graphError {
	const p = "calling.audio"
	m, e := object(v, p)
	if e != nil {
		return e
	}
	if e := onlyKeys(m, p, "additional_codecs"); e != nil {
		return e
	}
	if raw, ok := m["additional_codecs"]; ok {
		list, e := array(raw, p+".additional_codecs")
		if e != nil {
			return e
		}
		seen := map[string]bool{}
		for i, c := range list {
			where := fmt.Sprintf("%s.additional_codecs[%d]", p, i)
			if e := enum(c, where, titleInvalidParam, "PCMA", "PCMU"); e != nil {
				return e
			}
			if seen[c.(string)] {
				return invalid(titleInvalidParam, "%s %s is listed twice", where, jsonText(c))
			}
			seen[c.(string)] = true
		}
	}
	return nil
}

func (s *Sim) checkVoicemailLocked(pnid string, v any) *graphError {
	const p = "calling.voicemail"
	m, e := object(v, p)
	if e != nil {
		return e
	}
	if e := onlyKeys(m, p, "status", "triggers", "audio"); e != nil {
		return e
	}
	st, ok := m["status"]
	if !ok {
		return invalid(titleInvalidStatus, "%s.status is required (ENABLED or DISABLED)", p)
	}
	if e := enum(st, p+".status", titleInvalidStatus, "ENABLED", "DISABLED"); e != nil {
		return e
	}
	enabled := st == "ENABLED"
	raw, ok := m["triggers"]
	if !ok && enabled {
		return invalid(titleInvalidParam, "%s.triggers is required when voicemail is ENABLED (REJECT, TIMEOUT)", p)
	}
	if ok {
		list, e := array(raw, p+".triggers")
		if e != nil {
			return e
		}
		if len(list) == 0 && enabled {
			return invalid(titleInvalidParam, "%s.triggers is empty; at least one trigger (REJECT, TIMEOUT) when voicemail is ENABLED", p)
		}
		seen := map[string]bool{}
		for i, t := range list {
			where := fmt.Sprintf("%s.triggers[%d]", p, i)
			if e := enum(t, where, titleInvalidParam, "REJECT", "TIMEOUT"); e != nil {
				return e
			}
			if seen[t.(string)] {
				return invalid(titleInvalidParam, "%s %s is listed twice", where, jsonText(t))
			}
			seen[t.(string)] = true
		}
	}
	raw, ok = m["audio"]
	if !ok {
		if enabled {
			return invalid(titleInvalidParam, "%s.audio.default.announcement_media_id is required when voicemail is ENABLED", p)
		}
		return nil
	}
	audio, e := object(raw, p+".audio")
	if e != nil {
		return e
	}
	if e := onlyKeys(audio, p+".audio", "default"); e != nil {
		return e
	}
	raw, ok = audio["default"]
	if !ok {
		return invalid(titleInvalidParam, "%s.audio.default is required", p)
	}
	def, e := object(raw, p+".audio.default")
	if e != nil {
		return e
	}
	if e := onlyKeys(def, p+".audio.default", "announcement_media_id", "timeout_seconds"); e != nil {
		return e
	}
	if raw, ok := def["timeout_seconds"]; ok {
		if n, ok := integer(raw, false); !ok || n < 0 || n > maxVoicemailTimeout {
			return invalid(titleInvalidParam, "%s.audio.default.timeout_seconds %s is not a whole number of seconds from 0 to %d", p, jsonText(raw), maxVoicemailTimeout)
		}
	}
	raw, ok = def["announcement_media_id"]
	if !ok {
		if enabled {
			return invalid(titleInvalidParam, "%s.audio.default.announcement_media_id is required when voicemail is ENABLED", p)
		}
		return nil
	}
	id, ok := integer(raw, true)
	if !ok {
		return invalid(titleInvalidParam, "%s.audio.default.announcement_media_id %s is not a media id", p, jsonText(raw))
	}
	mo := s.media[strconv.FormatInt(id, 10)]
	if mo == nil || mo.pnid != pnid || mo.useCase != useCaseAnnouncement {
		return invalid(titleInvalidParam, "%s.audio.default.announcement_media_id %s is not a media id this number uploaded with use_case=%s", p, jsonText(raw), useCaseAnnouncement)
	}
	return nil
}

// errUnknownNumber is what the Send… methods return for a number the
// simulator does not know.
var errUnknownNumber = errors.New("wasim: unknown business phone number id (see SetNumber)")

package gateway

import (
	"strconv"
	"strings"
	"time"
)

// HoursConfig is when something is open, in the shape of Meta's call hours
// (weekly ranges in HHMM, holidays by date) with a timezone: Meta's call
// hours (numbers[].calling.call_hours) and a route's hours share it, and
// its rules (HoursConfig.check, config_calling.go). Meta's call hours hide
// the call button; a route's hours send the calls that still come
// (call-to-action buttons and deep links ignore the icon setting) to
// another destination.
type HoursConfig struct {
	Timezone string              `yaml:"timezone"` // IANA, e.g. Europe/London
	Weekly   []WeeklyHoursConfig `yaml:"weekly"`
	Holidays []HolidayConfig     `yaml:"holidays"` // a route is closed then, whatever the weekly hours say
}

var weekdays = map[string]time.Weekday{
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// minuteRange is [from, to) in minutes after midnight.
type minuteRange struct{ from, to int }

// schedule is HoursConfig compiled: ranges per weekday, holidays per date.
type schedule struct {
	loc      *time.Location
	weekly   [7][]minuteRange
	holidays map[string][]minuteRange // "2006-01-02"
}

// compile checks h (HoursConfig.check) and returns its schedule, or the
// problems, each naming its field under prefix. A route's hours need at
// least one weekly range (a route never open takes no call).
func (h *HoursConfig) compile(prefix string) (*schedule, []string) {
	p := h.check(prefix)
	if len(h.Weekly) == 0 {
		p = append(p, prefix+".weekly: at least one range is needed (a route never open takes no call)")
	}
	if len(p) > 0 {
		return nil, p
	}
	s := &schedule{holidays: map[string][]minuteRange{}}
	s.loc, _ = time.LoadLocation(h.Timezone)
	for _, w := range h.Weekly {
		day := weekdays[strings.ToLower(w.Day)]
		s.weekly[day] = append(s.weekly[day], minutes(w.Open, w.Close))
	}
	for _, d := range h.Holidays {
		s.holidays[d.Date] = append(s.holidays[d.Date], minutes(d.Start, d.End))
	}
	return s, nil
}

// minutes is a checked HHMM range in minutes; "2359" closes at the end of
// the day, as in Meta's call hours.
func minutes(from, to string) minuteRange {
	m := func(s string) int { n, _ := strconv.Atoi(s); return n/100*60 + n%100 }
	r := minuteRange{m(from), m(to)}
	if r.to == 23*60+59 {
		r.to = 24 * 60
	}
	return r
}

// open reports whether the schedule is open at t: within a weekly range
// of t's day in the schedule's timezone, and not within a holiday range.
func (s *schedule) open(t time.Time) bool {
	local := t.In(s.loc)
	m := local.Hour()*60 + local.Minute()
	in := func(rs []minuteRange) bool {
		for _, r := range rs {
			if m >= r.from && m < r.to {
				return true
			}
		}
		return false
	}
	if in(s.holidays[local.Format(time.DateOnly)]) {
		return false
	}
	return in(s.weekly[local.Weekday()])
}

package gateway

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HoursConfig is when a route is open, in the shape of Meta's call hours
// (weekly ranges in HHMM, holidays by date) with a timezone of its own.
// Meta's call hours hide the call button; a route's hours send the calls
// that still come (call-to-action buttons and deep links ignore the icon
// setting) to another destination.
type HoursConfig struct {
	Timezone string         `yaml:"timezone"` // IANA, e.g. Europe/London
	Weekly   []WeeklyRange  `yaml:"weekly"`
	Holidays []HolidayRange `yaml:"holidays"` // closed then, whatever the weekly hours say
}

// WeeklyRange opens a route on one day of the week.
type WeeklyRange struct {
	Day   string `yaml:"day"`   // monday … sunday
	Open  string `yaml:"open"`  // HHMM
	Close string `yaml:"close"` // HHMM, after Open
}

// HolidayRange closes a route on one date.
type HolidayRange struct {
	Date  string `yaml:"date"`  // YYYY-MM-DD
	Start string `yaml:"start"` // HHMM
	End   string `yaml:"end"`   // HHMM, after Start
}

// Meta's call hours allow at most 2 ranges a day and 20 holidays.
const (
	maxRangesPerDay = 2
	maxHolidays     = 20
)

var weekdays = map[string]time.Weekday{
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// hhmm reads "HHMM" (0000-2359) as minutes after midnight.
func hhmm(s string) (int, error) {
	if len(s) != 4 {
		return 0, fmt.Errorf("%q is not HHMM", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n/100 > 23 || n%100 > 59 {
		return 0, fmt.Errorf("%q is not a time HHMM (0000-2359)", s)
	}
	return n/100*60 + n%100, nil
}

// minuteRange is [from, to) in minutes after midnight.
type minuteRange struct{ from, to int }

// schedule is HoursConfig compiled: ranges per weekday, holidays per date.
type schedule struct {
	loc      *time.Location
	weekly   [7][]minuteRange
	holidays map[string][]minuteRange // "2006-01-02"
}

// compile checks h by Meta's rules for call hours and returns the
// schedule, or the problems, each naming its field under prefix.
func (h *HoursConfig) compile(prefix string) (*schedule, []string) {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, prefix+field+": "+fmt.Sprintf(format, a...)) }
	s := &schedule{holidays: map[string][]minuteRange{}}
	if h.Timezone == "" {
		bad(".timezone", "required (an IANA name, e.g. Europe/London)")
	} else if loc, err := time.LoadLocation(h.Timezone); err != nil {
		bad(".timezone", "%q is not an IANA timezone", h.Timezone)
	} else {
		s.loc = loc
	}
	if len(h.Weekly) == 0 {
		bad(".weekly", "at least one range is needed (a route never open takes no call)")
	}
	for i, w := range h.Weekly {
		f := fmt.Sprintf(".weekly[%d]", i)
		day, ok := weekdays[strings.ToLower(w.Day)]
		if !ok {
			bad(f+".day", "%q is not a day of the week", w.Day)
			continue
		}
		r, msgs := rangeOf(w.Open, w.Close, "open", "close")
		for _, m := range msgs {
			bad(f+m.field, "%s", m.text)
		}
		if len(msgs) > 0 {
			continue
		}
		for _, o := range s.weekly[day] {
			if r.from < o.to && o.from < r.to {
				bad(f, "%s %s-%s overlaps another range of that day", w.Day, w.Open, w.Close)
			}
		}
		s.weekly[day] = append(s.weekly[day], r)
		if len(s.weekly[day]) > maxRangesPerDay {
			bad(f, "more than %d ranges on %s (Meta's limit)", maxRangesPerDay, w.Day)
		}
	}
	if len(h.Holidays) > maxHolidays {
		bad(".holidays", "%d holidays, at most %d", len(h.Holidays), maxHolidays)
	}
	for i, d := range h.Holidays {
		f := fmt.Sprintf(".holidays[%d]", i)
		if _, err := time.Parse(time.DateOnly, d.Date); err != nil {
			bad(f+".date", "%q is not a date YYYY-MM-DD", d.Date)
			continue
		}
		r, msgs := rangeOf(d.Start, d.End, "start", "end")
		for _, m := range msgs {
			bad(f+m.field, "%s", m.text)
		}
		if len(msgs) == 0 {
			s.holidays[d.Date] = append(s.holidays[d.Date], r)
		}
	}
	return s, p
}

type fieldMsg struct{ field, text string }

// rangeOf reads an HHMM range whose end must come after its start.
func rangeOf(from, to, fromName, toName string) (minuteRange, []fieldMsg) {
	var msgs []fieldMsg
	a, err := hhmm(from)
	if err != nil {
		msgs = append(msgs, fieldMsg{"." + fromName, err.Error()})
	}
	b, err := hhmm(to)
	if err != nil {
		msgs = append(msgs, fieldMsg{"." + toName, err.Error()})
	}
	if len(msgs) == 0 && b <= a {
		msgs = append(msgs, fieldMsg{"." + toName, fmt.Sprintf("%q is not after %s %q", to, fromName, from)})
	}
	if b == 23*60+59 {
		b = 24 * 60 // "2359" closes at the end of the day, as in Meta's call hours
	}
	return minuteRange{a, b}, msgs
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

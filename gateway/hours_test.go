package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestHoursRules(t *testing.T) {
	h := HoursConfig{Timezone: "Mars/Olympus", Weekly: []WeeklyHoursConfig{
		{Day: "monday", Open: "0900", Close: "1200"},
		{Day: "monday", Open: "1100", Close: "1300"}, // overlaps
		{Day: "monday", Open: "1400", Close: "1800"}, // a third range
		{Day: "funday", Open: "0900", Close: "1000"},
		{Day: "tuesday", Open: "1800", Close: "0900"},
		{Day: "wednesday", Open: "2400", Close: "9"},
	}, Holidays: []HolidayConfig{{Date: "2026-13-01", Start: "0000", End: "2359"}, {Date: "2026-12-25", Start: "1000", End: "1000"}}}
	for i := 0; i < maxHolidays; i++ {
		h.Holidays = append(h.Holidays, HolidayConfig{Date: fmt.Sprintf("2027-01-%02d", i+1), Start: "0000", End: "0100"})
	}
	_, problems := h.compile("r.hours")
	all := strings.Join(problems, "\n")
	for _, want := range []string{"r.hours.timezone:", "r.hours.weekly[1]: monday 1100-1300 overlaps", "r.hours.weekly[2].day: range 3 on monday: at most 2",
		"r.hours.weekly[3].day:", "r.hours.weekly[4].close: \"0900\" is before open", "r.hours.weekly[5].open:", "r.hours.weekly[5].close:",
		"r.hours.holidays: 22 entries, at most 20", "r.hours.holidays[0].date:", "r.hours.holidays[1].end:"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem %q in:\n%s", want, all)
		}
	}
}

func TestHoursOpen(t *testing.T) {
	h := HoursConfig{Timezone: "America/New_York", Weekly: []WeeklyHoursConfig{
		{Day: "Monday", Open: "0900", Close: "1200"}, {Day: "monday", Open: "1300", Close: "1700"},
		{Day: "saturday", Open: "1000", Close: "2359"},
	}, Holidays: []HolidayConfig{{Date: "2026-12-07", Start: "0000", End: "1000"}}}
	s, problems := h.compile("")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	ny, _ := time.LoadLocation("America/New_York")
	at := func(day, hm string) time.Time {
		t0, err := time.ParseInLocation("2006-01-02 1504", day+" "+hm, ny)
		if err != nil {
			t.Fatal(err)
		}
		return t0.UTC() // the schedule reads it in its own timezone
	}
	for _, tc := range []struct {
		day, hm string
		open    bool
	}{
		{"2026-11-30", "0859", false}, {"2026-11-30", "0900", true}, {"2026-11-30", "1159", true}, {"2026-11-30", "1200", false},
		{"2026-11-30", "1230", false}, {"2026-11-30", "1300", true}, {"2026-12-01", "1000", false}, // Tuesday: closed
		{"2026-12-05", "2359", true},                                // Saturday to the end of the day
		{"2026-12-07", "0930", false}, {"2026-12-07", "1030", true}, // a holiday morning
	} {
		if got := s.open(at(tc.day, tc.hm)); got != tc.open {
			t.Errorf("%s %s: open %v, want %v", tc.day, tc.hm, got, tc.open)
		}
	}
}

// A call outside the route's hours goes to its after-hours destination,
// at a fixed clock; within them to its own.
func TestCallRoutedByHours(t *testing.T) {
	for _, tc := range []struct {
		name, clock, dest string
		afterHours        bool
	}{
		{"open", "2026-11-30T15:00:00Z", "sip:agents@127.0.0.1:5060", false},       // Monday 10:00 in New York
		{"closed", "2026-11-30T03:00:00Z", "sip:after-hours@127.0.0.1:5060", true}, // Sunday 22:00 in New York
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			clock, _ := time.Parse(time.RFC3339, tc.clock)
			m.g.cfg.Numbers[0].Routes[0].Hours = &HoursConfig{Timezone: "America/New_York",
				Weekly: []WeeklyHoursConfig{{Day: "monday", Open: "0900", Close: "1800"}}}
			m.g.cfg.Numbers[0].Routes[0].AfterHoursDestination = "sip:after-hours@127.0.0.1:5060"
			m.g.rmu.Lock()
			m.g.router = NewRouter(m.g.cfg.Numbers)
			m.g.router.now = func() time.Time { return clock } // the route's clock, injected
			m.g.rmu.Unlock()
			c := m.connect("wacid.hours")
			inv := recv(t, m.dial.invited, "the INVITE")
			if inv.To != tc.dest {
				t.Errorf("INVITE to %q, want %q", inv.To, tc.dest)
			}
			recv(t, m.dial.pbx, "the PBX")
			m.waitState(c, stateBridged)
			m.waitMedia(c)
			m.terminate("wacid.hours")
			if r := m.ended(c, pathBridged...); r.AfterHours != tc.afterHours || r.Destination != tc.dest {
				t.Errorf("record after_hours %v destination %q", r.AfterHours, r.Destination)
			}
		})
	}
}

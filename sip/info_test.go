package sip

import (
	"errors"
	"testing"
	"time"
)

func TestParseDTMFRelay(t *testing.T) {
	for _, tc := range []struct {
		body  string
		digit rune
		d     time.Duration
	}{
		{"Signal=5\r\nDuration=160\r\n", '5', 160 * time.Millisecond},
		{"Signal=#\r\nDuration=250\r\n", '#', 250 * time.Millisecond},
		{"signal= *\nduration= 100\n", '*', 100 * time.Millisecond},
		{"Signal=a\r\n", 'A', 0},                                     // no Duration: the caller's default
		{"Signal=10\r\nDuration=80\r\n", '*', 80 * time.Millisecond}, // RFC 4733 event code
		{"Signal=11\r\n", '#', 0},
		{"Signal=15\r\n", 'D', 0},
		{"Signal=5\nDuration=9223372036855", '5', 0},  // overflowed to a negative duration once (fuzzing)
		{"Signal=5\nDuration=18446744073710", '5', 0}, // wrapped to 448 µs once
		{"Signal=5\nDuration=60001", '5', 0},          // over the one-minute bound
		{"Signal=07\r\n", '7', 0},
		{"Signal=9\r\nDuration=0\r\n", '9', 0},
		{"Signal=9\r\nDuration=-5\r\n", '9', 0},
		{"Signal=9\r\nDuration=999999\r\n", '9', 0},
		{"Signal=9\r\nDuration=x\r\n", '9', 0},
		{"Foo=bar\r\nSignal=3\r\nDuration=60000\r\n", '3', time.Minute},
	} {
		digit, d, err := parseDTMFRelay([]byte(tc.body))
		if err != nil || digit != tc.digit || d != tc.d {
			t.Errorf("%q: %q %s %v, want %q %s", tc.body, digit, d, err, tc.digit, tc.d)
		}
	}
	for _, body := range []string{"", "Duration=160\r\n", "Signal=\r\n", "Signal=E\r\n", "Signal=17\r\n", "Signal=55\r\n", "Signal=12345\r\n", "Signal=1 2\r\n", "5"} {
		if digit, _, err := parseDTMFRelay([]byte(body)); err == nil {
			t.Errorf("%q: accepted as %q", body, digit)
		}
	}
	for _, body := range []string{"Signal=!\r\n", "Signal=16\r\nDuration=500\r\n"} {
		if _, _, err := parseDTMFRelay([]byte(body)); !errors.Is(err, errHookFlash) {
			t.Errorf("%q: %v, want a hook flash", body, err)
		}
	}
}

func TestNormDigit(t *testing.T) {
	for _, r := range "0123456789*#ABCD" {
		if got, ok := normDigit(r); !ok || got != r {
			t.Errorf("%q: %q %v", r, got, ok)
		}
	}
	if got, ok := normDigit('c'); !ok || got != 'C' {
		t.Errorf("'c': %q %v", got, ok)
	}
	for _, r := range "EeZ!+ ١" {
		if _, ok := normDigit(r); ok {
			t.Errorf("%q accepted", r)
		}
	}
}

// TestDigitsBeforeCallback: digits that come before OnInfoDigit is set are
// kept (bounded) and handed over, in order, when it is set.
func TestDigitsBeforeCallback(t *testing.T) {
	c := &Call{log: testLogger(t)}
	for i := 0; i < maxPendingDigits+5; i++ {
		c.deliverDigit(rune('0'+i%10), time.Duration(i)*time.Millisecond)
	}
	var got []rune
	c.SetOnInfoDigit(func(r rune, d time.Duration) {
		if n := len(got); n < maxPendingDigits && d != time.Duration(n)*time.Millisecond {
			t.Errorf("digit %d: duration %s", n, d)
		}
		got = append(got, r)
	})
	if len(got) != maxPendingDigits || got[0] != '0' || got[11] != '1' {
		t.Fatalf("got %d digits %q", len(got), string(got))
	}
	c.deliverDigit('#', time.Second)
	if got[len(got)-1] != '#' {
		t.Errorf("digit after set not delivered: %q", string(got))
	}
	c.SetOnInfoDigit(nil)
	c.deliverDigit('*', time.Second)
	if got[len(got)-1] != '#' || len(c.digits) != 1 {
		t.Errorf("digit delivered after SetOnInfoDigit(nil)")
	}
}

// TestMediaChangeBeforeCallback: the latest change made while no
// OnMediaChange is set is handed over when one is.
func TestMediaChangeBeforeCallback(t *testing.T) {
	c := &Call{log: testLogger(t)}
	c.mediaMu.Lock()
	c.notifyMedia(MediaChange{Direction: "sendonly"})
	c.notifyMedia(MediaChange{Direction: "inactive"})
	c.mediaMu.Unlock()
	var got []string
	c.SetOnMediaChange(nil) // keeps the pending change
	c.SetOnMediaChange(func(m MediaChange) { got = append(got, m.Direction) })
	c.SetOnMediaChange(func(m MediaChange) { got = append(got, "again "+m.Direction) })
	if len(got) != 1 || got[0] != "inactive" {
		t.Errorf("got %q, want [inactive]", got)
	}
}

package rtpbridge

import (
	"slices"
	"testing"
	"time"
)

func ramp(from, n int) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(from + i)
	}
	return s
}

// The framer cuts any run of writes into whole frames, in order, and pads
// the remainder on flush.
func TestFramer(t *testing.T) {
	f := newFramer(160, 20*time.Millisecond, 960)
	if f.String() != "20ms frames" {
		t.Fatalf("name %q", f.String())
	}
	var got []int16
	next := 0
	for _, n := range []int{80, 80, 240, 960, 20, 900, 960, 40} {
		buf := f.space(n)
		copy(buf, ramp(next, n))
		f.wrote(n)
		next += n
		for {
			fr, ok := f.next()
			if !ok {
				break
			}
			got = append(got, fr...)
		}
		if f.pending() >= 160 {
			t.Fatalf("%d samples pending after draining", f.pending())
		}
	}
	if !slices.Equal(got, ramp(0, len(got))) || len(got) != next/160*160 {
		t.Fatalf("frames out of order or lost: %d samples of %d", len(got), next)
	}
	rest := f.pending()
	fr, padding, ok := f.flush()
	if !ok || padding != 160-rest || !slices.Equal(fr[:rest], ramp(len(got), rest)) || slices.ContainsFunc(fr[rest:], func(v int16) bool { return v != 0 }) {
		t.Fatalf("flush: %d padding, ok %v", padding, ok)
	}
	if _, _, ok := f.flush(); ok || f.pending() != 0 {
		t.Fatal("second flush returned a frame")
	}
	if f.space(161+960) != nil {
		t.Fatal("framer took more than it can hold")
	}
}

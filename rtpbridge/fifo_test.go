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

// The ring keeps order across its wrap, refuses to pop what it does not
// have, and when full drops the oldest samples.
func TestPCMRing(t *testing.T) {
	q := newPCMRing(800, 100*time.Millisecond)
	if q.String() != "fifo 100ms" {
		t.Fatalf("name %q", q.String())
	}
	out := make([]int16, 160)
	if q.pop(out) {
		t.Fatal("popped from an empty ring")
	}
	next, want := 0, 0
	for round := 0; round < 50; round++ {
		n := 240 // 30 ms in, 20 ms out: the ring wraps at odd places
		if dropped := q.push(ramp(next, n)); dropped != 0 {
			t.Fatalf("round %d: dropped %d", round, dropped)
		}
		next += n
		for q.len() >= 160+80*(round%2) {
			if !q.pop(out) {
				t.Fatal("pop failed with samples stored")
			}
			if !slices.Equal(out, ramp(want, 160)) {
				t.Fatalf("round %d: out of order at %d", round, want)
			}
			want += 160
		}
	}
	// Overrun: the newest 800 samples stay.
	q = newPCMRing(800, 100*time.Millisecond)
	q.push(ramp(0, 500))
	if dropped := q.push(ramp(500, 500)); dropped != 200 {
		t.Fatalf("dropped %d, want 200", dropped)
	}
	if dropped := q.push(ramp(1000, 1000)); dropped != 1000 {
		t.Fatalf("dropped %d, want 1000", dropped)
	}
	all := make([]int16, 800)
	if !q.pop(all) || !slices.Equal(all, ramp(1200, 800)) || q.len() != 0 {
		t.Fatalf("after overrun: %v…", all[:4])
	}
}

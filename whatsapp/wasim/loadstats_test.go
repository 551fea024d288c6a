package wasim

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Per-call histograms merged after shifting each by its own minimum: the
// quantiles come out right even when every call's best bucket holds most
// of its packets, and when some calls' first packet (the provisional
// anchor) was far off.
func TestLatHistMerge(t *testing.T) {
	merged := newLatHist(0)
	for c := 0; c < 400; c++ {
		h := newLatHist(-histSpanUS / 2)
		h.add(0)
		base := int64(-2005) // off its bucket's middle, below it
		if c%3 == 0 {
			base = -30000 // the first packet came 30 ms late
		}
		for i := 0; i < 2000; i++ {
			v := base
			switch r := rand.IntN(100); {
			case r < 90: // most packets right on the call's best
			case r < 99:
				v += 1000 + rand.Int64N(1000) // 1-2 ms late
			default:
				v += 25000 // 25 ms late
			}
			h.add(v)
		}
		merged.addShifted(h, h.min)
	}
	p := merged.percentiles()
	if p.N != 400*2001 || p.P50 > 0.05 || p.P95 < 1 || p.P95 > 2 || p.Max < 29.9 || p.Max > 30.1 {
		t.Errorf("merged: %+v", p)
	}
	if p.P99 < 1 || p.P99 > 25.1 {
		t.Errorf("p99 %.2f ms", p.P99)
	}
	if n := merged.countAbove(20000); n < 400*10 || n > 400*35 {
		t.Errorf("%d above 20 ms", n)
	}
}

// A histogram with more outliers than it keeps still ranks them.
func TestLatHistManyOutliers(t *testing.T) {
	h := newLatHist(0)
	for i := 0; i < maxHistOutlie+1000; i++ {
		h.add(100000 + int64(i%7))
	}
	for i := 0; i < 100; i++ {
		h.add(500)
	}
	if q := h.quantile(0.5); q < 100000 {
		t.Errorf("median %d µs", q)
	}
	if q := h.quantile(0.0001); q != 510 {
		t.Errorf("lowest %d µs", q)
	}
}

// The onset detector finds the tone's return after the marker's silence,
// and not a tone that never stopped.
func TestOnsetDetector(t *testing.T) {
	a, err := newLoadAudio(1000)
	if err != nil {
		t.Fatal(err)
	}
	// Decoded locally, the onset is the codec's delay after frame 6 starts.
	if d := a.onsetDelay; d < 8 || d > 160 {
		t.Errorf("onset delay %d samples", d)
	}
	var det onsetDetector
	tone := make([]int16, detectRate)
	for i := range tone {
		tone[i] = int16(8000 * sinTurns(float64(i)*1000/detectRate))
	}
	if _, ok := det.feed(tone); ok {
		t.Error("an onset in a steady tone")
	}
	gap := append(make([]int16, detectRate/10), tone[:400]...)
	at, ok := det.feed(gap)
	if !ok || at < detectRate/10 || at > detectRate/10+2 {
		t.Errorf("onset at %d (%v), want just after %d", at, ok, detectRate/10)
	}
}

func sinTurns(turns float64) float64 { return math.Sin(2 * math.Pi * turns) }

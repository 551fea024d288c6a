package rtpbridge

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

func newTestPlayout(t testing.TB, codec Codec) (*playout, *dirCounters) {
	t.Helper()
	s, err := newSetup(codec, 0, 0, defaultFrame, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	c := &dirCounters{}
	p := newPlayout(c)
	p.configure(s)
	return p, c
}

// tagged is packet i's 160 samples, each telling its packet and place:
// (i mod 2000)·16 + j/10 + 1, so that no sample is 0 (silence).
func tagged(i int) []int16 {
	pcm := make([]int16, 160)
	for j := range pcm {
		pcm[j] = int16((i%2000)*16 + j/10 + 1)
	}
	return pcm
}

// playoutRun plays PBX packets arriving at the given times (ms) through
// a playout buffer whose pacer ticks every 20 ms from tick0 ms, and returns
// for each packet when its first sample was played (ms, -1 if never) and
// whether the output kept the packets' order.
func playoutRun(t *testing.T, p *playout, arrive []float64, tick0 float64, onTick func(ms float64)) (played []float64, inOrder bool) {
	type ev struct {
		at   float64
		pkt  int // -1: a tick
		tick int
	}
	var evs []ev
	for i, a := range arrive {
		evs = append(evs, ev{at: a, pkt: i})
	}
	last := slices.Max(arrive) + 200
	for k := 0; tick0+float64(k)*20 < last; k++ {
		evs = append(evs, ev{at: tick0 + float64(k)*20, pkt: -1, tick: k})
	}
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	played = make([]float64, len(arrive))
	for i := range played {
		played[i] = -1
	}
	out := make([]int16, 160)
	inOrder = true
	prev, cur := -1, 0 // last sample place seen (packet·160 + j), current packet guess
	for _, e := range evs {
		now := int64(e.at * float64(time.Millisecond))
		if e.pkt >= 0 {
			h := rtpHeader{seq: uint16(e.pkt), ts: uint32(1000 + 160*e.pkt), ssrc: 1}
			p.putPCM(h, tagged(e.pkt), now)
			continue
		}
		p.get(now, out, nil)
		if onTick != nil {
			onTick(e.at)
		}
		for j, v := range out {
			if v == 0 {
				continue
			}
			id, jj := (int(v)-1)/16, (int(v)-1)%16*10
			i := cur + ((id-cur%2000)%2000+3000)%2000 - 1000 // nearest packet with this id
			if i < 0 || i >= len(arrive) {
				t.Fatalf("sample %d out of nowhere", v)
			}
			cur = i
			place := i*160 + jj
			if place < prev {
				inOrder = false
			}
			prev = place
			if jj == 0 && played[i] < 0 {
				played[i] = e.at + float64(j)/8
			}
		}
	}
	return played, inOrder
}

// PBX packets with ±30 ms of jitter (so often reordered) play out in
// order, continuously, never more than 40 ms after their jitter-free
// arrival. How much of the jitter 40 ms can absorb depends on where the
// PBX's packets fall between the pacer's ticks (the delay moves in whole
// frames, so that packets stay aligned with frames): with the ticks 17 ms
// after the packets' jitter-free arrival every packet is played (a delay
// of 37 ms); with 2 ms, packets more than 22 ms late are lost (about 13 %).
func TestPlayoutJitter(t *testing.T) {
	for _, tc := range []struct {
		tick0    float64 // first tick; packets' jitter-free arrivals are at 30 + 20·i
		wantMs   float64
		lostPart float64
	}{{7, 37, 0}, {12, 22, 0.15}, {17, 27, 0.08}, {2, 32, 0.02}} {
		p, c := newTestPlayout(t, pcmu)
		rng := rand.New(rand.NewPCG(1, 2))
		const n = 1500 // 30 s
		arrive := make([]float64, n)
		reordered := 0
		for i := range arrive {
			arrive[i] = float64(i)*20 + 30 + (rng.Float64()*60 - 30)
			if i > 0 && arrive[i] < arrive[i-1] {
				reordered++
			}
		}
		played, inOrder := playoutRun(t, p, arrive, tc.tick0, nil)
		if !inOrder {
			t.Fatal("output out of order")
		}
		var delays []float64
		lost := 0
		for i := 100; i < n; i++ { // past the first two seconds
			if played[i] < 0 {
				lost++
				continue
			}
			delays = append(delays, played[i]-(float64(i)*20+30))
		}
		slices.Sort(delays)
		st := c.snapshot()
		t.Logf("ticks at %v ms: %d reordered on the way; past 2 s: %d of %d not played; delay after the jitter-free arrival: %.1f-%.1f ms; %v",
			tc.tick0, reordered, lost, n-100, delays[0], delays[len(delays)-1], st)
		if reordered < 100 {
			t.Fatalf("only %d reordered: not the test meant", reordered)
		}
		if delays[0] != tc.wantMs || delays[len(delays)-1] != tc.wantMs {
			t.Fatalf("delay %.1f-%.1f ms, want %v", delays[0], delays[len(delays)-1], tc.wantMs)
		}
		if float64(lost) > tc.lostPart*float64(n-100) {
			t.Fatalf("%d of %d packets not played", lost, n-100)
		}
	}
}

// Packets a few places out of order within the delay are all played, in
// order; nothing is late.
func TestPlayoutReorder(t *testing.T) {
	p, c := newTestPlayout(t, pcmu)
	arrive := make([]float64, 40)
	for i := range arrive {
		arrive[i] = float64(i) * 20
		switch i % 5 {
		case 2: // comes 6 ms late, after the next one (which is 15 ms early)
			arrive[i] += 6
		case 3:
			arrive[i] -= 15
		}
	}
	played, inOrder := playoutRun(t, p, arrive, -10, nil)
	if !inOrder || slices.Contains(played, -1) {
		t.Fatalf("in order %v, played %v", inOrder, played)
	}
	if st := c.snapshot(); st.Late+st.Underruns != 0 {
		t.Fatalf("stats %v", st)
	}
}

// The delay grows with lateness and comes back down once the packets are
// steady again: at most 20 ms at first (here 1 ms: the PBX's packets come
// 1 ms before the pacer's ticks), a frame more while packets come late (up
// to 40 ms), back to where it was within some seconds after (by skipping
// quiet audio, or audio when none is quiet), all the while in order.
func TestPlayoutAdapts(t *testing.T) {
	p, c := newTestPlayout(t, pcmu)
	var arrive []float64
	for i := range 800 {
		a := float64(i) * 20
		if i >= 100 && i < 200 && i%7 == 0 {
			a += 35
		}
		arrive = append(arrive, a)
	}
	var at2s, most uint64
	played, inOrder := playoutRun(t, p, arrive, 1, func(ms float64) {
		d := c.playoutDelayMs.Load()
		if ms < 2000 {
			at2s = d
		}
		most = max(most, d)
	})
	st := c.snapshot()
	t.Logf("delay %d ms before the lateness, %d at most, %d at the end; %v", at2s, most, st.PlayoutDelayMs, st)
	if !inOrder || at2s > 2 || most < 19 || most > 23 || st.PlayoutDelayMs > 2 || st.CatchUps == 0 {
		t.Fatalf("in order %v, delay %d → %d → %d ms", inOrder, at2s, most, st.PlayoutDelayMs)
	}
	for i := 700; i < 800; i++ {
		if d := played[i] - arrive[i]; played[i] < 0 || d != 1 {
			t.Fatalf("packet %d: played %.1f ms after it came, want 1", i, d)
		}
	}
}

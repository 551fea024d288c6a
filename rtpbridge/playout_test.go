package rtpbridge

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

func newTestPlayout(t testing.TB, codec Codec) (*playout, *dirCounters) {
	t.Helper()
	s, err := newSetup(codec, 0, 0, defaultFrame, opusWA(t), nil)
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

// playoutSim is a run of PBX packets through a playout buffer on a
// simulated clock.
type playoutSim struct {
	arrive []float64 // packet i's arrival, ms; its timestamp says 20 ms after packet i-1
	// tick0 is when the pacer's first frame is due (ms); it runs the real
	// schedule from there, the buffer's shifts honoured.
	tick0  float64
	quiet  func(i int) bool // packets that carry silence (not looked for in the output)
	onTick func(ms float64)
}

// run plays the packets (PCM tagged(i), or in passthrough a 20 ms packet
// naming i), ticking until 200 ms after the last, and returns for each
// packet when its first sample was played (ms, -1 if never) and whether
// the output kept the packets' order.
func (s playoutSim) run(t *testing.T, p *playout) (played []float64, inOrder bool) {
	t.Helper()
	ns := func(ms float64) int64 { return int64(math.Round(ms * 1e6)) }
	order := make([]int, len(s.arrive))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return s.arrive[order[a]] < s.arrive[order[b]] })
	played = make([]float64, len(s.arrive))
	for i := range played {
		played[i] = -1
	}
	quiet := func(i int) bool { return s.quiet != nil && s.quiet(i) }
	silence := make([]int16, 160)
	out, pkt := make([]int16, 160), make([]byte, maxPacket)
	inOrder = true
	prev, cur := -1, 0 // last sample place seen (packet·160 + j), current packet guess
	var at float64     // the tick's time
	send := func(time.Duration) time.Duration {
		kind, n, _, _, shift := p.get(ns(at), out, pkt)
		if s.onTick != nil {
			s.onTick(at)
		}
		if p.packets {
			if kind == playPacket && n == 2 {
				i := int(pkt[0])<<8 | int(pkt[1])
				if i <= prev {
					inOrder = false
				}
				prev, played[i] = i, at
			}
			return shift
		}
		for j, v := range out {
			if v == 0 {
				continue
			}
			id, jj := (int(v)-1)/16, (int(v)-1)%16*10
			i := cur + ((id-cur%2000)%2000+3000)%2000 - 1000 // nearest packet with this id
			if i < 0 || i >= len(s.arrive) {
				t.Fatalf("sample %d out of nowhere", v)
			}
			cur = i
			place := i*160 + jj
			if place < prev {
				inOrder = false
			}
			prev = place
			if jj == 0 && played[i] < 0 {
				played[i] = at + float64(j)/8
			}
		}
		return shift
	}
	sched := schedule{start: time.Unix(0, ns(s.tick0)), period: 20 * time.Millisecond}
	last := slices.Max(s.arrive) + 200
	for k := 0; ; {
		next := float64(sched.next().UnixNano()) / 1e6
		if k < len(order) && s.arrive[order[k]] <= next {
			i := order[k]
			k++
			if p.packets {
				h := rtpHeader{seq: uint16(i), ts: uint32(1000 + 960*i), ssrc: 1}
				p.putPacket(h, []byte{byte(i >> 8), byte(i)}, 960, ns(s.arrive[i]))
				continue
			}
			h := rtpHeader{seq: uint16(i), ts: uint32(1000 + 160*i), ssrc: 1}
			pcm := tagged(i)
			if quiet(i) {
				pcm = silence
			}
			p.putPCM(h, pcm, ns(s.arrive[i]))
			continue
		}
		if next >= last {
			return played, inOrder
		}
		at = next
		sched.run(sched.next(), send, func(int64) { t.Fatal("the simulated pacer stalled") })
	}
}

// PBX packets with ±30 ms of jitter (so often reordered) play out in
// order, continuously, with a steady delay that covers the jitter within
// playMaxMs (in steps under a frame: whatever the ticks' phase against
// the packets at the start, the delay ends about the same).
func TestPlayoutJitter(t *testing.T) {
	for _, tick0 := range []float64{2, 7, 12, 17} { // packets' jitter-free arrivals are at 30 + 20·i
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
		played, inOrder := playoutSim{arrive: arrive, tick0: tick0}.run(t, p)
		if !inOrder {
			t.Fatal("output out of order")
		}
		var delays []float64
		lost := 0
		for i := 250; i < n; i++ { // past the first five seconds
			if played[i] < 0 {
				lost++
				continue
			}
			delays = append(delays, played[i]-(float64(i)*20+30))
		}
		slices.Sort(delays)
		st := c.snapshot()
		t.Logf("ticks from %v ms: %d reordered on the way; past 5 s: %d of %d not played; delay after the jitter-free arrival: %.1f-%.1f ms; %v",
			tick0, reordered, lost, n-250, delays[0], delays[len(delays)-1], st)
		if reordered < 100 {
			t.Fatalf("only %d reordered: not the test meant", reordered)
		}
		if lo, hi := delays[0], delays[len(delays)-1]; hi-lo > 2 || lo < 30 || hi > playMaxMs+1 {
			t.Fatalf("delay %.1f-%.1f ms, want one between 30 and %d ms", lo, hi, playMaxMs)
		}
		if float64(lost) > 0.005*float64(n-250) {
			t.Fatalf("%d of %d packets not played", lost, n-250)
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
		case 2: // comes 3 ms late (within the margin), after the next one (which is 18 ms early)
			arrive[i] += 3
		case 3:
			arrive[i] -= 18
		}
	}
	played, inOrder := playoutSim{arrive: arrive, tick0: -10}.run(t, p)
	if !inOrder || slices.Contains(played, -1) {
		t.Fatalf("in order %v, played %v", inOrder, played)
	}
	if st := c.snapshot(); st.Late+st.Underruns != 0 {
		t.Fatalf("stats %v", st)
	}
}

// Whatever the pacer's phase against the PBX's packets when they start
// (here 0.5 to 19.9 ms), every packet after the first is played the
// margin after it comes, in passthrough as in PCM: the ticks move (once)
// rather than the packets wait for them.
func TestPlayoutPicksPhase(t *testing.T) {
	for _, codec := range []Codec{pcmu, opusSIP} {
		for _, phase := range []float64{0.5, 3, playMarginMs, 9.5, 15, 19.875} {
			p, c := newTestPlayout(t, codec)
			arrive := make([]float64, 200)
			for i := range arrive {
				arrive[i] = float64(i) * 20
			}
			// The pacer started three frames before the PBX's first packet.
			played, inOrder := playoutSim{arrive: arrive, tick0: phase - 60}.run(t, p)
			if !inOrder || played[0] != phase {
				t.Fatalf("%s, phase %v ms: in order %v, the first packet played at %v ms", codec.Name, phase, inOrder, played[0])
			}
			for i := 1; i < len(arrive); i++ {
				if d := played[i] - arrive[i]; d != playMarginMs {
					t.Fatalf("%s, phase %v ms: packet %d played %v ms after it came, want %d", codec.Name, phase, i, d, playMarginMs)
				}
			}
			if st := c.snapshot(); st.Late+st.Underruns+st.CatchUps != 0 || st.PlayoutDelayMs != playMarginMs {
				t.Fatalf("%s, phase %v ms: stats %v", codec.Name, phase, st)
			}
		}
	}
}

// jitter is a one-sided arrival jitter (ms) with a long tail cut at most:
// exponential with the given mean, as a busy machine's queues give.
func jitter(rng *rand.Rand, mean, most float64) float64 { return min(rng.ExpFloat64()*mean, most) }

// The unlucky phase: the pacer ticks 0.5 ms after the PBX's jitter-free
// arrivals, and the packets come with up to 3 ms of jitter (p99 about
// 2.8 ms). Once the phase is picked and the first window has measured the
// jitter, the delay stays under a frame (the margin and the jitter seen),
// and no packet is ever late: no frame of delay is added, as it was when
// the buffer could only grow by frames.
func TestPlayoutUnluckyPhase(t *testing.T) {
	for _, codec := range []Codec{pcmu, opusSIP} {
		p, c := newTestPlayout(t, codec)
		rng := rand.New(rand.NewPCG(3, 4))
		const n = 1500 // 30 s
		arrive := make([]float64, n)
		over := 0
		for i := range arrive {
			j := jitter(rng, 0.6, 3)
			arrive[i] = float64(i)*20 + j
			if j > 0.5 {
				over++
			}
		}
		var most uint64
		played, inOrder := playoutSim{arrive: arrive, tick0: 0.5 - 60, onTick: func(float64) {
			most = max(most, c.playoutDelayMs.Load())
		}}.run(t, p)
		st := c.snapshot()
		var lo, hi float64 = 1e9, 0 // past the first second: delay after the jitter-free arrival
		for i := 50; i < n; i++ {
			d := played[i] - float64(i)*20
			lo, hi = min(lo, d), max(hi, d)
		}
		t.Logf("%s: %d packets would be late at the first phase; past 1 s the delay after the jitter-free arrival is %.2f-%.2f ms, at most %d ms on average; %v",
			codec.Name, over, lo, hi, most, st)
		if over < 100 {
			t.Fatalf("only %d packets more than 0.5 ms late: not the test meant", over)
		}
		if !inOrder || slices.Contains(played, -1) || st.Late+st.Underruns != 0 {
			t.Fatalf("%s: in order %v, some not played %v, stats %v", codec.Name, inOrder, slices.Contains(played, -1), st)
		}
		if lo < playMarginMs || hi > playMarginMs+3+0.5 || most >= 20 {
			t.Fatalf("%s: delay %.2f-%.2f ms (%d at most on average), want one between the margin and the margin and the jitter", codec.Name, lo, hi, most)
		}
	}
}

// A PBX clock 200 ppm slow or fast against ours (the packets come 4 µs
// later, or earlier, each: three frames in 5 minutes) with a little
// jitter, talking 3 s out of every 4. The slow one is followed by small
// delays of the ticks, the fast one by skipping a frame each time it has
// gained one (a quiet one if one comes in time): the delay stays between
// the margin and a frame more, no packet is late, and no audio is lost
// beyond a frame per skip.
func TestPlayoutDrift(t *testing.T) {
	for _, ppm := range []float64{200, -200} {
		p, c := newTestPlayout(t, pcmu)
		rng := rand.New(rand.NewPCG(5, 6))
		const n = 15000 // 5 min
		arrive := make([]float64, n)
		for i := range arrive {
			arrive[i] = float64(i)*20*(1+ppm/1e6) + jitter(rng, 0.3, 1.5)
		}
		quiet := func(i int) bool { return i%200 >= 150 }
		var lo, hi uint64 = math.MaxUint64, 0
		played, inOrder := playoutSim{arrive: arrive, tick0: 10 - 60, quiet: quiet, onTick: func(ms float64) {
			if ms > 2000 {
				d := c.playoutDelayMs.Load()
				lo, hi = min(lo, d), max(hi, d)
			}
		}}.run(t, p)
		st := c.snapshot()
		lost := 0
		for i := range played {
			if !quiet(i) && played[i] < 0 {
				lost++
			}
		}
		t.Logf("%+v ppm: delay %d-%d ms past 2 s, %d talking packets not played; %v", ppm, lo, hi, lost, st)
		if !inOrder || st.Late+st.Underruns != 0 || lo < playMarginMs-1 || hi > 20+playMarginMs+2 {
			t.Fatalf("%+v ppm: in order %v, delay %d-%d ms, stats %v", ppm, inOrder, lo, hi, st)
		}
		if ppm > 0 && st.CatchUps != 0 || ppm < 0 && (st.CatchUps < 2 || st.CatchUps > 4) || lost > int(st.CatchUps) {
			t.Fatalf("%+v ppm: %d frames skipped, %d talking packets lost", ppm, st.CatchUps, lost)
		}
	}
}

// The delay grows with lateness and comes back once the packets are steady
// again: the margin at first (the PBX's packets come 1 ms before the
// pacer's first ticks, which then move), what a packet 35 ms late needs
// while some are (up to 40 ms), and after some seconds back to the margin
// by earlier ticks, without skipping audio: the ticks end where the phase
// was picked. All the while in order.
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
	played, inOrder := playoutSim{arrive: arrive, tick0: 1, onTick: func(ms float64) {
		d := c.playoutDelayMs.Load()
		if ms < 2000 {
			at2s = d
		}
		most = max(most, d)
	}}.run(t, p)
	st := c.snapshot()
	t.Logf("delay %d ms before the lateness, %d at most, %d at the end; %v", at2s, most, st.PlayoutDelayMs, st)
	if !inOrder || at2s != playMarginMs || most < 35 || most > playMaxMs || st.CatchUps != 0 || p.moved > p.ms(1) ||
		st.PlayoutDelayMs+1 < playMarginMs || st.PlayoutDelayMs > playMarginMs {
		t.Fatalf("in order %v, delay %d → %d → %d ms, %d frames skipped", inOrder, at2s, most, st.PlayoutDelayMs, st.CatchUps)
	}
	for i := 650; i < 800; i++ {
		if d := played[i] - arrive[i]; played[i] < 0 || d != playMarginMs {
			t.Fatalf("packet %d: played %.1f ms after it came, want %d", i, d, playMarginMs)
		}
	}
}

// A stall holds two packets back and lets them through together, 21 and
// 1 ms after their ticks: the delay grows once, by what the first lacked
// and the margin, not again for the second, and comes back to the margin
// once the packets are steady.
func TestPlayoutStallGrowsOnce(t *testing.T) {
	p, c := newTestPlayout(t, pcmu)
	arrive := make([]float64, 800)
	for i := range arrive {
		arrive[i] = float64(i) * 20
	}
	arrive[100], arrive[101] = 2021+playMarginMs, 2021+playMarginMs // ticks at 2000 and 2020 + the margin
	var most uint64
	played, inOrder := playoutSim{arrive: arrive, tick0: playMarginMs - 60, onTick: func(float64) {
		most = max(most, c.playoutDelayMs.Load())
	}}.run(t, p)
	st := c.snapshot()
	t.Logf("delay at most %d ms; %v", most, st)
	if !inOrder || st.Late != 2 || played[100] >= 0 || played[101] >= 0 {
		t.Fatalf("in order %v, stats %v", inOrder, st)
	}
	if want := uint64(playMarginMs + 21 + playMarginMs); most < want-1 || most > want || st.PlayoutDelayMs > playMarginMs {
		t.Fatalf("delay at most %d ms, want %d; %d ms at the end", most, want, st.PlayoutDelayMs)
	}
	// The frame of growth goes again once it is not needed, skipping audio
	// (here none is quiet).
	lost := 0
	for i := 102; i < len(arrive); i++ {
		if played[i] < 0 {
			lost++
		}
	}
	if lost > int(st.CatchUps) {
		t.Fatalf("%d packets not played for %d frames skipped", lost, st.CatchUps)
	}
}

package rtpbridge

import (
	"math"
	"testing"

	"github.com/wagateway/wagateway/rtpbridge/audio"
)

// Whatever the PBX does, the stream toward WhatsApp goes on unbroken: one
// SSRC, sequence +1 and timestamp +960 every 20 ms, through talk, comfort
// noise and silence suppression, 35 s of hold with nothing at all, a
// resume with the old timestamps (not moved on over the hold), music on
// hold from another SSRC with timestamps of its own, and the first stream
// again. After each change the PBX's audio is heard again at once. (The
// clock is simulated: the test runs in well under a second.)
func TestSIPToWhatsAppHoldAndStreamChanges(t *testing.T) {
	b, _, wa := newDrivenBridge(t, pcmu)
	clock := simClock(b)
	pbx := newPBXSender(t, 0)
	var pkts [][]byte
	type segment struct {
		from, to int // pacer frames
		freq     float64
	}
	var segs []segment
	tone := func(freq float64, ms int) {
		pcm := make([]int16, 8*ms)
		audio.NewTone(freq, 8000, 9000).Fill(pcm)
		segs = append(segs, segment{from: len(pkts), to: len(pkts) + ms/20, freq: freq})
		pkts = append(pkts, pbx.audio(pcm)...)
	}
	nothing := func(ms int, advance bool) {
		for range ms / 20 {
			pkts = append(pkts, nil)
			if advance {
				pbx.ts += 160
			}
		}
	}
	tone(800, 1000)
	pkts = append(pkts, pbx.packet(ptComfortNoise, false, pbx.ts, []byte{60})) // CN, then silence suppression
	pbx.ts += 160
	nothing(2000, true)
	tone(800, 1000)
	nothing(35_000, false) // hold: the PBX's timestamps stand still
	tone(600, 1000)
	saved := *pbx
	pbx.ssrc, pbx.ts, pbx.seq = 0x3333, 0x7000_0000, 40_000 // music on hold
	tone(400, 2000)
	pbx.ssrc, pbx.seq = saved.ssrc, saved.seq
	pbx.ts = saved.ts + 2000*8 // the first stream, its clock having run on
	tone(1000, 1000)
	runPBX(b, clock, pkts, 0)

	out := unmarshal(t, wa.out)
	if len(out) != len(pkts) {
		t.Fatalf("%d packets toward WhatsApp in %d frames", len(out), len(pkts))
	}
	checkStream(t, out, 111, 0xfeed, 960, 0)
	pcm := decodeOpus(t, out, 8000)
	for _, s := range segs {
		// From 60 ms in (the playout delay and the codec's start) to the end.
		part := pcm[(s.from+3)*160 : s.to*160]
		f, purity := audio.DominantFrequency(part, 8000, 200, 3400, 10)
		if math.Abs(f-s.freq) > 10 || purity < 0.8 {
			t.Fatalf("frames %d-%d: %v Hz purity %.2f, want %v Hz", s.from, s.to, f, purity, s.freq)
		}
	}
	// Silence while the PBX was quiet.
	hold := segs[1].to + 50
	if lvl := audio.RMS(pcm[hold*160 : (hold+1000)*160]); lvl > -60 {
		t.Fatalf("hold at %.1f dBFS", lvl)
	}
	st := b.Stats().SIPToWhatsApp
	t.Logf("%v", st)
	if st.ComfortNoise != 1 || st.Overruns != 0 || st.PacerResyncs != 0 || st.SilenceFrames < 1750+100 {
		t.Fatalf("stats %v", st)
	}
}

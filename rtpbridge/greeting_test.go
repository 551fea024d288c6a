package rtpbridge

import (
	"math"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/audio"
)

// greeting is an IVR greeting: tones of 200 ms with 200 ms pauses, each
// tone a frequency of its own, in 20 ms PCMU packets.
func greeting(pbx *pbxSender, freqs ...float64) [][]byte {
	var pcm []int16
	for _, f := range freqs {
		tone := make([]int16, 1600)
		audio.NewTone(f, 8000, 9000).Fill(tone)
		pcm = append(pcm, tone...)
		pcm = append(pcm, make([]int16, 1600)...)
	}
	return pbx.audio(pcm)
}

// PBX audio that comes before the pacer starts (StartSIPReceive, then
// Start once WhatsApp accepted) is kept and played from its start; the
// delay it brings comes back down by skipping the greeting's pauses.
func TestGreetingBeforeStart(t *testing.T) {
	b, _, wa := newDrivenBridge(t, pcmu)
	clock := simClock(b)
	pbx := newPBXSender(t, 0)
	freqs := []float64{500, 700, 900, 1100, 1300, 1500}
	pkts := greeting(pbx, freqs...) // 2.4 s
	const early = 40                // 800 ms of it before Start
	for i, p := range pkts[:early] {
		*clock = int64(i) * int64(20*time.Millisecond)
		b.handleSIPPacket(p)
	}
	if len(wa.out) != 0 {
		t.Fatal("media toward WhatsApp before Start")
	}
	runPBXFrom(b, clock, pkts[early:], early, 60)
	out := unmarshal(t, wa.out)
	checkStream(t, out, 111, 0xfeed, 960, 0)
	pcm := decodeOpus(t, out, 8000)
	// Every tone is heard, in order, for at least 100 ms, the first one
	// from the first frames (the first is Opus's start-up).
	var heard []float64
	run, last := 0, 0.0
	for k := 0; k < len(pcm)/160; k++ {
		f, purity := audio.DominantFrequency(pcm[k*160:(k+1)*160], 8000, 200, 3400, 25)
		if purity < 0.8 || audio.RMS(pcm[k*160:(k+1)*160]) < -30 {
			f = 0
		}
		if f == last {
			run++
		} else {
			run, last = 1, f
		}
		if f != 0 && run == 5 {
			if len(heard) == 0 && k > 5 {
				t.Fatalf("the greeting starts at frame %d, want 0", k-4)
			}
			heard = append(heard, f)
		}
	}
	if len(heard) != len(freqs) {
		t.Fatalf("heard %v, want %v", heard, freqs)
	}
	for i, f := range heard {
		if math.Abs(f-freqs[i]) > 25 {
			t.Fatalf("heard %v, want %v", heard, freqs)
		}
	}
	st := b.Stats().SIPToWhatsApp
	t.Logf("%v", st)
	if st.CatchUps < early-2 || st.PlayoutDelayMs > 40 || st.Overruns+st.Late != 0 {
		t.Fatalf("stats %v", st)
	}
}

// runPBXFrom is runPBX starting at frame first, the packets before it
// already given.
func runPBXFrom(b *Bridge, clock *int64, pkts [][]byte, first, extra int) {
	const ms = int64(time.Millisecond)
	feed(b, clock, pkts, func(i int) int64 { return int64(first+i) * 20 * ms }, int64(first)*20*ms+5*ms, len(pkts)+extra)
}

// With goroutines: StartSIPReceive runs only the SIP reader and sends
// nothing toward WhatsApp; Start adds the WhatsApp reader and the pacing
// (on a media worker), whose first packets carry the greeting's start.
func TestStartSIPReceive(t *testing.T) {
	waitGoroutines(t, 0)
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu})
	if err != nil {
		t.Fatal(err)
	}
	b.StartSIPReceive()
	b.StartSIPReceive()
	waitGoroutines(t, 1)
	pbx := newPBXSender(t, 0)
	pkts := greeting(pbx, 500, 900)
	tick := time.NewTicker(20 * time.Millisecond)
	for _, p := range pkts[:15] { // 300 ms of it
		sipLeg.feed(p)
		<-tick.C
	}
	if got, _ := waLeg.written(); len(got) != 0 {
		t.Fatalf("%d packets toward WhatsApp before Start", len(got))
	}
	b.Start()
	waitGoroutines(t, 2)
	for _, p := range pkts[15:] {
		sipLeg.feed(p)
		<-tick.C
	}
	tick.Stop()
	got := waLeg.waitFor(t, 20, time.Second)
	waLeg.Close()
	sipLeg.Close()
	b.Close()
	waitGoroutines(t, 0)
	out := unmarshal(t, got)
	checkStream(t, out, 111, 0xfeed, 960, 0)
	pcm := decodeOpus(t, out, 8000)
	if f, purity := audio.DominantFrequency(pcm[:160*8], 8000, 200, 3400, 10); math.Abs(f-500) > 10 || purity < 0.8 {
		t.Fatalf("first 160 ms: %v Hz purity %.2f, want the greeting's 500 Hz", f, purity)
	}
	// (In real time a packet may come late now and then: the delay has
	// come down to a few ms by then.)
	if st := b.Stats().SIPToWhatsApp; st.PacketsIn != uint64(len(pkts)) || st.Overruns != 0 || st.Late > 3 {
		t.Fatalf("stats %v", st)
	}
}

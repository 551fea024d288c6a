package rtpbridge

import (
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// 30 ms G.711 packets of an 800 Hz tone reach WhatsApp as 20 ms Opus
// packets of the same tone: the reader and the pacer are driven by hand, on
// a simulated clock (SIP packets at 0, 30, 60… ms, pacer frames at 5, 25,
// 45… ms).
func TestSIPToWhatsAppTone(t *testing.T) {
	for _, codec := range []Codec{pcmu, {"PCMA", 8, 8000}} {
		t.Run(codec.Name, func(t *testing.T) {
			b, _, wa := newDrivenBridge(t, codec)
			const amp, totalMs = 10000, 1200
			in := g711Packets(t, codec.PayloadType, 800, amp, 30, totalMs/30)
			const ms = int64(time.Millisecond)
			feed(b, simClock(b), in, func(i int) int64 { return int64(i) * 30 * ms }, 5*ms, totalMs/20)
			pkts := unmarshal(t, wa.out)
			if len(pkts) != totalMs/20 {
				t.Fatalf("%d Opus packets, want %d", len(pkts), totalMs/20)
			}
			checkStream(t, pkts, 111, 0xfeed, 960, 0)
			pcm := decodeOpus(t, pkts, 8000)
			checkTone(t, pcm[len(pcm)/3:], 8000, 800, toneLevel(amp), 0.8)
			st := b.Stats().SIPToWhatsApp
			// The playout buffer starts with the first packet and 30 ms
			// packets against 20 ms frames starve it once (it then grows
			// its delay by what the packet lacked); after that it holds
			// enough.
			if st.SilenceFrames > 2 || st.PacketsIn != totalMs/30 || st.PacketsOut != totalMs/20 || st.Overruns != 0 || st.Lost != 0 {
				t.Fatalf("stats %v", st)
			}
		})
	}
}

// Each Opus packet toward WhatsApp holds exactly 20 ms at 48 kHz.
func TestSIPToWhatsAppOpusFrames(t *testing.T) {
	b, _, wa := newDrivenBridge(t, pcmu)
	for i := 0; i < 10; i++ {
		b.sendFrameToWhatsApp()
	}
	for i, p := range unmarshal(t, wa.out) {
		if n, err := opus.PacketSamples(p.Payload, 48000); err != nil || n != 960 {
			t.Fatalf("packet %d: %d samples at 48 kHz, %v", i, n, err)
		}
	}
}

// Comfort noise, telephone-events and unknown payload types add no audio;
// SIP-side loss, duplicates and a new SSRC are counted.
func TestSIPToWhatsAppOtherPackets(t *testing.T) {
	b, _, _ := newDrivenBridge(t, pcmu)
	in := g711Packets(t, 0, 800, 8000, 20, 10)
	b.handleSIPPacket(in[0])
	b.handleSIPPacket(in[0]) // duplicate
	b.handleSIPPacket(in[3]) // two lost
	mk := func(pt uint8, seq uint16, ssrc uint32, payload []byte) []byte {
		p, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc}, Payload: payload}).Marshal()
		return p
	}
	b.handleSIPPacket(mk(13, 104, 0x5195, []byte{40}))            // comfort noise
	b.handleSIPPacket(mk(101, 105, 0x5195, []byte{1, 0, 0, 160})) // telephone-event
	b.handleSIPPacket(mk(0, 106, 0x5195, nil))                    // empty
	b.handleSIPPacket([]byte{0x80, 0})                            // short
	b.handleSIPPacket(mk(0, 9, 0x1234, in[0][12:]))               // new SSRC
	st := b.Stats().SIPToWhatsApp
	_, mos := directionMOS(false, true, 0, 0, 20, 0)
	// Loss: 2 of 10 expected (8 in, 2 lost). No jitter: the new SSRC
	// started the estimate afresh.
	want := DirectionStats{PacketsIn: 8, Late: 1, Lost: 2, ComfortNoise: 1, OtherPT: 1, Malformed: 2, Resets: 1, PlayoutDelayMs: playMarginMs,
		LossPct: 20, MOS: round2(mos)}
	st.BytesIn = 0
	if st != want {
		t.Fatalf("stats\n%+v\nwant\n%+v", st, want)
	}
	if n := b.s2w.play.held(); n != 3*160 {
		t.Fatalf("%d samples buffered, want %d", n, 3*160)
	}
}

// Before the pacer starts (StartSIPReceive before Start) the playout buffer
// keeps the PBX's audio up to its bound (a second): beyond, the oldest goes
// and is counted.
func TestSIPToWhatsAppOverrun(t *testing.T) {
	b, _, _ := newDrivenBridge(t, pcmu)
	for _, p := range g711Packets(t, 0, 800, 8000, 20, 60) {
		b.handleSIPPacket(p)
	}
	if n := b.s2w.play.held(); n != 8000 {
		t.Fatalf("%d samples buffered, want 8000", n)
	}
	if st := b.Stats().SIPToWhatsApp; st.Overruns != 10 {
		t.Fatalf("overruns %d, want 10", st.Overruns)
	}
}

// With no SIP input at all the pacer still sends one packet every 20 ms
// (the WhatsApp client hangs up without media), all silence, one SSRC,
// sequence +1, timestamp +960.
func TestPacerWithoutSIPInput(t *testing.T) {
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xc0ffee, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b.Start()
	time.Sleep(500 * time.Millisecond)
	waLeg.Close()
	elapsed := time.Since(start)
	sipLeg.Close()
	b.Close()
	got, times := waLeg.written()
	want := int(elapsed/(20*time.Millisecond)) + 1
	t.Logf("%d packets in %v (expected %d)", len(got), elapsed, want)
	if len(got) < want-4 || len(got) > want+1 {
		t.Fatalf("%d packets in %v, want about %d", len(got), elapsed, want)
	}
	if times[0].Sub(start) > 10*time.Millisecond {
		t.Fatalf("first packet after %v, want at once", times[0].Sub(start))
	}
	pkts := unmarshal(t, got)
	checkStream(t, pkts, 111, 0xc0ffee, 960, 0)
	if lvl := audio.RMS(decodeOpus(t, pkts, 8000)); lvl > -80 {
		t.Fatalf("silence decodes to %.1f dBFS", lvl)
	}
	st := b.Stats().SIPToWhatsApp
	if st.PacketsOut != uint64(len(got)) || st.SilenceFrames != st.PacketsOut+st.WriteErrors {
		t.Fatalf("stats %v", st)
	}
}

// The whole SIP→WhatsApp path in real time: a PBX sending 30 ms PCMU
// packets on its own clock, the pacer on the bridge's.
func TestSIPToWhatsAppRealTime(t *testing.T) {
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xabc, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu})
	if err != nil {
		t.Fatal(err)
	}
	const amp = 12000
	in := g711Packets(t, 0, 800, amp, 30, 40) // 1.2 s
	b.Start()
	tick := time.NewTicker(30 * time.Millisecond)
	for _, p := range in {
		sipLeg.feed(p)
		<-tick.C
	}
	tick.Stop()
	got, _ := waLeg.written()
	waLeg.Close()
	sipLeg.Close()
	b.Close()
	pkts := unmarshal(t, got)
	checkStream(t, pkts, 111, 0xabc, 960, 0)
	if len(pkts) < 55 || len(pkts) > 63 {
		t.Fatalf("%d packets in 1.2 s, want about 61", len(pkts))
	}
	pcm := decodeOpus(t, pkts, 8000)
	checkTone(t, pcm[len(pcm)/4:len(pcm)*3/4], 8000, 800, toneLevel(amp), 0.8)
	st := b.Stats().SIPToWhatsApp
	t.Logf("stats %v", st)
	if st.PacketsIn != 40 || st.Overruns != 0 {
		t.Fatalf("stats %v", st)
	}
}

package rtpbridge

import (
	"math"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// pbxTone makes count 20 ms packets of a tone in codec c, continuing pbx's
// sequence and timestamps.
func pbxTone(t testing.TB, pbx *pbxSender, c Codec, freq float64, count int) [][]byte {
	var out [][]byte
	switch c.Name {
	case "PCMU", "PCMA":
		tone := audio.NewTone(freq, 8000, 9000)
		pcm := make([]int16, 160)
		for range count {
			tone.Fill(pcm)
			payload := make([]byte, 160)
			if c.Name == "PCMA" {
				g711.EncodeAlaw(pcm, payload)
			} else {
				g711.EncodeUlaw(pcm, payload)
			}
			out = append(out, pbx.packet(c.PayloadType, false, pbx.ts, payload))
			pbx.ts += 160
		}
	case "G722":
		for _, p := range g722Packets(t, freq, 9000, count) {
			out = append(out, pbx.packet(c.PayloadType, false, pbx.ts, p[12:]))
			pbx.ts += 160
		}
	case "opus":
		src := newWhatsAppSender(t, freq, 9000, 20, true)
		for range count {
			out = append(out, pbx.packet(c.PayloadType, false, pbx.ts, src.next()[12:]))
			pbx.ts += 960
		}
	}
	return out
}

// The PBX changes codec in mid-call (re-INVITEs): PCMU → G.722 → Opus →
// PCMA, the telephone-event payload type changing too. Toward WhatsApp the
// stream never breaks (one SSRC, sequence +1, timestamp +960) and carries
// each codec's audio; toward the PBX each stretch is in the codec in force,
// in one SSRC and sequence, with the marker bit at each change, and
// carries WhatsApp's tone.
func TestSetSIPCodecMidCall(t *testing.T) {
	b, sip, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPSSRC: 0x51b, WhatsAppSSRC: 0xfeed, SIPDTMFPayloadType: 101})
	clock := simClock(b)
	pbx := newPBXSender(t, 101)
	src := newWhatsAppSender(t, 1000, 9000, 20, true)
	steps := []struct {
		codec Codec
		dtmf  uint8
		freq  float64
	}{{pcmu, 101, 800}, {g722Codec, 101, 600}, {opusSIP, 101, 400}, {Codec{"PCMA", 8, 8000}, 96, 1200}}
	frame := 0
	var bounds []int // first frame of each step
	for _, s := range steps {
		if err := b.SetSIPCodec(s.codec, s.dtmf); err != nil {
			t.Fatal(err)
		}
		bounds = append(bounds, frame)
		for _, p := range pbxTone(t, pbx, s.codec, s.freq, 50) {
			*clock = int64(frame) * int64(20*time.Millisecond)
			b.handleWhatsAppPacket(src.next())
			b.handleSIPPacket(p)
			*clock += int64(5 * time.Millisecond)
			b.sendFrameToWhatsApp()
			frame++
		}
	}
	if got := b.String(); got != "whatsapp opus/48000 → reorder 60ms → telephone-event → rfc4733/96 → opus decode 8k (fec/plc) → 20ms frames → pcma encode → sip"+
		" | sip pcma/8000 → pcma decode → playout 6-40ms → opus encode 8k (20ms pacer) → rfc4733/96 → telephone-event 126 → whatsapp" {
		t.Fatalf("chain %s", got)
	}

	// Toward WhatsApp: unbroken, each stretch the PBX's tone.
	out := unmarshal(t, wa.out)
	checkStream(t, out, 111, 0xfeed, 960, 0)
	pcm := decodeOpus(t, out, 16000)
	for i, s := range steps {
		part := pcm[(bounds[i]+5)*320 : (bounds[i]+45)*320]
		f, purity := audio.DominantFrequency(part, 16000, 200, 3400, 10)
		t.Logf("toward WhatsApp with %s: %v Hz, purity %.2f", s.codec.Name, f, purity)
		if math.Abs(f-s.freq) > 10 || purity < 0.7 {
			t.Fatalf("toward WhatsApp with %s: %v Hz purity %.2f, want %v Hz", s.codec.Name, f, purity, s.freq)
		}
	}

	// Toward the PBX: stretches by payload type, one SSRC and sequence.
	toPBX := unmarshal(t, sip.out)
	var stretches [][]rtp.Packet
	for i, p := range toPBX {
		if p.SSRC != 0x51b || i > 0 && p.SequenceNumber != toPBX[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: %+v", i, p.Header)
		}
		if i == 0 || p.PayloadType != toPBX[i-1].PayloadType {
			if !p.Marker {
				t.Fatalf("packet %d: a new codec without the marker bit", i)
			}
			stretches = append(stretches, nil)
		}
		stretches[len(stretches)-1] = append(stretches[len(stretches)-1], p)
	}
	if len(stretches) != len(steps) {
		t.Fatalf("%d stretches toward the PBX, want %d", len(stretches), len(steps))
	}
	for i, s := range steps {
		ps := stretches[i]
		if ps[0].PayloadType != s.codec.PayloadType {
			t.Fatalf("stretch %d: payload type %d, want %d", i, ps[0].PayloadType, s.codec.PayloadType)
		}
		var pcm []int16
		rate := 8000
		switch s.codec.Name {
		case "PCMU":
			pcm = decodeG711(ps, false)
		case "PCMA":
			pcm = decodeG711(ps, true)
		case "G722":
			pcm, rate = decodeG722(ps), 16000
		case "opus":
			pcm, rate = decodeOpus(t, ps, 16000), 16000
		}
		part := pcm[len(pcm)/4 : len(pcm)*3/4]
		f, purity := audio.DominantFrequency(part, rate, 200, 3400, 10)
		t.Logf("toward the PBX in %s: %d packets, %v Hz, purity %.2f", s.codec.Name, len(ps), f, purity)
		if math.Abs(f-1000) > 10 || purity < 0.7 {
			t.Fatalf("toward the PBX in %s: %v Hz purity %.2f", s.codec.Name, f, purity)
		}
	}
	for _, st := range []DirectionStats{b.Stats().WhatsAppToSIP, b.Stats().SIPToWhatsApp} {
		if st.Malformed+st.OtherPT+st.Late+st.EncodeErrors != 0 {
			t.Fatalf("stats %v", st)
		}
	}
	// Setting what is in force changes nothing; a bad codec changes nothing.
	n := len(b.setups)
	if err := b.SetSIPCodec(Codec{"pcma", 8, 0}, 96); err != nil || len(b.setups) != n {
		t.Fatalf("same setup: %v, %d setups", err, len(b.setups))
	}
	if err := b.SetSIPCodec(Codec{"G729", 18, 8000}, 96); err == nil || b.setup.Load().codec.name != "pcma" {
		t.Fatalf("G.729: %v", err)
	}
	b.Close()
	if err := b.SetSIPCodec(pcmu, 0); err == nil {
		t.Fatal("closed bridge took a codec")
	}
}

// SetSIPCodec, String, Stats and the digit queues are safe while the
// bridge runs (go test -race).
func TestSetSIPCodecWhileRunning(t *testing.T) {
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu, SIPDTMFPayloadType: 101})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	pbx := newPBXSender(t, 101)
	src := newWhatsAppSender(t, 1000, 9000, 20, true)
	codecs := []Codec{g722Codec, opusSIP, pcmu}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 15 {
			c := codecs[i%len(codecs)]
			if err := b.SetSIPCodec(c, 101); err != nil {
				t.Error(err)
				return
			}
			_ = b.String()
			_ = b.Stats()
			_ = b.SendDigitToSIP('1', 40*time.Millisecond)
			_ = b.SendDigitToWhatsApp('2', 40*time.Millisecond)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for i := range 30 {
		waLeg.feed(src.next())
		for _, p := range pbxTone(t, pbx, codecs[i%len(codecs)], 500, 1) {
			sipLeg.feed(p)
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-done
	got := waLeg.waitFor(t, 10, time.Second)
	waLeg.Close()
	sipLeg.Close()
	b.Close()
	out := unmarshal(t, got)
	for i, p := range out {
		if p.SSRC != 0xfeed || i > 0 && p.SequenceNumber != out[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: %+v", i, p.Header)
		}
	}
}

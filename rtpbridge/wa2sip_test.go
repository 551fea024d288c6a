package rtpbridge

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// newDrivenBridge makes a bridge whose per-packet methods the test calls
// itself: no goroutines, writers that record.
func newDrivenBridge(t testing.TB, codec Codec) (b *Bridge, sip, wa *recorder) {
	t.Helper()
	sip, wa = &recorder{}, &recorder{}
	never := nullReader{closed: make(chan struct{})}
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: never, WhatsAppOut: wa, WhatsAppSSRC: 0xfeed, SIPIn: never, SIPOut: sip, SIPCodec: codec, SIPSSRC: 0x51b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, sip, wa
}

var pcmu = Codec{"PCMU", 0, 8000}

// WhatsApp's Opus at 48 kHz, in 10/20/40/60 ms packets, reaches the PBX as
// a continuous 20 ms G.711 stream of the same tone at the same level.
func TestWhatsAppToSIPTone(t *testing.T) {
	for _, codec := range []Codec{pcmu, {"PCMA", 8, 8000}} {
		for _, frameMs := range []int{10, 20, 40, 60} {
			t.Run(fmt.Sprintf("%s/%dms", codec.Name, frameMs), func(t *testing.T) {
				waLeg, sipLeg := newMemLeg(), newMemLeg()
				b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed,
					SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: codec})
				if err != nil {
					t.Fatal(err)
				}
				b.Start()
				const amp = 10000
				src := newWhatsAppSender(t, 1000, amp, frameMs, true)
				const totalMs = 1200
				for i := 0; i < totalMs/frameMs; i++ {
					waLeg.feed(src.next())
				}
				got := sipLeg.waitFor(t, totalMs/20, 5*time.Second)
				waLeg.Close()
				sipLeg.Close()
				b.Close()
				if len(got) != totalMs/20 {
					t.Fatalf("%d G.711 packets, want %d", len(got), totalMs/20)
				}
				pkts := unmarshal(t, got)
				checkStream(t, pkts, codec.PayloadType, pkts[0].SSRC, 160, 160)
				if pkts[0].SSRC == 0xfeed || pkts[0].SSRC == 0 {
					t.Fatalf("SIP SSRC %#x", pkts[0].SSRC)
				}
				pcm := decodeG711(pkts[5:], codec.PayloadType == 8) // past the codec's start-up
				checkTone(t, pcm, 8000, 1000, toneLevel(amp), 0.8)
				st := b.Stats().WhatsAppToSIP
				if st.PacketsIn != uint64(totalMs/frameMs) || st.PacketsOut != uint64(totalMs/20) || st.Lost != 0 || st.Malformed != 0 {
					t.Fatalf("stats %v", st)
				}
			})
		}
	}
}

// Duplicates and packets older than the last one are dropped and counted;
// the output stays one packet per 20 ms.
func TestWhatsAppLateAndDuplicate(t *testing.T) {
	b, sip, _ := newDrivenBridge(t, pcmu)
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	var pkts [][]byte
	for i := 0; i < 10; i++ {
		pkts = append(pkts, src.next())
	}
	for i, p := range pkts {
		b.handleWhatsAppPacket(p)
		if i == 5 {
			b.handleWhatsAppPacket(p)       // duplicate
			b.handleWhatsAppPacket(pkts[2]) // old
		}
	}
	st := b.Stats().WhatsAppToSIP
	if st.Late != 2 || st.Lost != 0 || st.PacketsOut != 10 || len(sip.out) != 10 {
		t.Fatalf("late %d lost %d out %d (%d written), want 2, 0, 10", st.Late, st.Lost, st.PacketsOut, len(sip.out))
	}
	checkStream(t, unmarshal(t, sip.out), 0, 0x51b, 160, 160)
}

// A pause in WhatsApp's stream with contiguous sequence numbers (DTX, or
// telephone-events in place of audio) becomes a timestamp jump of the same
// length with the marker bit, not concealment.
func TestWhatsAppPauseAndTelephoneEvents(t *testing.T) {
	b, sip, _ := newDrivenBridge(t, pcmu)
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for i := 0; i < 5; i++ {
		b.handleWhatsAppPacket(src.next())
	}
	// Five telephone-event packets take the next sequence numbers, 100 ms.
	for i := 0; i < 5; i++ {
		ev := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 126, SequenceNumber: src.seq, Timestamp: src.ts, SSRC: src.ssrc, Marker: i == 0},
			Payload: []byte{5, 0x0a, 0, byte(160 * (i + 1))}}
		raw, _ := ev.Marshal()
		b.handleWhatsAppPacket(raw)
		src.seq++
	}
	src.ts += 5 * 960
	for i := 0; i < 5; i++ {
		b.handleWhatsAppPacket(src.next())
	}
	// Then a DTX-like pause: one second without packets, sequence contiguous.
	src.ts += 50 * 960
	for i := 0; i < 5; i++ {
		b.handleWhatsAppPacket(src.next())
	}
	st := b.Stats().WhatsAppToSIP
	if st.TelephoneEvents != 5 || st.Lost != 0 || st.Concealed != 0 || st.Discontinuities != 2 || st.PacketsOut != 15 {
		t.Fatalf("stats %v, discontinuities %d", st, st.Discontinuities)
	}
	pkts := unmarshal(t, sip.out)
	for i, p := range pkts {
		wantTS := uint32(160)
		switch i {
		case 5:
			wantTS = 160 + 5*160
		case 10:
			wantTS = 160 + 50*160
		}
		if p.Marker != (i == 0 || i == 5 || i == 10) {
			t.Fatalf("packet %d: marker %v", i, p.Marker)
		}
		if i > 0 && (p.SequenceNumber != pkts[i-1].SequenceNumber+1 || p.Timestamp-pkts[i-1].Timestamp != wantTS) {
			t.Fatalf("packet %d: seq %d ts %+d, want +1 +%d", i, p.SequenceNumber-pkts[i-1].SequenceNumber, p.Timestamp-pkts[i-1].Timestamp, wantTS)
		}
	}
}

// A new SSRC, and a gap too long to conceal, restart the stream: marker
// bit, the sequence stays contiguous toward the PBX, the timestamp jumps
// over a long gap, and nothing is concealed.
func TestWhatsAppRestarts(t *testing.T) {
	b, sip, _ := newDrivenBridge(t, pcmu)
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for i := 0; i < 5; i++ {
		b.handleWhatsAppPacket(src.next())
	}
	src.ssrc, src.seq, src.ts = 0x777, 1, 12345
	for i := 0; i < 5; i++ {
		b.handleWhatsAppPacket(src.next())
	}
	for i := 0; i < 10; i++ { // 200 ms lost
		src.next()
	}
	for i := 0; i < 5; i++ {
		b.handleWhatsAppPacket(src.next())
	}
	st := b.Stats().WhatsAppToSIP
	if st.Resets != 2 || st.Lost != 10 || st.Concealed != 0 || st.FECRecovered != 0 || st.PacketsOut != 15 {
		t.Fatalf("stats %v", st)
	}
	pkts := unmarshal(t, sip.out)
	for i, p := range pkts {
		if p.Marker != (i == 0 || i == 5 || i == 10) {
			t.Fatalf("packet %d: marker %v", i, p.Marker)
		}
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence gap", i)
		}
	}
	if d := pkts[10].Timestamp - pkts[9].Timestamp; d != 11*160 {
		t.Fatalf("timestamp jump over 200 ms lost: %d, want %d", d, 11*160)
	}
}

// Opus packets shorter than 20 ms that leave half a frame behind before a
// pause: the half frame goes out padded, nothing is lost or delayed.
func TestWhatsAppPartialFrameFlushedAtPause(t *testing.T) {
	b, sip, _ := newDrivenBridge(t, pcmu)
	src := newWhatsAppSender(t, 1000, 8000, 10, false)
	for i := 0; i < 5; i++ { // 50 ms: two frames and a half
		b.handleWhatsAppPacket(src.next())
	}
	if len(sip.out) != 2 {
		t.Fatalf("%d packets after 50 ms, want 2", len(sip.out))
	}
	src.ts += 480 * 10 // 100 ms pause
	b.handleWhatsAppPacket(src.next())
	b.handleWhatsAppPacket(src.next())
	pkts := unmarshal(t, sip.out)
	if len(pkts) != 4 || !pkts[3].Marker || pkts[2].Marker {
		t.Fatalf("%d packets, markers %v %v", len(pkts), pkts[2].Marker, len(pkts) > 3 && pkts[3].Marker)
	}
	// The padded frame holds 10 ms of tone then 10 ms of silence; the next
	// one starts 100 ms of pause after the tone ended.
	if d := pkts[3].Timestamp - pkts[2].Timestamp; d != 160+800-80 {
		t.Fatalf("timestamp step %d, want %d", d, 160+800-80)
	}
	tail := pkts[2].Payload[80:]
	for _, v := range tail {
		if v != 0xff { // μ-law silence
			t.Fatalf("padding is not silence: % x", tail)
		}
	}
}

// Every way an Opus/RTP packet can be broken is counted, never fatal.
func TestWhatsAppGarbage(t *testing.T) {
	b, sip, _ := newDrivenBridge(t, pcmu)
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	good := src.next()
	hdr := func(mod func([]byte) []byte) []byte { return mod(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":          {},
		"short":          good[:7],
		"header only":    good[:12],
		"version 1":      hdr(func(p []byte) []byte { p[0] = 0x40 | p[0]&0x3f; return p }),
		"version 0":      hdr(func(p []byte) []byte { p[0] &= 0x3f; return p }),
		"15 csrc, short": hdr(func(p []byte) []byte { p[0] |= 0x0f; return p[:40] }),
		"extension past end": hdr(func(p []byte) []byte {
			p[0] |= 0x10
			binary.BigEndian.PutUint16(p[14:], 0xffff)
			return p
		}),
		"extension header cut": hdr(func(p []byte) []byte { p[0] |= 0x10; return p[:14] }),
		"padding 0":            hdr(func(p []byte) []byte { p[0] |= 0x20; p[len(p)-1] = 0; return p }),
		"padding past start":   hdr(func(p []byte) []byte { p[0] |= 0x20; p[len(p)-1] = 255; return p }),
		"opus code 3 no frames": hdr(func(p []byte) []byte {
			return append(p[:12], 0x0b, 0x00)
		}),
		"opus 240 ms": hdr(func(p []byte) []byte { return append(p[:12], 0x1b, 0x0c, 1, 2, 3) }),
	}
	for name, p := range cases {
		before := b.Stats().WhatsAppToSIP.Malformed
		b.handleWhatsAppPacket(p)
		if after := b.Stats().WhatsAppToSIP.Malformed; after != before+1 {
			t.Errorf("%s: malformed %d → %d", name, before, after)
		}
	}
	if len(sip.out) != 0 {
		t.Fatalf("garbage produced %d packets", len(sip.out))
	}
	// Packets whose TOC is sound but whose frames are not: libopus refuses
	// some (counted malformed, concealed), decodes others to noise; either
	// way the stream keeps one packet per 20 ms.
	b.handleWhatsAppPacket(good)
	withPayload := func(payload ...byte) []byte { return append(src.next()[:12], payload...) }
	noise := src.next()
	for i := 13; i < len(noise); i++ {
		noise[i] = 0xff
	}
	b.handleWhatsAppPacket(noise)
	// Both claim two 20 ms frames: 40 ms is concealed for each.
	b.handleWhatsAppPacket(withPayload(0x09, 1, 2, 3))          // code 1, odd length after the TOC
	b.handleWhatsAppPacket(withPayload(0x0a, 0xff, 0xff, 1, 2)) // code 2, first frame longer than the packet
	b.handleWhatsAppPacket(src.next())
	if len(sip.out) != 1+1+2+2+1 {
		t.Fatalf("%d packets, want 7", len(sip.out))
	}
	if st := b.Stats().WhatsAppToSIP; st.Malformed < uint64(len(cases))+2 || st.Concealed < 2 {
		t.Fatalf("malformed %d, concealed %d", st.Malformed, st.Concealed)
	}
	checkStream(t, unmarshal(t, sip.out), 0, 0x51b, 160, 160)
	// Other payload types are counted and ignored.
	other := hdr(func(p []byte) []byte { p[1] = 96; return p })
	b.handleWhatsAppPacket(other)
	if st := b.Stats().WhatsAppToSIP; st.OtherPT != 1 {
		t.Fatalf("other pt %d", st.OtherPT)
	}
}

package rtpbridge

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/g711"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// One op = one 20 ms frame. Each direction is measured through the bridge
// (RTP parse, sequence check, codecs, framing, RTP marshal, a discarding
// writer) and beside it bare libopus on the same frames, so the bridge's own
// cost is the difference.

const benchFrames = 50 // one second of distinct frames, played in a loop

// whatsAppFrames returns a second of 20 ms RTP packets as WhatsApp sends
// them (Opus from 48 kHz, ~24 kbit/s, FEC, a speech-like modulated tone).
func whatsAppFrames(b testing.TB) [][]byte {
	src := newWhatsAppSender(b, 1000, 9000, 20, true)
	src.depth = 0.45
	pkts := make([][]byte, benchFrames)
	for i := range pkts {
		pkts[i] = src.next()
	}
	return pkts
}

// sipFrames returns a second of 20 ms PCMU packets and their PCM.
func sipFrames(b testing.TB) (pkts [][]byte, pcm [][]int16) {
	pkts = g711Packets(b, 0, 800, 9000, 20, benchFrames)
	for _, p := range pkts {
		s := make([]int16, 160)
		g711.DecodeUlaw(p[rtpHeaderLen:], s)
		pcm = append(pcm, s)
	}
	return pkts, pcm
}

// restamp gives a looped packet the sequence number and timestamp of op i,
// so the bridge sees one endless in-order stream.
func restamp(p []byte, i int, tsStep uint32) {
	binary.BigEndian.PutUint16(p[2:], uint16(i))
	binary.BigEndian.PutUint32(p[4:], uint32(i)*tsStep)
}

func newBenchBridge(b *testing.B) *Bridge {
	never := nullReader{closed: make(chan struct{})}
	br, err := New(Config{WhatsAppIn: never, WhatsAppOut: discard{}, WhatsAppSSRC: 1, SIPIn: never, SIPOut: discard{}, SIPCodec: pcmu, OpusComplexity: DefaultOpusComplexity})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(br.Close)
	return br
}

// One 20 ms Opus packet from WhatsApp → one PCMU packet to the PBX.
func BenchmarkWhatsAppToSIP(b *testing.B) {
	pkts := whatsAppFrames(b)
	br := newBenchBridge(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := pkts[i%benchFrames]
		restamp(p, i, 960)
		br.handleWhatsAppPacket(p)
		i++
	}
	if st := br.Stats().WhatsAppToSIP; st.PacketsOut != st.PacketsIn || st.Lost+st.Late+st.Malformed != 0 {
		b.Fatalf("stats %v", st)
	}
}

// Bare libopus: the same packets decoded at 8 kHz.
func BenchmarkWhatsAppToSIPBareLibopus(b *testing.B) {
	pkts := whatsAppFrames(b)
	dec, err := opus.NewDecoder(8000)
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	pcm := make([]int16, 160)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := dec.Decode(pkts[i%benchFrames][rtpHeaderLen:], pcm); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// One 20 ms PCMU packet from the PBX in, one pacer frame (Opus packet) out.
func BenchmarkSIPToWhatsApp(b *testing.B) {
	pkts, _ := sipFrames(b)
	br := newBenchBridge(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := pkts[i%benchFrames]
		restamp(p, i, 160)
		br.handleSIPPacket(p)
		br.sendFrameToWhatsApp()
		i++
	}
	if st := br.Stats().SIPToWhatsApp; st.PacketsOut != st.PacketsIn || st.SilenceFrames+st.Overruns+st.Lost != 0 {
		b.Fatalf("stats %v", st)
	}
}

// Bare libopus: the same PCM encoded at 8 kHz with the bridge's settings.
func BenchmarkSIPToWhatsAppBareLibopus(b *testing.B) {
	_, pcm := sipFrames(b)
	enc, err := newOpusEncoder(8000, DefaultOpusComplexity)
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	out := make([]byte, maxPacket)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := enc.Encode(pcm[i%benchFrames], out); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// The hot paths allocate nothing per packet, on the plain path and on the
// loss, reordering, pause and garbage paths alike.
func TestHotPathsDoNotAllocate(t *testing.T) {
	br, _, _ := newDrivenBridge(t, pcmu)
	br.w2s.out.w, br.s2w.out.w = discard{}, discard{}
	wa := whatsAppFrames(t)
	sip, _ := sipFrames(t)
	src10 := newWhatsAppSender(t, 1000, 9000, 10, true)
	short := make([][]byte, 4)
	for i := range short {
		short[i] = src10.next()
	}
	garbage := [][]byte{nil, {0x80}, wa[0][:12], {0x9f, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	i := 0
	step := func() {
		p := wa[i%benchFrames]
		switch i % 10 {
		case 3: // lose one: FEC or concealment on the next
			i++
			p = wa[i%benchFrames]
		case 6: // a duplicate
			br.handleWhatsAppPacket(p)
		case 8: // a pause: the timestamp jumps 200 ms
			restamp(p, i, 960)
			binary.BigEndian.PutUint32(p[4:], uint32(i+10)*960)
			br.handleWhatsAppPacket(p)
			i++
			return
		}
		restamp(p, i, 960)
		br.handleWhatsAppPacket(p)
		br.handleWhatsAppPacket(garbage[i%len(garbage)])
		q := sip[i%benchFrames]
		restamp(q, i, 160)
		br.handleSIPPacket(q)
		br.handleSIPPacket(garbage[i%len(garbage)])
		br.sendFrameToWhatsApp()
		br.sendFrameToWhatsApp() // one more than the input: silence
		i++
	}
	for range 100 { // warm up
		step()
	}
	if n := testing.AllocsPerRun(500, step); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
	st := br.Stats()
	if w := st.WhatsAppToSIP; w.FECRecovered+w.Concealed == 0 || w.Late == 0 || w.Discontinuities == 0 || w.Malformed == 0 {
		t.Fatalf("not every path was taken: %v", w)
	}
	if s := st.SIPToWhatsApp; s.SilenceFrames == 0 || s.Malformed == 0 {
		t.Fatalf("not every path was taken: %v", s)
	}
	// 10 ms packets: two per frame.
	br2, _, _ := newDrivenBridge(t, pcmu)
	br2.w2s.out.w = discard{}
	j := 0
	if n := testing.AllocsPerRun(200, func() {
		p := short[j%4]
		restamp(p, j, 480)
		br2.handleWhatsAppPacket(p)
		j++
	}); n != 0 {
		t.Fatalf("%v allocations per 10 ms packet", n)
	}
}

// allocScript is a call's worth of packets both ways, with every new path
// in it: digits each way (whole, with lost starts, ends only), reordering,
// loss, comfort noise, a new PBX SSRC, and silence from the PBX.
type allocScript struct {
	wa, sip [][]byte // one of each per 20 ms frame (nil: nothing then)
}

func newAllocScript(t *testing.T, c Codec, dtmfPT uint8, inband bool) allocScript {
	var s allocScript
	src := newWhatsAppSender(t, 1000, 9000, 20, true)
	src.depth = 0.45
	pbx := newPBXSender(t, dtmfPT)
	if c.Name == "opus" {
		pbx.frame = 960
	}
	for round := 0; len(s.wa) < 700; round++ {
		for range 20 {
			s.wa = append(s.wa, src.next())
		}
		var keep func(int) bool
		switch round % 3 {
		case 1:
			keep = func(i int) bool { return i >= 2 }
		case 2:
			keep = func(i int) bool { return i >= 5 }
		}
		s.wa = append(s.wa, src.digit(rune('0'+round%10), 100*time.Millisecond, keep)...)
		n := len(s.wa)
		s.wa[n-12], s.wa[n-13] = s.wa[n-13], s.wa[n-12] // reordered
		s.wa[n-16] = nil                                // lost
	}
	for round := 0; len(s.sip) < 700; round++ {
		s.sip = append(s.sip, pbxTone(t, pbx, c, 700, 20)...)
		switch {
		case inband:
			s.sip = append(s.sip, pbx.audio(toneSequence(string(rune('0'+round%10)), 8000, 100*time.Millisecond, 60*time.Millisecond))...)
		case dtmfPT != 0:
			s.sip = append(s.sip, pbx.digit(rune('0'+round%10), 100*time.Millisecond, nil)...)
		}
		if round%4 == 1 && c.Name != "opus" {
			s.sip = append(s.sip, pbx.packet(ptComfortNoise, false, pbx.ts, []byte{50}), nil, nil)
			pbx.ts += 3 * 160
		}
		if round%5 == 4 {
			pbx.ssrc++
		}
		n := len(s.sip)
		s.sip[n-3], s.sip[n-4] = s.sip[n-4], s.sip[n-3]
	}
	return s
}

// The new paths allocate nothing per packet either: digits both ways
// (events and tones), G.722, Opus passthrough, the reorder window and the
// playout buffer.
func TestNewHotPathsDoNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codec  Codec
		dtmfPT uint8
		mode   string
	}{
		{"pcmu/rfc4733", pcmu, 101, ""},
		{"pcmu/inband", pcmu, 0, DTMFModeInband},
		{"g722/rfc4733", g722Codec, 101, ""},
		{"opus/rfc4733", opusSIP, 101, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			digits := 0
			b, _, _ := newDrivenBridgeWith(t, Config{SIPCodec: tc.codec, SIPDTMFPayloadType: tc.dtmfPT, DTMFMode: tc.mode, OnDigit: func(string, rune) { digits++ }})
			b.w2s.out.w, b.s2w.out.w = discard{}, discard{}
			clock := simClock(b)
			s := newAllocScript(t, tc.codec, tc.dtmfPT, tc.mode == DTMFModeInband)
			i := 0
			step := func() {
				*clock = int64(i) * int64(20*time.Millisecond)
				if p := s.wa[i]; p != nil {
					b.handleWhatsAppPacket(p)
				}
				if p := s.sip[i]; p != nil {
					b.handleSIPPacket(p)
				}
				*clock += int64(5 * time.Millisecond)
				b.sendFrameToWhatsApp()
				i++
			}
			for range 100 {
				step()
			}
			if n := testing.AllocsPerRun(550, step); n != 0 {
				t.Fatalf("%v allocations per frame", n)
			}
			st := b.Stats()
			w, x := st.WhatsAppToSIP, st.SIPToWhatsApp
			t.Logf("whatsapp→sip: %v", w)
			t.Logf("sip→whatsapp: %v", x)
			if w.DigitsSent < 20 || x.DigitsSent < 20 || w.Reordered == 0 || w.Lost == 0 || x.Resets == 0 || digits != int(w.Digits+x.Digits) {
				t.Fatal("not every path was taken")
			}
			if tc.codec.Name != "opus" && (x.ComfortNoise == 0 || w.FECRecovered+w.Concealed == 0) {
				t.Fatal("not every path was taken")
			}
		})
	}
}

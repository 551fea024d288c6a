package rtpbridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/audio"
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

func newBenchBridge(b *testing.B, c Config) *Bridge {
	never := nullReader{closed: make(chan struct{})}
	c.WhatsAppIn, c.WhatsAppOut, c.WhatsAppSSRC, c.SIPIn, c.SIPOut = never, discard{}, 1, never, discard{}
	if c.SIPCodec.Name == "" {
		c.SIPCodec = pcmu
	}
	c.OpusComplexity = OpusComplexityAuto
	br, err := New(withMetaPTs(c))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(br.Close)
	return br
}

// benchCodecs are the SIP codecs, each benchmarked both ways; g711WA: the
// WhatsApp leg negotiated the same G.711 (passthrough, no Opus).
var benchCodecs = []struct {
	name   string
	codec  Codec
	g711WA bool
}{{"PCMU", pcmu, false}, {"PCMA", Codec{"PCMA", 8, 8000}, false}, {"G722", g722Codec, false}, {"opus-passthrough", opusSIP, false},
	{"pcmu-passthrough", pcmu, true}}

// benchConfig is the bridge of one benchCodecs case.
func benchConfig(codec Codec, g711WA bool) Config {
	c := Config{SIPCodec: codec}
	if g711WA {
		c.WhatsAppCodec = codec
	}
	return c
}

// One 20 ms Opus packet from WhatsApp → one packet to the PBX (a PCMU,
// PCMA or G.722 packet, or the same Opus packet with new headers); for
// pcmu-passthrough one 20 ms PCMU packet from WhatsApp → the same with new
// headers.
func BenchmarkWhatsAppToSIP(b *testing.B) {
	pkts := whatsAppFrames(b)
	ulaw := g711Packets(b, 0, 1000, 9000, 20, benchFrames)
	for _, bc := range benchCodecs {
		b.Run(bc.name, func(b *testing.B) {
			br := newBenchBridge(b, benchConfig(bc.codec, bc.g711WA))
			in, step := pkts, uint32(960)
			if bc.g711WA {
				in, step = ulaw, 160
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := in[i%benchFrames]
				restamp(p, i, step)
				br.handleWhatsAppPacket(p)
				i++
			}
			if st := br.Stats().WhatsAppToSIP; st.PacketsOut != st.PacketsIn || st.Lost+st.Late+st.Malformed != 0 {
				b.Fatalf("stats %v", st)
			}
		})
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

// One 20 ms packet from the PBX in (PCMU, PCMA, G.722 or Opus), one pacer
// frame (Opus packet, or the PCMU packet in pcmu-passthrough) out, on a
// simulated clock.
func BenchmarkSIPToWhatsApp(b *testing.B) {
	for _, bc := range benchCodecs {
		b.Run(bc.name, func(b *testing.B) {
			br := newBenchBridge(b, benchConfig(bc.codec, bc.g711WA))
			clock := simClock(br)
			pbx := newPBXSender(b, 0)
			var tsStep uint32 = 160
			if bc.codec.Name == "opus" {
				tsStep = 960
			}
			pkts := pbxTone(b, pbx, bc.codec, 800, benchFrames)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				*clock = int64(i) * int64(20*time.Millisecond)
				p := pkts[i%benchFrames]
				restamp(p, i, tsStep)
				br.handleSIPPacket(p)
				*clock += int64(5 * time.Millisecond)
				br.sendFrameToWhatsApp()
				i++
			}
			if st := br.Stats().SIPToWhatsApp; st.PacketsOut != st.PacketsIn || st.Overruns+st.Lost+st.Late != 0 || st.SilenceFrames > 1 {
				b.Fatalf("stats %v", st)
			}
		})
	}
}

// Bare libopus: the same PCM encoded at 8 kHz with the bridge's settings.
func BenchmarkSIPToWhatsAppBareLibopus(b *testing.B) {
	_, pcm := sipFrames(b)
	enc, err := newOpusEncoder(8000, OpusComplexityAuto)
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

// The libopus floor at scale: one decode and one encode per 20 ms for each
// of benchCalls calls, each with its own encoder and decoder state (≈ 66
// KiB a call, far more than the caches hold together), round robin as a
// loaded gateway runs them. Against the single-state benchmarks above it
// shows what the codec alone costs once calls evict each other's state.
func BenchmarkBareLibopusManyCalls(b *testing.B) {
	const benchCalls = 200
	pkts := whatsAppFrames(b)
	_, pcm := sipFrames(b)
	decs := make([]*opus.Decoder, benchCalls)
	encs := make([]*opus.Encoder, benchCalls)
	for i := range benchCalls {
		var err error
		if decs[i], err = opus.NewDecoder(8000); err != nil {
			b.Fatal(err)
		}
		if encs[i], err = newOpusEncoder(8000, OpusComplexityAuto); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for i := range benchCalls {
			decs[i].Close()
			encs[i].Close()
		}
	})
	out := make([]byte, maxPacket)
	dpcm := make([]int16, 160)
	b.ReportAllocs()
	i := 0
	for b.Loop() { // one call's decode + encode
		c, f := i%benchCalls, i/benchCalls%benchFrames
		if _, err := decs[c].Decode(pkts[f][rtpHeaderLen:], dpcm); err != nil {
			b.Fatal(err)
		}
		if _, err := encs[c].Encode(pcm[f], out); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// The libopus floor of one call of `wasim load -codec pcmu` (the figure
// its -floor-us compares the gateway with): the same decode and encode as
// above, on the audio of a load run rather than a clean tone. The caller's
// frames are made as whatsapp/wasim/loadaudio.go makes them (a 1000 Hz
// tone at -15 dBFS, Opus from 16 kHz at 20 kbit/s, complexity 5, FEC); the
// PCM encoded is what the echo PBX returns: that audio decoded at 8 kHz and
// passed through μ-law. Opus-coded audio costs the encoder about a fifth
// more than the clean 800 Hz tone of BenchmarkSIPToWhatsAppBareLibopus.
func BenchmarkBareLibopusLoadAudio(b *testing.B) {
	frames, echoed := loadAudioFrames(b)
	dec, err := opus.NewDecoder(8000)
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	enc, err := newOpusEncoder(8000, OpusComplexityAuto)
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	pcm, buf := make([]int16, 160), make([]byte, maxPacket)
	b.ReportAllocs()
	i := 0
	for b.Loop() { // one call's decode + encode
		if _, err := dec.Decode(frames[i%benchFrames], pcm); err != nil {
			b.Fatal(err)
		}
		if _, err := enc.Encode(echoed[i%benchFrames], buf); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// The same work for many calls in turn, as a media worker does it: each
// call's own decoder and encoder, one frame of each call after the other.
// Against one call alone it shows what the codec's state falling out of
// the CPU's caches costs (the floor above is one call's state, always warm).
func BenchmarkBareLibopusLoadAudioCalls(b *testing.B) {
	frames, echoed := loadAudioFrames(b)
	for _, calls := range []int{1, 25, 100, 200} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			decs, encs := make([]*opus.Decoder, calls), make([]*opus.Encoder, calls)
			for c := range calls {
				var err error
				if decs[c], err = opus.NewDecoder(8000); err != nil {
					b.Fatal(err)
				}
				defer decs[c].Close()
				if encs[c], err = newOpusEncoder(8000, OpusComplexityAuto); err != nil {
					b.Fatal(err)
				}
				defer encs[c].Close()
			}
			pcm, buf := make([]int16, 160), make([]byte, maxPacket)
			i := 0
			for b.Loop() { // one call's decode + encode
				c, f := i%calls, (i/calls+i)%benchFrames
				if _, err := decs[c].Decode(frames[f], pcm); err != nil {
					b.Fatal(err)
				}
				if _, err := encs[c].Encode(echoed[f], buf); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// loadAudioFrames are a load run's caller frames and the PCM the echo PBX
// returns for them (see BenchmarkBareLibopusLoadAudio).
func loadAudioFrames(b *testing.B) (frames [][]byte, echoed [][]int16) {
	b.Helper()
	callerEnc, err := opus.NewEncoder(16000, opus.AppVoIP)
	if err != nil {
		b.Fatal(err)
	}
	defer callerEnc.Close()
	if err := errors.Join(callerEnc.SetInbandFEC(true), callerEnc.SetComplexity(5), callerEnc.SetBitrate(20000)); err != nil {
		b.Fatal(err)
	}
	dec, err := opus.NewDecoder(8000)
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	tone := make([]int16, 320*benchFrames)
	audio.NewTone(1000, 16000, 8000).Fill(tone)
	frames, echoed = make([][]byte, benchFrames), make([][]int16, benchFrames)
	buf := make([]byte, maxPacket)
	ulaw := make([]byte, 160)
	for pass := range 2 { // the second pass, as the generator loops it
		for i := range benchFrames {
			n, err := callerEnc.Encode(tone[i*320:(i+1)*320], buf)
			if err != nil {
				b.Fatal(err)
			}
			frames[i] = append(frames[i][:0], buf[:n]...)
			if pass == 0 {
				continue
			}
			echoed[i] = make([]int16, 160)
			if _, err := dec.Decode(frames[i], echoed[i]); err != nil {
				b.Fatal(err)
			}
			g711.EncodeUlaw(echoed[i], ulaw)
			g711.DecodeUlaw(ulaw, echoed[i])
		}
	}
	return frames, echoed
}

// The hot paths allocate nothing per packet, on the plain path and on the
// loss, reordering, pause and garbage paths alike.
func TestHotPathsDoNotAllocate(t *testing.T) {
	br, _, _ := newDrivenBridge(t, pcmu)
	br.w2s.out.w, br.s2w.out.w = discard{}, discard{}
	simClock(br)
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

func newAllocScript(t *testing.T, c Codec, dtmfPT uint8, inband bool, g711WA bool) allocScript {
	var s allocScript
	var src interface {
		next() []byte
		digit(r rune, d time.Duration, keep func(int) bool) [][]byte
	}
	if g711WA {
		src = newG711Sender(t, c.PayloadType, c.Name == "PCMA", 1000, 9000)
	} else {
		opus := newWhatsAppSender(t, 1000, 9000, 20, true)
		opus.depth = 0.45
		src = opus
	}
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
// (events and tones), G.722, Opus and G.711 passthrough, the reorder
// window and the playout buffer.
func TestNewHotPathsDoNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		codec  Codec
		dtmfPT uint8
		mode   DTMFMode
		g711WA bool // WhatsApp negotiated the codec too: passthrough
	}{
		{"pcmu/rfc4733", pcmu, 101, DTMFModeRFC4733, false},
		{"pcmu/inband", pcmu, 0, DTMFModeInband, false},
		{"g722/rfc4733", g722Codec, 101, DTMFModeRFC4733, false},
		{"opus/rfc4733", opusSIP, 101, DTMFModeRFC4733, false},
		{"pcmu-passthrough/rfc4733", pcmu, 101, DTMFModeRFC4733, true},
		{"pcma-passthrough/rfc4733", Codec{"PCMA", 8, 8000}, 101, DTMFModeRFC4733, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			digits := 0
			c := Config{SIPCodec: tc.codec, SIPDTMFPayloadType: tc.dtmfPT, DTMFMode: tc.mode, OnDigit: func(string, rune) { digits++ }}
			if tc.g711WA {
				c.WhatsAppCodec = tc.codec
			}
			b, _, _ := newDrivenBridgeWith(t, c)
			b.w2s.out.w, b.s2w.out.w = discard{}, discard{}
			clock := simClock(b)
			s := newAllocScript(t, tc.codec, tc.dtmfPT, tc.mode == DTMFModeInband, tc.g711WA)
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
			if tc.codec.Name != "opus" && (x.ComfortNoise == 0 || !tc.g711WA && w.FECRecovered+w.Concealed == 0) {
				t.Fatal("not every path was taken")
			}
		})
	}
}

// eventPacket i of an endless run of 100 ms digits (a start, four updates,
// three ends: eight packets each) written into p, a 16-byte RTP packet.
func stampEvent(p []byte, pt uint8, i int, tsPerDigit uint32) {
	k := i % 8
	p[0], p[1] = 0x80, pt
	if k == 0 {
		p[1] |= 0x80
	}
	binary.BigEndian.PutUint16(p[2:], uint16(i))
	binary.BigEndian.PutUint32(p[4:], uint32(i/8)*tsPerDigit)
	binary.BigEndian.PutUint32(p[8:], 0x5195)
	dur := uint16(160 * min(k+1, 5))
	p[12], p[13] = byte(i/8%10), 10
	if k >= 5 {
		p[13] |= 0x80
	}
	binary.BigEndian.PutUint16(p[14:], dur)
}

// DTMF, per telephone-event packet received: WhatsApp's relayed to the PBX
// as RFC 4733 (one packet out per packet in, three for the end), WhatsApp's
// played as tones into PCMU (a tone frame per 20 ms of the event), the
// PBX's relayed to WhatsApp (the pacer sends one event packet per frame),
// and PBX audio with in-band digits (per 20 ms PCMU packet with its pacer
// frame: the detector's cost, plus Opus frames between the digits and
// event packets during them).
func BenchmarkDTMF(b *testing.B) {
	p := make([]byte, 16)
	for _, wa2sip := range []struct {
		name string
		cfg  Config
	}{{"whatsapp-to-sip-events", Config{SIPDTMFPayloadType: 101}}, {"whatsapp-to-sip-tones", Config{DTMFMode: DTMFModeInband}}} {
		b.Run(wa2sip.name, func(b *testing.B) {
			br := newBenchBridge(b, wa2sip.cfg)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				stampEvent(p, metaDTMFPT, i, 8*960)
				br.handleWhatsAppPacket(p)
				i++
			}
			if st := br.Stats().WhatsAppToSIP; st.DigitsSent != uint64(i+7)/8 {
				b.Fatalf("stats %v", st)
			}
		})
	}
	b.Run("sip-to-whatsapp-events", func(b *testing.B) {
		br := newBenchBridge(b, Config{SIPDTMFPayloadType: 101})
		clock := simClock(br)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			*clock = int64(i) * int64(20*time.Millisecond)
			stampEvent(p, 101, i, 8*160)
			br.handleSIPPacket(p)
			br.sendFrameToWhatsApp()
			i++
		}
		if st := br.Stats().SIPToWhatsApp; st.Digits != uint64(i+7)/8 {
			b.Fatalf("stats %v", st)
		}
	})
	b.Run("sip-inband-detect", func(b *testing.B) {
		br := newBenchBridge(b, Config{DTMFMode: DTMFModeInband})
		clock := simClock(br)
		pbx := newPBXSender(b, 0)
		pkts := pbx.audio(toneSequence("1234567890", 8000, 100*time.Millisecond, 100*time.Millisecond)) // 100 packets
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			*clock = int64(i) * int64(20*time.Millisecond)
			q := pkts[i%len(pkts)]
			restamp(q, i, 160)
			br.handleSIPPacket(q)
			*clock += int64(5 * time.Millisecond)
			br.sendFrameToWhatsApp()
			i++
		}
		if st := br.Stats().SIPToWhatsApp; i >= 100 && st.Digits < uint64(i/10-1) {
			b.Fatalf("stats %v", st)
		}
	})
}

// Bare G.722 (the library alone): one 20 ms frame encoded and decoded.
func BenchmarkG722Bare(b *testing.B) {
	c, err := lookupCodec(g722Codec)
	if err != nil {
		b.Fatal(err)
	}
	pcm := make([]int16, 320)
	audio.NewTone(800, 16000, 9000).Fill(pcm)
	out := make([]byte, 160)
	back := make([]int16, 320)
	b.ReportAllocs()
	for b.Loop() {
		c.encode(pcm, out)
		c.decode(out, back)
	}
}

// The in-band detector alone, per 20 ms of 8 kHz audio.
func BenchmarkDTMFDetector(b *testing.B) {
	pcm := speechLike(8000, time.Second, 3)
	d := newDTMFDetector(8000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		fr := pcm[i%50*160 : i%50*160+160]
		for len(fr) > 0 {
			n, _, _, _ := d.feed(fr)
			fr = fr[n:]
		}
		i++
	}
}

// The pacer's own work per frame: the schedule moved by a shift every
// frame, no allocation.
func BenchmarkPacerSchedule(b *testing.B) {
	s := schedule{start: time.Unix(0, 0), period: 20 * time.Millisecond}
	send := func(time.Duration) time.Duration { return time.Millisecond }
	b.ReportAllocs()
	for b.Loop() {
		s.run(s.next(), send, nil)
	}
}

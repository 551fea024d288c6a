package rtpbridge

import (
	"encoding/binary"
	"testing"

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

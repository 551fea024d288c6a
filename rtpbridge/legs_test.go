package rtpbridge

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/g711"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

var errLegClosed = errors.New("test leg closed")

// memLeg is an in-memory leg: packets given to feed come out of ReadPacket,
// packets the bridge writes are recorded with their arrival time.
type memLeg struct {
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex
	out   [][]byte
	times []time.Time
}

func newMemLeg() *memLeg {
	return &memLeg{in: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (l *memLeg) ReadPacket(b []byte) (int, error) {
	select {
	case <-l.closed:
		return 0, errLegClosed
	default:
	}
	select {
	case p := <-l.in:
		return copy(b, p), nil
	case <-l.closed:
		return 0, errLegClosed
	}
}

func (l *memLeg) WritePacket(b []byte) error {
	select {
	case <-l.closed:
		return errLegClosed
	default:
	}
	p := append([]byte(nil), b...)
	l.mu.Lock()
	l.out = append(l.out, p)
	l.times = append(l.times, time.Now())
	l.mu.Unlock()
	return nil
}

func (l *memLeg) feed(p []byte) { l.in <- p }

func (l *memLeg) Close() { l.once.Do(func() { close(l.closed) }) }

// written returns a copy of what the bridge wrote so far.
func (l *memLeg) written() ([][]byte, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.out...), append([]time.Time(nil), l.times...)
}

// waitFor waits until the bridge wrote at least n packets.
func (l *memLeg) waitFor(t testing.TB, n int, timeout time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pkts, _ := l.written()
		if len(pkts) >= n {
			return pkts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d packets written after %v, want %d", len(pkts), timeout, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recorder is a PacketWriter for tests that drive the bridge without
// goroutines.
type recorder struct{ out [][]byte }

func (r *recorder) WritePacket(b []byte) error {
	r.out = append(r.out, append([]byte(nil), b...))
	return nil
}

// discard is a PacketWriter that drops everything (benchmarks).
type discard struct{}

func (discard) WritePacket([]byte) error { return nil }

// nullReader never yields a packet until closed.
type nullReader struct{ closed chan struct{} }

func (r nullReader) ReadPacket([]byte) (int, error) {
	<-r.closed
	return 0, errLegClosed
}

// Meta's payload types in WhatsApp's offers (opus/48000/2 on 111,
// telephone-event/8000 on 126): the tests' data, not the bridge's defaults.
const (
	metaOpusPT = 111
	metaDTMFPT = 126
)

// withMetaPTs gives c Meta's payload types unless it names an Opus one;
// a G.711 WhatsApp leg gets Meta's telephone-event unless it names one.
func withMetaPTs(c Config) Config {
	switch {
	case c.WhatsAppCodec.Name != "":
		if c.WhatsAppDTMFPT == 0 {
			c.WhatsAppDTMFPT = metaDTMFPT
		}
	case c.WhatsAppOpusPT == 0:
		c.WhatsAppOpusPT, c.WhatsAppDTMFPT = metaOpusPT, metaDTMFPT
	}
	return c
}

// whatsAppSender plays WhatsApp: a tone Opus-encoded at 48 kHz, about 24
// kbit/s with in-band FEC, in RTP packets of frameMs.
type whatsAppSender struct {
	t       testing.TB
	enc     *opus.Encoder
	tone    *audio.Tone
	pcm     []int16
	buf     []byte
	seq     uint16
	ts      uint32
	ssrc    uint32
	frameTS uint32

	// depth, if set, modulates the tone's amplitude at 4 Hz (1-depth to 1):
	// libopus's voice activity detector then keeps taking it for speech
	// and keeps putting FEC in, where a steady tone soon counts as noise.
	depth, phase float64
}

func newWhatsAppSender(t testing.TB, freq float64, amp float64, frameMs int, fec bool) *whatsAppSender {
	t.Helper()
	enc, err := opus.NewEncoder(48000, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(enc.Close)
	must(t, enc.SetBitrate(24000))
	must(t, enc.SetInbandFEC(fec))
	if fec {
		must(t, enc.SetPacketLossPerc(10))
	}
	return &whatsAppSender{
		t: t, enc: enc, tone: audio.NewTone(freq, 48000, amp),
		pcm: make([]int16, 48*frameMs), buf: make([]byte, 1500),
		seq: 65000, ts: 4_294_000_000, ssrc: 0x0a0b0c0d, // both wrap during the tests
		frameTS: uint32(48 * frameMs),
	}
}

// next returns the next RTP packet.
func (s *whatsAppSender) next() []byte {
	s.tone.Fill(s.pcm)
	if s.depth > 0 {
		for i, v := range s.pcm {
			s.pcm[i] = int16(float64(v) * (1 - s.depth + s.depth*math.Sin(s.phase)))
			s.phase += 2 * math.Pi * 4 / 48000
		}
	}
	n, err := s.enc.Encode(s.pcm, s.buf)
	if err != nil {
		s.t.Fatal(err)
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc}, Payload: s.buf[:n]}
	s.seq++
	s.ts += s.frameTS
	b, err := p.Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// g711Packets builds RTP packets of a tone in PCMU (pt 0) or PCMA (pt 8).
func g711Packets(t testing.TB, pt uint8, freq, amp float64, ptimeMs, count int) [][]byte {
	tone := audio.NewTone(freq, 8000, amp)
	pcm := make([]int16, 8*ptimeMs)
	var out [][]byte
	for i := 0; i < count; i++ {
		tone.Fill(pcm)
		payload := make([]byte, len(pcm))
		if pt == 8 {
			g711.EncodeAlaw(pcm, payload)
		} else {
			g711.EncodeUlaw(pcm, payload)
		}
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: uint16(100 + i), Timestamp: uint32(1000 + i*len(pcm)), SSRC: 0x5195}, Payload: payload}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// unmarshal parses packets with pion/rtp, independently of the bridge.
func unmarshal(t testing.TB, pkts [][]byte) []rtp.Packet {
	t.Helper()
	out := make([]rtp.Packet, len(pkts))
	for i, b := range pkts {
		if err := out[i].Unmarshal(b); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	return out
}

// checkStream checks one RTP stream: payload type, one SSRC, sequence +1 and
// timestamp +tsStep from packet to packet, payload size (0: any), marker on
// the first packet only.
func checkStream(t testing.TB, pkts []rtp.Packet, pt uint8, ssrc uint32, tsStep uint32, payloadLen int) {
	t.Helper()
	if len(pkts) == 0 {
		t.Fatal("no packets")
	}
	for i, p := range pkts {
		if p.Version != 2 || p.PayloadType != pt || p.SSRC != ssrc || len(p.CSRC) != 0 || p.Extension || p.Padding {
			t.Fatalf("packet %d: header %+v, want pt %d ssrc %#x", i, p.Header, pt, ssrc)
		}
		if payloadLen != 0 && len(p.Payload) != payloadLen {
			t.Fatalf("packet %d: %d payload bytes, want %d", i, len(p.Payload), payloadLen)
		}
		if p.Marker != (i == 0) {
			t.Fatalf("packet %d: marker %v", i, p.Marker)
		}
		if i == 0 {
			continue
		}
		if q := pkts[i-1]; p.SequenceNumber != q.SequenceNumber+1 || p.Timestamp != q.Timestamp+tsStep {
			t.Fatalf("packet %d: seq %d ts %d after seq %d ts %d, want +1 and +%d",
				i, p.SequenceNumber, p.Timestamp, q.SequenceNumber, q.Timestamp, tsStep)
		}
	}
}

// decodeG711 concatenates the PCM of G.711 packets.
func decodeG711(pkts []rtp.Packet, alaw bool) []int16 {
	var pcm []int16
	for _, p := range pkts {
		s := make([]int16, len(p.Payload))
		if alaw {
			g711.DecodeAlaw(p.Payload, s)
		} else {
			g711.DecodeUlaw(p.Payload, s)
		}
		pcm = append(pcm, s...)
	}
	return pcm
}

// decodeOpus decodes Opus packets at rate, checking each holds 20 ms.
func decodeOpus(t testing.TB, pkts []rtp.Packet, rate int) []int16 {
	t.Helper()
	dec, err := opus.NewDecoder(rate)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var pcm []int16
	buf := make([]int16, rate/50)
	for i, p := range pkts {
		n, err := dec.Decode(p.Payload, buf)
		if err != nil || n != rate/50 {
			t.Fatalf("opus packet %d: %d samples, %v", i, n, err)
		}
		pcm = append(pcm, buf[:n]...)
	}
	return pcm
}

// checkTone checks that pcm is a tone of freq Hz at about level dBFS.
func checkTone(t testing.TB, pcm []int16, rate int, freq, level, minPurity float64) {
	t.Helper()
	f, purity := audio.DominantFrequency(pcm, rate, 200, 3400, 10)
	lvl := audio.RMS(pcm)
	t.Logf("dominant %v Hz, purity %.2f, level %.1f dBFS (want %v Hz, %.1f dBFS)", f, purity, lvl, freq, level)
	if f < freq-10 || f > freq+10 || purity < minPurity {
		t.Fatalf("dominant %v Hz purity %.2f, want %v Hz purity ≥ %.2f", f, purity, freq, minPurity)
	}
	if lvl < level-3 || lvl > level+3 {
		t.Fatalf("level %.1f dBFS, want %.1f ± 3", lvl, level)
	}
}

// toneLevel is the RMS level in dBFS of a sine of peak amp.
func toneLevel(amp float64) float64 {
	return audio.RMS([]int16{int16(amp), int16(-amp)}) - 3.0103
}

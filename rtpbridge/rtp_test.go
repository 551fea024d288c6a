package rtpbridge

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
)

// parseRTP agrees with pion/rtp on packets with CSRCs, header extensions of
// every profile and padding.
func TestParseRTPAgainstPion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		p := rtp.Packet{Header: rtp.Header{
			Version: 2, Marker: rng.IntN(2) == 0, PayloadType: uint8(rng.IntN(128)),
			SequenceNumber: uint16(rng.Uint32()), Timestamp: rng.Uint32(), SSRC: rng.Uint32(),
		}}
		for range rng.IntN(4) {
			p.CSRC = append(p.CSRC, rng.Uint32())
		}
		switch rng.IntN(4) {
		case 1:
			must(t, p.SetExtension(uint8(1+rng.IntN(14)), randBytes(rng, 1+rng.IntN(16))))
		case 2:
			p.Extension, p.ExtensionProfile = true, rtp.ExtensionProfileTwoByte
			must(t, p.SetExtension(uint8(1+rng.IntN(200)), randBytes(rng, rng.IntN(40))))
		case 3:
			p.Extension, p.ExtensionProfile = true, 0x1234
			must(t, p.SetExtension(0, randBytes(rng, 4*rng.IntN(5))))
		}
		p.Payload = randBytes(rng, rng.IntN(200))
		if rng.IntN(3) == 0 {
			p.Padding, p.PaddingSize = true, byte(1+rng.IntN(20))
		}
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		h, payload, ok := parseRTP(raw)
		if !ok {
			t.Fatalf("packet %d refused: %+v", i, p.Header)
		}
		if h.marker != p.Marker || h.pt != p.PayloadType || h.seq != p.SequenceNumber || h.ts != p.Timestamp || h.ssrc != p.SSRC || !bytes.Equal(payload, p.Payload) {
			t.Fatalf("packet %d: %+v % x, want %+v % x", i, h, payload, p.Header, p.Payload)
		}
	}
}

// What putRTP writes, pion/rtp reads back.
func TestPutRTPAgainstPion(t *testing.T) {
	want := rtpHeader{marker: true, pt: 111, seq: 65535, ts: 0xfffffff0, ssrc: 0xdeadbeef}
	b := make([]byte, rtpHeaderLen+3)
	putRTP(b, want)
	copy(b[rtpHeaderLen:], "abc")
	var p rtp.Packet
	must(t, p.Unmarshal(b))
	if p.Version != 2 || !p.Marker || p.PayloadType != 111 || p.SequenceNumber != 65535 || p.Timestamp != 0xfffffff0 || p.SSRC != 0xdeadbeef || string(p.Payload) != "abc" || p.Padding || p.Extension || len(p.CSRC) != 0 {
		t.Fatalf("%+v", p)
	}
	putRTP(b, rtpHeader{pt: 0x80 | 8}) // a payload type never spills into the marker
	if b[1] != 8 {
		t.Fatalf("second byte %#x", b[1])
	}
}

// rtpSender numbers its packets and keeps one SSRC, whatever the payload.
func TestRTPSender(t *testing.T) {
	var c dirCounters
	r := &recorder{}
	s := newRTPSender("x", r, 42, 65534, 100, &c)
	for i, n := range []int{3, 0, 5} {
		copy(s.payload(), "hello")
		s.send(uint8(96+i), n, 960)
	}
	s.skip(9600)
	s.mark()
	s.send(96, 1, 960)
	pkts := unmarshal(t, r.out)
	want := []struct {
		seq    uint16
		ts     uint32
		marker bool
		n      int
	}{{65534, 100, true, 3}, {65535, 1060, false, 0}, {0, 2020, false, 5}, {1, 2980 + 9600, true, 1}}
	for i, w := range want {
		p := pkts[i]
		if p.SSRC != 42 || p.SequenceNumber != w.seq || p.Timestamp != w.ts || p.Marker != w.marker || len(p.Payload) != w.n {
			t.Fatalf("packet %d: %+v (%d bytes), want %+v", i, p.Header, len(p.Payload), w)
		}
	}
	if st := c.snapshot(); st.PacketsOut != 4 || st.BytesOut != 4*12+9 {
		t.Fatalf("stats %v", st)
	}
}

// Telephone-events go out with their own timestamp and marker in the
// stream's sequence, leaving the stream's timestamp and pending marker as
// they were; skipSeq leaves a visible gap; setTS moves the timeline.
func TestRTPSenderEventsAndGaps(t *testing.T) {
	var c dirCounters
	r := &recorder{}
	s := newRTPSender("x", r, 42, 10, 1000, &c)
	s.send(0, 1, 160)         // seq 10, ts 1000, marker
	s.sendAt(101, 4, 5, true) // seq 11, ts 5, marker
	s.mark()
	s.sendAt(101, 4, 5, false) // seq 12, no marker: the stream's stays pending
	s.skipSeq(3)
	s.send(0, 1, 160) // seq 16, ts 1160, marker
	s.setTS(77)
	s.send(0, 1, 160) // seq 17, ts 77
	want := []struct {
		seq    uint16
		ts     uint32
		pt     uint8
		marker bool
	}{{10, 1000, 0, true}, {11, 5, 101, true}, {12, 5, 101, false}, {16, 1160, 0, true}, {17, 77, 0, false}}
	pkts := unmarshal(t, r.out)
	for i, w := range want {
		p := pkts[i]
		if p.SequenceNumber != w.seq || p.Timestamp != w.ts || p.PayloadType != w.pt || p.Marker != w.marker || p.SSRC != 42 {
			t.Fatalf("packet %d: %+v, want %+v", i, p.Header, w)
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

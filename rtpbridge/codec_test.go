package rtpbridge

import (
	"math"
	"slices"
	"testing"

	"github.com/gotranspile/g722"
	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/audio"
)

// decodeG722 decodes a G.722 stream with one decoder of its own, as a PBX
// would.
func decodeG722(pkts []rtp.Packet) []int16 {
	dec := g722.NewDecoder(g722.Rate64000, 0)
	var pcm []int16
	for _, p := range pkts {
		s := make([]int16, 2*len(p.Payload))
		pcm = append(pcm, s[:dec.Decode(s, p.Payload)]...)
	}
	return pcm
}

func sinAt(freq float64, i, rate int) float64 {
	return math.Sin(2 * math.Pi * freq * float64(i) / float64(rate))
}

var g722Codec = Codec{"G722", 9, 8000}

// g722Packets builds 20 ms G.722 packets (160 bytes, timestamp +160: the
// 8 kHz RTP clock) of a 16 kHz tone, with an encoder of their own.
func g722Packets(t testing.TB, freq, amp float64, count int) [][]byte {
	enc := g722.NewEncoder(g722.Rate64000, 0)
	tone := audio.NewTone(freq, 16000, amp)
	pcm := make([]int16, 320)
	var out [][]byte
	for i := 0; i < count; i++ {
		tone.Fill(pcm)
		payload := make([]byte, 160)
		if n := enc.Encode(payload, pcm); n != 160 {
			t.Fatalf("G.722 encoder made %d bytes", n)
		}
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 9, SequenceNumber: uint16(7 + i), Timestamp: uint32(99 + 160*i), SSRC: 0x722}, Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// WhatsApp's wideband audio crosses to a G.722 PBX as wideband audio: a
// 1 kHz tone and a 5 kHz tone (above anything 8 kHz G.711 can carry) come
// out of the PBX's own G.722 decoder at their frequency and level; through
// PCMU the 5 kHz tone is gone. The G.722 stream is 20 ms packets of 160
// bytes, timestamps +160 (RFC 3551: an 8 kHz clock for 16 kHz audio).
func TestG722WhatsAppToSIP(t *testing.T) {
	for _, tc := range []struct {
		codec Codec
		freq  float64
		gone  bool
	}{{g722Codec, 1000, false}, {g722Codec, 5000, false}, {pcmu, 5000, true}} {
		b, sip, _ := newDrivenBridge(t, tc.codec)
		const amp = 10000
		src := newWhatsAppSender(t, tc.freq, amp, 20, false)
		for range 60 {
			b.handleWhatsAppPacket(src.next())
		}
		pkts := unmarshal(t, sip.out)
		if tc.gone {
			pcm := decodeG711(pkts[10:], false)
			if lvl := audio.RMS(pcm); lvl > -40 {
				t.Fatalf("PCMU carried a %v Hz tone at %.1f dBFS", tc.freq, lvl)
			}
			continue
		}
		checkStream(t, pkts, 9, 0x51b, 160, 160)
		pcm := decodeG722(pkts)[320*10:]
		f, purity := audio.DominantFrequency(pcm, 16000, 200, 7000, 10)
		lvl := audio.RMS(pcm)
		t.Logf("G.722 %v Hz: dominant %v Hz, purity %.2f, %.1f dBFS", tc.freq, f, purity, lvl)
		if math.Abs(f-tc.freq) > 10 || purity < 0.8 || math.Abs(lvl-toneLevel(amp)) > 3 {
			t.Fatalf("G.722 %v Hz: dominant %v Hz purity %.2f level %.1f dBFS (want %.1f)", tc.freq, f, purity, lvl, toneLevel(amp))
		}
	}
}

// And the other way: a PBX's G.722 tones reach WhatsApp as 16 kHz Opus
// with their frequency, 5 kHz included.
func TestG722SIPToWhatsApp(t *testing.T) {
	for _, freq := range []float64{800, 5000} {
		b, _, wa := newDrivenBridge(t, g722Codec)
		clock := simClock(b)
		const amp = 10000
		runPBX(b, clock, g722Packets(t, freq, amp, 60), 0)
		pkts := unmarshal(t, wa.out)
		checkStream(t, pkts, 111, 0xfeed, 960, 0)
		pcm := decodeOpus(t, pkts, 16000)[16000/50*10:]
		f, purity := audio.DominantFrequency(pcm, 16000, 200, 7000, 10)
		lvl := audio.RMS(pcm)
		t.Logf("%v Hz: dominant %v Hz, purity %.2f, %.1f dBFS", freq, f, purity, lvl)
		if math.Abs(f-freq) > 10 || purity < 0.7 || math.Abs(lvl-toneLevel(amp)) > 3 {
			t.Fatalf("%v Hz: dominant %v Hz purity %.2f level %.1f dBFS (want %.1f)", freq, f, purity, lvl, toneLevel(amp))
		}
		if st := b.Stats().SIPToWhatsApp; st.PacketsIn != 60 || st.Late+st.Lost+st.Malformed != 0 {
			t.Fatalf("stats %v", st)
		}
	}
}

// A new SSRC from the PBX restarts the G.722 decoder: after reset it
// decodes a fresh encoder's stream exactly as a fresh decoder does (and,
// without, it would not), and the SIP reader resets it on a new SSRC.
func TestG722DecoderResetOnNewStream(t *testing.T) {
	c, err := lookupCodec(g722Codec)
	if err != nil {
		t.Fatal(err)
	}
	first := g722Packets(t, 3000, 10000, 5)
	second := g722Packets(t, 700, 10000, 1)[0][12:]
	pcm := make([]int16, 320)
	for _, p := range first {
		c.decode(p[12:], pcm)
	}
	stale := make([]int16, 320)
	c.decode(second, stale)
	for _, p := range first {
		c.decode(p[12:], pcm)
	}
	c.reset()
	c.decode(second, pcm)
	want := decodeG722([]rtp.Packet{{Payload: second}})
	if !slices.Equal(pcm, want) {
		t.Fatal("after reset the decoder does not decode as a fresh one")
	}
	if slices.Equal(stale, want) {
		t.Fatal("the test cannot tell: the stale state decodes the same")
	}

	b, _, _ := newDrivenBridge(t, g722Codec)
	resets := 0
	codec := b.setup.Load().codec
	reset := codec.reset
	codec.reset = func() { resets++; reset() }
	in := g722Packets(t, 3000, 10000, 4)
	in[2][11], in[3][11] = 0x99, 0x99 // another SSRC from the third packet on
	for _, p := range in {
		b.handleSIPPacket(p)
	}
	if resets != 2 { // the first packet starts a stream too
		t.Fatalf("%d resets, want 2", resets)
	}
}

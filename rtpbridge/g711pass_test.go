package rtpbridge

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// g711Sender plays a WhatsApp leg that negotiated G.711: 20 ms packets of a
// tone on its payload type, timestamps on the 8 kHz clock (RFC 3551
// §4.5.14), telephone-events on PT 126 in the same sequence.
type g711Sender struct {
	t         testing.TB
	pt        uint8
	alaw      bool
	tone      *audio.Tone
	pcm       []int16
	seq       uint16
	ts, ssrc  uint32
	lastAudio []byte
}

func newG711Sender(t testing.TB, pt uint8, alaw bool, freq, amp float64) *g711Sender {
	return &g711Sender{t: t, pt: pt, alaw: alaw, tone: audio.NewTone(freq, 8000, amp), pcm: make([]int16, 160),
		seq: 65500, ts: 4_294_967_000, ssrc: 0x0a0b0c0d} // both wrap during the tests
}

func (s *g711Sender) next() []byte {
	s.tone.Fill(s.pcm)
	payload := make([]byte, 160)
	if s.alaw {
		g711.EncodeAlaw(s.pcm, payload)
	} else {
		g711.EncodeUlaw(s.pcm, payload)
	}
	b := s.packet(s.pt, false, s.ts, payload)
	s.ts += 160
	return b
}

func (s *g711Sender) packet(pt uint8, marker bool, ts uint32, payload []byte) []byte {
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: s.seq, Timestamp: ts, SSRC: s.ssrc}, Payload: payload}).Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	s.seq++
	return b
}

// digit is whatsAppSender.digit on the 8 kHz clock: the event stamped with
// the next audio timestamp, the audio after it n frames later; keep says
// which packets are sent (nil: all).
func (s *g711Sender) digit(r rune, d time.Duration, keep func(i int) bool) [][]byte {
	code, _ := digitCode(r)
	n := int(d / (20 * time.Millisecond))
	var out [][]byte
	for i := 0; i < n+2; i++ {
		dur := uint16(160 * min(i+1, n))
		payload := []byte{code, 10, byte(dur >> 8), byte(dur)}
		if i >= n-1 {
			payload[1] |= 0x80
		}
		p := s.packet(126, i == 0, s.ts, payload)
		if keep == nil || keep(i) {
			out = append(out, p)
		}
	}
	s.ts += uint32(n * 160)
	return out
}

// The two G.711 laws, on Meta's static payload type and on a dynamic one
// (an SDP may map PCMU/PCMA to any, RFC 3551 §3): the bridge rewrites the
// payload type each way.
var g711PassCases = []struct {
	name     string
	wa, sip  Codec
	alaw     bool
	silence  byte
	waPT     uint8
	waDTMFPT uint8
}{
	{name: "PCMU", wa: Codec{Name: "PCMU"}, sip: pcmu, silence: 0xFF},
	{name: "PCMA-dynamic-pt", wa: Codec{Name: "PCMA", PayloadType: 98}, sip: Codec{"PCMA", 8, 8000}, alaw: true, silence: 0xD5, waPT: 98},
}

// From a WhatsApp leg that negotiated the PBX's G.711: the payload goes
// through untouched with the PBX's payload type and the bridge's SSRC; a
// lost packet stays a sequence gap, a pause a timestamp jump, a new
// WhatsApp SSRC continues the PBX's timeline; the audio is the caller's
// tone (frequency and level). A digit goes on as RFC 4733 events stamped
// on the 8 kHz clock at its own time, the audio after it behind it.
func TestG711PassthroughWhatsAppToSIP(t *testing.T) {
	for _, tc := range g711PassCases {
		t.Run(tc.name, func(t *testing.T) {
			var log digitLog
			b, sip, _ := newDrivenBridgeWith(t, Config{WhatsAppCodec: tc.wa, SIPCodec: tc.sip, SIPSSRC: 0x51b, SIPDTMFPayloadType: 101, OnDigit: log.on})
			src := newG711Sender(t, tc.waPT, tc.alaw, 1000, 8000)
			var kept []rtp.Packet
			for i := range 60 {
				switch i {
				case 20:
					src.ts += 10 * 160 // a pause
				case 40:
					src.ssrc, src.seq, src.ts = 0x777, 9, 1234 // a new stream
				}
				p := src.next()
				if i == 12 || i == 30 {
					continue // lost
				}
				b.handleWhatsAppPacket(p)
				kept = append(kept, unmarshal(t, [][]byte{p})[0])
			}
			out := unmarshal(t, sip.out)
			if len(out) != len(kept) {
				t.Fatalf("%d packets out, %d in", len(out), len(kept))
			}
			for i, p := range out {
				if p.PayloadType != tc.sip.PayloadType || p.SSRC != 0x51b || !bytes.Equal(p.Payload, kept[i].Payload) {
					t.Fatalf("packet %d: %+v, payload equal %v", i, p.Header, bytes.Equal(p.Payload, kept[i].Payload))
				}
				if p.Marker != (i == 0 || i == 38) {
					t.Fatalf("packet %d: marker %v", i, p.Marker)
				}
				if i == 0 {
					continue
				}
				wantSeq, wantTS := uint16(1), uint32(160)
				switch i {
				case 12, 29: // after a lost packet
					wantSeq, wantTS = 2, 320
				case 19:
					wantTS = 11 * 160
				}
				if p.SequenceNumber-out[i-1].SequenceNumber != wantSeq || p.Timestamp-out[i-1].Timestamp != wantTS {
					t.Fatalf("packet %d: seq +%d ts +%d, want +%d +%d", i, p.SequenceNumber-out[i-1].SequenceNumber, p.Timestamp-out[i-1].Timestamp, wantSeq, wantTS)
				}
			}
			checkTone(t, decodeG711(out, tc.alaw), 8000, 1000, toneLevel(8000), 0.9)
			st := b.Stats().WhatsAppToSIP
			if st.Lost != 2 || st.Resets != 1 || st.FECRecovered+st.Concealed+st.Malformed+st.OtherPT != 0 || st.PacketsOut != uint64(len(kept)) {
				t.Fatalf("stats %v", st)
			}

			sip.out = nil
			b.handleWhatsAppPacket(src.next())
			for _, p := range src.digit('7', 100*time.Millisecond, nil) {
				b.handleWhatsAppPacket(p)
			}
			b.handleWhatsAppPacket(src.next())
			out = unmarshal(t, sip.out)
			evs := eventsIn(t, out, 101)
			if digitsOf(evs) != "7" || log.from("whatsapp") != "7" {
				t.Fatalf("events %q, OnDigit %v", digitsOf(evs), log.got)
			}
			checkEvent(t, evs[0], 800, 0)
			if evs[0].ts != out[0].Timestamp+160 || out[len(out)-1].Timestamp != evs[0].ts+800 {
				t.Fatalf("audio at %d, event at %d, audio after at %d", out[0].Timestamp, evs[0].ts, out[len(out)-1].Timestamp)
			}
			checkSeqAndTS(t, out, 160)
		})
	}
}

// And from the PBX: its G.711 packets reach WhatsApp with the same bytes on
// WhatsApp's payload type, one every 20 ms in the one WhatsApp SSRC and
// sequence, timestamps +160 whatever the PBX's SSRC and timestamps do;
// while the PBX is silent the pacer sends 20 ms of the law's silence. The
// audio is the PBX's tone (frequency and level). The PBX's RFC 4733 digit
// reaches WhatsApp as PT 126 events on the 8 kHz slots.
func TestG711PassthroughSIPToWhatsApp(t *testing.T) {
	for _, tc := range g711PassCases {
		t.Run(tc.name, func(t *testing.T) {
			var log digitLog
			b, _, wa := newDrivenBridgeWith(t, Config{WhatsAppCodec: tc.wa, SIPCodec: tc.sip, WhatsAppSSRC: 0xfeed, SIPDTMFPayloadType: 101, OnDigit: log.on})
			clock := simClock(b)
			pbx := newPBXSender(t, 101)
			var pkts, audioIn [][]byte
			add := func(n int) {
				for _, p := range pbxTone(t, pbx, tc.sip, 800, n) {
					pkts = append(pkts, p)
					audioIn = append(audioIn, p[12:])
				}
			}
			add(50)
			for range 10 { // the PBX sends nothing (hold, silence suppression)
				pkts = append(pkts, nil)
				pbx.ts += 160
			}
			pbx.ssrc, pbx.ts = 0x6666, 77 // music on hold from another source
			add(30)
			pkts = append(pkts, pbx.digit('4', 100*time.Millisecond, nil)...)
			add(10)
			runPBX(b, clock, pkts, 5)

			out := unmarshal(t, wa.out)
			if len(out) != len(pkts)+5 {
				t.Fatalf("%d packets for %d frames", len(out), len(pkts)+5)
			}
			var got [][]byte
			var audioOut []rtp.Packet
			silent := 0
			for i, p := range out {
				if p.SSRC != 0xfeed || i > 0 && p.SequenceNumber != out[i-1].SequenceNumber+1 || p.Marker != (i == 0 || p.PayloadType == 126 && p.Marker) {
					t.Fatalf("packet %d: %+v", i, p.Header)
				}
				if i > 0 && p.PayloadType == tc.waPT && out[i-1].PayloadType == tc.waPT && p.Timestamp != out[i-1].Timestamp+160 {
					t.Fatalf("packet %d: timestamp %d after %d, want +160", i, p.Timestamp, out[i-1].Timestamp)
				}
				switch p.PayloadType {
				case 126:
					continue
				case tc.waPT:
				default:
					t.Fatalf("packet %d: payload type %d, want %d or 126", i, p.PayloadType, tc.waPT)
				}
				if len(p.Payload) != 160 {
					t.Fatalf("packet %d: %d bytes, want 160", i, len(p.Payload))
				}
				if bytes.Equal(p.Payload, bytes.Repeat([]byte{tc.silence}, 160)) {
					silent++
					continue
				}
				got = append(got, p.Payload)
				audioOut = append(audioOut, p)
			}
			if len(got) != len(audioIn) {
				t.Fatalf("%d packets of the PBX's audio came through, want %d", len(got), len(audioIn))
			}
			for i := range got {
				if !bytes.Equal(got[i], audioIn[i]) {
					t.Fatalf("payload %d differs", i)
				}
			}
			checkTone(t, decodeG711(audioOut, tc.alaw), 8000, 800, toneLevel(9000), 0.9)
			checkSeqAndTS(t, out, 160)
			evs := eventsIn(t, out, 126)
			if digitsOf(evs) != "4" || log.from("sip") != "4" {
				t.Fatalf("events %q, OnDigit %v", digitsOf(evs), log.got)
			}
			checkEvent(t, evs[0], 800, 160)
			st := b.Stats().SIPToWhatsApp
			t.Logf("%d silence frames; %v", silent, st)
			if st.SilenceFrames != uint64(silent) || silent < 10 || silent > 10+5+3 || st.Late+st.Lost+st.Overruns+st.Malformed != 0 {
				t.Fatalf("%d silence frames, stats %v", silent, st)
			}
			if st.MOS < 4.2 {
				t.Fatalf("MOS %.2f: G.711 passthrough without loss rates as G.711 alone", st.MOS)
			}
		})
	}
}

// A G.711 passthrough call through the bridge's goroutines and media
// worker: the PBX's tone comes out toward WhatsApp on 8 kHz timestamps,
// 20 ms apart, and WhatsApp's goes to the PBX, both untouched.
func TestG711PassthroughRunning(t *testing.T) {
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppCodec: Codec{Name: "PCMU"}, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed,
		SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu, SIPDTMFPayloadType: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		waLeg.Close()
		sipLeg.Close()
		b.Close()
	}()
	b.Start()
	pbx := newPBXSender(t, 101)
	fromPBX := pbxTone(t, pbx, pcmu, 800, 50)
	src := newG711Sender(t, 0, false, 1000, 8000)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range 50 {
		sipLeg.feed(fromPBX[i])
		waLeg.feed(src.next())
		<-tick.C
	}
	toWA := unmarshal(t, waLeg.waitFor(t, 50, 2*time.Second))
	toSIP := unmarshal(t, sipLeg.waitFor(t, 50, 2*time.Second))
	checkStream(t, toWA, 0, 0xfeed, 160, 160)
	checkStream(t, toSIP, 0, toSIP[0].SSRC, 160, 160)
	var heard []rtp.Packet
	for _, p := range toWA {
		if !bytes.Equal(p.Payload, bytes.Repeat([]byte{0xFF}, 160)) {
			heard = append(heard, p)
		}
	}
	if len(heard) < 40 {
		t.Fatalf("%d of %d packets toward WhatsApp hold the PBX's audio", len(heard), len(toWA))
	}
	checkTone(t, decodeG711(heard, false), 8000, 800, toneLevel(9000), 0.9)
	checkTone(t, decodeG711(toSIP, false), 8000, 1000, toneLevel(8000), 0.9)
	if chain := b.String(); !strings.Contains(chain, "whatsapp pcmu/8000") || !strings.Contains(chain, "pcmu passthrough (20ms pacer)") {
		t.Fatalf("chain %q", chain)
	}
	t.Logf("chain %v; stats %v", b, b.Stats())
}

package rtpbridge

import (
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// pbxSender plays the PBX: 20 ms PCMU packets of given PCM, and RFC 4733
// events on its telephone-event payload type in place of audio (as
// Asterisk sends them), all in one sequence space.
type pbxSender struct {
	t      testing.TB
	dtmfPT uint8
	frame  uint32 // timestamp units per 20 ms: 160, or 960 for Opus
	seq    uint16
	ts     uint32
	ssrc   uint32
}

func newPBXSender(t testing.TB, dtmfPT uint8) *pbxSender {
	return &pbxSender{t: t, dtmfPT: dtmfPT, frame: 160, seq: 500, ts: 0xfffff000, ssrc: 0x5195}
}

func (s *pbxSender) packet(pt uint8, marker bool, ts uint32, payload []byte) []byte {
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: s.seq, Timestamp: ts, SSRC: s.ssrc}, Payload: payload}).Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	s.seq++
	return b
}

// audio returns one 20 ms PCMU packet per 160 samples of pcm.
func (s *pbxSender) audio(pcm []int16) [][]byte {
	var out [][]byte
	for i := 0; i+160 <= len(pcm); i += 160 {
		payload := make([]byte, 160)
		g711.EncodeUlaw(pcm[i:i+160], payload)
		out = append(out, s.packet(0, false, s.ts, payload))
		s.ts += 160
	}
	return out
}

// digit returns a digit's events, one per 20 ms, the end three times;
// keep says which are sent (nil: all). The audio after resumes after the
// last end packet (the timestamps follow the PBX's clock).
func (s *pbxSender) digit(r rune, d time.Duration, keep func(i int) bool) [][]byte {
	code, _ := digitCode(r)
	n := int(d / (20 * time.Millisecond))
	var out [][]byte
	for i := 0; i < n+2; i++ {
		dur := uint16(160 * min(i+1, n))
		payload := []byte{code, 10, byte(dur >> 8), byte(dur)}
		if i >= n-1 {
			payload[1] |= 0x80
		}
		p := s.packet(s.dtmfPT, i == 0, s.ts, payload)
		if keep == nil || keep(i) {
			out = append(out, p)
		}
	}
	s.ts += uint32(n+2) * s.frame
	return out
}

// runPBX feeds the PBX's packets one per 20 ms (a nil one is a 20 ms gap)
// with the pacer's first frame 5 ms after the first, on a simulated clock,
// and lets the pacer send as many frames as there are packets and extra
// more.
func runPBX(b *Bridge, clock *int64, pkts [][]byte, extra int) { runPBXFrom(b, clock, pkts, 0, extra) }

// simPacer is the bridge's pacer on its simulated clock: the real
// schedule, shifts and all, without the timer.
type simPacer struct {
	b     *Bridge
	clock *int64
	s     schedule
}

// newSimPacer starts the schedule with a frame due at start (ns).
func newSimPacer(b *Bridge, clock *int64, start int64) *simPacer {
	return &simPacer{b: b, clock: clock, s: schedule{start: time.Unix(0, start), period: 20 * time.Millisecond}}
}

// next is when the next frame is due (ns).
func (sp *simPacer) next() int64 { return sp.s.next().UnixNano() }

// tick sends the next frame, on time.
func (sp *simPacer) tick() {
	*sp.clock = sp.next()
	sp.s.run(sp.s.next(), sp.b.s2w.sendFrame, func(int64) { panic("a simulated pacer stalled") })
}

// feed hands the PBX's packets (at[i] ns; nil: none) to the bridge and runs
// the pacer from tick0 ns for frames frames, in time order (a packet
// before a frame due at the same time).
func feed(b *Bridge, clock *int64, pkts [][]byte, at func(i int) int64, tick0 int64, frames int) {
	sp := newSimPacer(b, clock, tick0)
	for i, sent := 0, 0; i < len(pkts) || sent < frames; {
		if i < len(pkts) && (sent == frames || at(i) <= sp.next()) {
			*clock = at(i)
			if pkts[i] != nil {
				b.handleSIPPacket(pkts[i])
			}
			i++
			continue
		}
		sp.tick()
		sent++
	}
}

// simClock gives the bridge a simulated clock.
func simClock(b *Bridge) *int64 {
	var now int64
	b.s2w.now = func() int64 { return now }
	return &now
}

// checkWhatsAppStream checks the stream toward WhatsApp: one SSRC, one
// sequence, Opus on 111 and events on 126 only, every packet one 20 ms
// slot: an Opus packet's timestamp is the slot's, an event's is its first
// slot's, and the Opus after an event continues the slots it took.
func checkWhatsAppStream(t testing.TB, pkts []rtp.Packet) {
	t.Helper()
	slot := pkts[0].Timestamp
	for i, p := range pkts {
		if p.SSRC != 0xfeed || p.PayloadType != 111 && p.PayloadType != 126 {
			t.Fatalf("packet %d: %+v", i, p.Header)
		}
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
		if p.PayloadType == 111 && p.Timestamp != slot {
			t.Fatalf("packet %d: Opus at %d, want %d", i, p.Timestamp, slot)
		}
		if p.PayloadType == 126 && p.Marker && p.Timestamp != slot {
			t.Fatalf("packet %d: event starts at %d, want %d", i, p.Timestamp, slot)
		}
		slot += 960
	}
}

// The PBX's RFC 4733 digits reach WhatsApp as PT 126 events in the one
// WhatsApp SSRC, in the Opus packets' sequence, sent by the pacer in place
// of Opus frames: a whole digit, one of which only the ends came, the same
// digit again, and one whose ends were all lost (it ends when audio comes
// back). Timestamps stay on the 48 kHz slots; durations are 8 kHz units.
func TestDTMFSIPToWhatsAppEvents(t *testing.T) {
	var log digitLog
	b, _, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, WhatsAppSSRC: 0xfeed, SIPDTMFPayloadType: 101, OnDigit: log.on})
	clock := simClock(b)
	pbx := newPBXSender(t, 101)
	quiet := make([]int16, 160*10)
	var pkts [][]byte
	pkts = append(pkts, pbx.audio(quiet)...)
	pkts = append(pkts, pbx.digit('5', 120*time.Millisecond, nil)...)
	pkts = append(pkts, pbx.audio(quiet)...)
	pkts = append(pkts, pbx.digit('9', 100*time.Millisecond, func(i int) bool { return i >= 4 })...)
	pkts = append(pkts, pbx.audio(quiet)...)
	pkts = append(pkts, pbx.digit('5', 60*time.Millisecond, nil)...)
	pkts = append(pkts, pbx.audio(quiet)...)
	pkts = append(pkts, pbx.digit('0', 200*time.Millisecond, func(i int) bool { return i < 8 })...)
	pkts = append(pkts, pbx.audio(append(quiet, quiet...))...)
	runPBX(b, clock, pkts, 5)

	out := unmarshal(t, wa.out)
	checkWhatsAppStream(t, out)
	evs := eventsIn(t, out, 126)
	if got := digitsOf(evs); got != "5950" {
		t.Fatalf("digits %q, want 5950", got)
	}
	for i, want := range []uint16{960, 800, 480, 1600} {
		checkEvent(t, evs[i], want, 160)
	}
	if log.from("sip") != "5950" || log.from("whatsapp") != "" {
		t.Fatalf("OnDigit %v", log.got)
	}
	if st := b.Stats().SIPToWhatsApp; st.Digits != 4 || st.DigitsSent != 4 || st.TelephoneEvents != 8+3+5+8 || st.Lost != 4+4 || st.Late+st.Underruns+st.Resets != 0 {
		t.Fatalf("stats %v", st)
	}
	if n := len(out); n != len(pkts)+5 {
		t.Fatalf("%d packets toward WhatsApp in %d frames", n, len(pkts)+5)
	}
}

// SIP INFO digits handed in with SendDigitToWhatsApp go out the same way,
// with the duration asked for (at least 40 ms), one after the other.
func TestSendDigitToWhatsApp(t *testing.T) {
	b, _, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, WhatsAppSSRC: 0xfeed, DTMFMode: DTMFModeInfo})
	clock := simClock(b)
	for _, r := range "*0#" {
		if err := b.SendDigitToWhatsApp(r, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SendDigitToWhatsApp('A', 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	runPBX(b, clock, nil, 40)
	out := unmarshal(t, wa.out)
	checkWhatsAppStream(t, out)
	evs := eventsIn(t, out, 126)
	if got := digitsOf(evs); got != "*0#A" {
		t.Fatalf("digits %q", got)
	}
	for i, want := range []uint16{800, 800, 800, 320} {
		checkEvent(t, evs[i], want, 0)
	}
	if st := b.Stats().SIPToWhatsApp; st.Digits != 0 || st.DigitsSent != 4 {
		t.Fatalf("stats %v", st)
	}
}

// In-band from the PBX: tones in its PCMU audio are found by the detector
// and go to WhatsApp as PT 126 events (and to OnDigit); speech-like audio,
// a 1 kHz tone and silence give none.
func TestDTMFSIPToWhatsAppInband(t *testing.T) {
	var log digitLog
	b, _, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, WhatsAppSSRC: 0xfeed, DTMFMode: DTMFModeInband, OnDigit: log.on})
	clock := simClock(b)
	pbx := newPBXSender(t, 0)
	var pcm []int16
	pcm = append(pcm, speechLike(8000, 3*time.Second, 7)...)
	pcm = append(pcm, toneSequence("2580", 8000, 100*time.Millisecond, 100*time.Millisecond)...)
	tone := make([]int16, 8000)
	for i := range tone {
		tone[i] = int16(12000 * sinAt(1000, i, 8000))
	}
	pcm = append(pcm, tone...)
	pcm = append(pcm, make([]int16, 8000)...)
	pcm = append(pcm, toneSequence("*", 8000, 60*time.Millisecond, 100*time.Millisecond)...)
	runPBX(b, clock, pbx.audio(pcm), 10)
	out := unmarshal(t, wa.out)
	checkWhatsAppStream(t, out)
	evs := eventsIn(t, out, 126)
	if got := digitsOf(evs); got != "2580*" {
		t.Fatalf("digits %q, want 2580*", got)
	}
	for i, want := range []uint16{800, 800, 800, 800, 480} {
		checkEvent(t, evs[i], want, 200)
	}
	if log.from("sip") != "2580*" {
		t.Fatalf("OnDigit %v", log.got)
	}
}

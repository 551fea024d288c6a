package rtpbridge

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// waDigit plays WhatsApp sending a digit: telephone-events on PT 126 in
// place of audio, in the audio's sequence space, stamped with the next
// audio timestamp on the 48 kHz clock, durations in 8 kHz units, one packet
// per 20 ms and the end packet three times. keep says which of the packets
// arrive (nil: all). The audio resumes after the digit.
func (s *whatsAppSender) digit(r rune, d time.Duration, keep func(i int) bool) [][]byte {
	code, _ := digitCode(r)
	n := int(d / (20 * time.Millisecond))
	var out [][]byte
	for i := 0; i < n+2; i++ {
		dur := uint16(160 * min(i+1, n))
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 126, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc, Marker: i == 0},
			Payload: []byte{code, 10, byte(dur >> 8), byte(dur)}}
		if i >= n-1 {
			p.Payload[1] |= 0x80 // the end, three times
		}
		s.seq++
		if keep != nil && !keep(i) {
			continue
		}
		b, err := p.Marshal()
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, b)
	}
	s.ts += uint32(n * 960)
	return out
}

// gotEvent is one telephone-event as a receiver sees it.
type gotEvent struct {
	ts   uint32
	code uint8
	pkts []rtp.Packet
	evs  []eventPacket
}

// eventsIn groups the packets of payload type pt by event (timestamp and
// code), in order of appearance.
func eventsIn(t testing.TB, pkts []rtp.Packet, pt uint8) []*gotEvent {
	t.Helper()
	var out []*gotEvent
	for _, p := range pkts {
		if p.PayloadType != pt {
			continue
		}
		ev, ok := parseEvent(p.Payload)
		if !ok || len(p.Payload) != 4 {
			t.Fatalf("event payload % x", p.Payload)
		}
		if len(out) == 0 || out[len(out)-1].ts != p.Timestamp || out[len(out)-1].code != ev.code {
			out = append(out, &gotEvent{ts: p.Timestamp, code: ev.code})
		}
		e := out[len(out)-1]
		e.pkts = append(e.pkts, p)
		e.evs = append(e.evs, ev)
	}
	return out
}

func digitsOf(evs []*gotEvent) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteRune(codeDigit(e.code))
	}
	return b.String()
}

// checkEvent checks one event's RFC 4733 structure: marker on the first
// packet only, one timestamp, durations growing, the last three packets
// (and only they) ends with one duration, which is want ± tol.
func checkEvent(t testing.TB, e *gotEvent, want, tol uint16) {
	t.Helper()
	n := len(e.evs)
	if n < endRepeats+1 {
		t.Fatalf("event %c: %d packets, want a start and %d ends", codeDigit(e.code), n, endRepeats)
	}
	for i, p := range e.pkts {
		ev := e.evs[i]
		if p.Marker != (i == 0) {
			t.Fatalf("event %c packet %d: marker %v", codeDigit(e.code), i, p.Marker)
		}
		if ev.end != (i >= n-endRepeats) {
			t.Fatalf("event %c packet %d of %d: end %v", codeDigit(e.code), i, n, ev.end)
		}
		if i > 0 && ev.dur < e.evs[i-1].dur {
			t.Fatalf("event %c packet %d: duration %d after %d", codeDigit(e.code), i, ev.dur, e.evs[i-1].dur)
		}
		if ev.end && ev.dur != e.evs[n-1].dur {
			t.Fatalf("event %c: end durations differ: %d, %d", codeDigit(e.code), ev.dur, e.evs[n-1].dur)
		}
	}
	if d := e.evs[n-1].dur; d+tol < want || d > want+tol {
		t.Fatalf("event %c lasted %d units, want %d ± %d", codeDigit(e.code), d, want, tol)
	}
}

// digitLog records OnDigit calls.
type digitLog struct {
	mu  sync.Mutex
	got map[string]string
}

func (l *digitLog) on(from string, r rune) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string]string{}
	}
	l.got[from] += string(r)
}

func (l *digitLog) from(side string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[side]
}

// WhatsApp's digits reach the PBX as RFC 4733 events on its payload type,
// one per digit, whatever was lost of them: a whole digit, one whose first
// packets were lost, one of which only the end packets came, the same
// digit twice, and one that came without any marker bit. The events share
// the SIP stream's SSRC and sequence with the audio, sit where the digit
// fell in the audio (the audio never overlaps them) and have the RFC 4733
// shape, durations in 8 kHz units.
func TestDTMFWhatsAppToSIPEvents(t *testing.T) {
	var log digitLog
	b, sip, _ := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPSSRC: 0x51b, SIPDTMFPayloadType: 101, OnDigit: log.on})
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	feed := func(pkts ...[]byte) {
		for _, p := range pkts {
			b.handleWhatsAppPacket(p)
		}
	}
	audio := func(n int) {
		for range n {
			feed(src.next())
		}
	}
	audio(10)
	feed(src.digit('1', 100*time.Millisecond, nil)...)
	audio(10)
	feed(src.digit('2', 120*time.Millisecond, func(i int) bool { return i >= 2 })...) // start and first update lost
	audio(10)
	feed(src.digit('3', 80*time.Millisecond, func(i int) bool { return i >= 3 })...) // only the three ends
	audio(10)
	feed(src.digit('3', 60*time.Millisecond, nil)...)
	audio(10)
	noMarker := src.digit('#', 100*time.Millisecond, nil)
	noMarker[0][1] &^= 0x80
	feed(noMarker...)
	audio(10)

	pkts := unmarshal(t, sip.out)
	evs := eventsIn(t, pkts, 101)
	if got := digitsOf(evs); got != "1233#" {
		t.Fatalf("digits %q, want 1233#", got)
	}
	for i, want := range []uint16{800, 960, 640, 480, 800} {
		checkEvent(t, evs[i], want, 0)
	}
	// One SSRC, one sequence, audio and events alike.
	for i, p := range pkts {
		if p.SSRC != 0x51b || p.PayloadType != 0 && p.PayloadType != 101 {
			t.Fatalf("packet %d: %+v", i, p.Header)
		}
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
	}
	// Each event sits right after the audio before it, and the audio after
	// it starts where it ends (durations are 8 kHz units, the PCMU clock's).
	for _, e := range evs {
		first := e.pkts[0].SequenceNumber
		var before, after *rtp.Packet
		for i := range pkts {
			p := &pkts[i]
			if p.PayloadType == 0 && int16(p.SequenceNumber-first) < 0 {
				before = p
			}
			if p.PayloadType == 0 && int16(p.SequenceNumber-first) > 0 && after == nil {
				after = p
			}
		}
		end := e.ts + uint32(e.evs[len(e.evs)-1].dur)
		if before.Timestamp+160 != e.ts || after.Timestamp != end || !after.Marker {
			t.Fatalf("event %c at %d-%d: audio before at %d, after at %d (marker %v)",
				codeDigit(e.code), e.ts, end, before.Timestamp, after.Timestamp, after.Marker)
		}
	}
	if log.from("whatsapp") != "1233#" || log.from("sip") != "" {
		t.Fatalf("OnDigit: %v", log.got)
	}
	st := b.Stats().WhatsAppToSIP
	if st.Digits != 5 || st.DigitsSent != 5 || st.Lost != 2+3 || st.Concealed+st.FECRecovered != 0 {
		t.Fatalf("stats %v", st)
	}
	if audioPkts := len(pkts) - len(evs[0].pkts) - len(evs[1].pkts) - len(evs[2].pkts) - len(evs[3].pkts) - len(evs[4].pkts); audioPkts != 60 {
		t.Fatalf("%d audio packets, want 60", audioPkts)
	}
}

// A digit whose end packets are all lost ends when WhatsApp's audio comes
// back; one followed at once by another digit ends there. Both get their
// three end packets toward the PBX.
func TestDTMFWhatsAppToSIPLostEnds(t *testing.T) {
	b, sip, _ := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPDTMFPayloadType: 96})
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for range 5 {
		b.handleWhatsAppPacket(src.next())
	}
	for _, p := range src.digit('7', 100*time.Millisecond, func(i int) bool { return i < 4 }) {
		b.handleWhatsAppPacket(p)
	}
	for range 5 {
		b.handleWhatsAppPacket(src.next())
	}
	for _, p := range src.digit('8', 100*time.Millisecond, func(i int) bool { return i < 3 }) {
		b.handleWhatsAppPacket(p)
	}
	for _, p := range src.digit('9', 100*time.Millisecond, nil) {
		b.handleWhatsAppPacket(p)
	}
	for range 5 {
		b.handleWhatsAppPacket(src.next())
	}
	evs := eventsIn(t, unmarshal(t, sip.out), 96)
	if got := digitsOf(evs); got != "789" {
		t.Fatalf("digits %q", got)
	}
	checkEvent(t, evs[0], 640, 0) // four packets seen: 640 units
	checkEvent(t, evs[1], 480, 0)
	checkEvent(t, evs[2], 800, 0)
}

// In-band: WhatsApp's digits become Q.23 tone pairs in the PCMU stream, for
// as long as each event lasts (whatever was lost of it), and our detector
// finds exactly them after the G.711 round trip. A digit queued with
// SendDigitToSIP is played as a tone too.
func TestDTMFWhatsAppToSIPInband(t *testing.T) {
	for _, codec := range []Codec{pcmu, {"G722", 9, 8000}} {
		t.Run(codec.Name, func(t *testing.T) {
			var log digitLog
			b, sip, _ := newDrivenBridgeWith(t, Config{SIPCodec: codec, DTMFMode: DTMFModeInband, SIPDTMFPayloadType: 101, OnDigit: log.on})
			src := newWhatsAppSender(t, 1000, 3000, 20, false)
			audio := func(n int) {
				for range n {
					b.handleWhatsAppPacket(src.next())
				}
			}
			audio(10)
			for i, r := range "159#" {
				var keep func(int) bool
				switch i {
				case 1:
					keep = func(i int) bool { return i >= 2 }
				case 2:
					keep = func(i int) bool { return i >= 4 } // ends only
				}
				for _, p := range src.digit(r, 100*time.Millisecond, keep) {
					b.handleWhatsAppPacket(p)
				}
				audio(10)
			}
			if err := b.SendDigitToSIP('D', 80*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			audio(20)
			pkts := unmarshal(t, sip.out)
			checkStream(t, pkts[:1], codec.PayloadType, pkts[0].SSRC, 160, 0)
			for i, p := range pkts {
				if p.PayloadType != codec.PayloadType {
					t.Fatalf("packet %d: payload type %d (no events in-band)", i, p.PayloadType)
				}
				if i > 0 && (p.SequenceNumber != pkts[i-1].SequenceNumber+1 || int32(p.Timestamp-pkts[i-1].Timestamp) < 160) {
					t.Fatalf("packet %d: seq %d ts %d after %d %d", i, p.SequenceNumber, p.Timestamp, pkts[i-1].SequenceNumber, pkts[i-1].Timestamp)
				}
			}
			var pcm []int16
			if codec.Name == "PCMU" {
				pcm = decodeG711(pkts, false)
			} else {
				pcm = decodeG722(pkts)
			}
			rate := 8000
			if codec.Name != "PCMU" {
				rate = 16000
			}
			got, durs := detectAll(rate, pcm, rate/50)
			t.Logf("found %q lasting %v", got, durs)
			if got != "159#D" {
				t.Fatalf("found %q, want 159#D", got)
			}
			for i, d := range durs {
				want := 100 * time.Millisecond
				if i == 4 {
					want = 80 * time.Millisecond
				}
				if d < want-25*time.Millisecond || d > want+15*time.Millisecond {
					t.Fatalf("digit %d lasted %v, want about %v", i, d, want)
				}
			}
			if log.from("whatsapp") != "159#" {
				t.Fatalf("OnDigit: %v", log.got)
			}
			if st := b.Stats().WhatsAppToSIP; st.Digits != 4 || st.DigitsSent != 5 {
				t.Fatalf("stats %v", st)
			}
		})
	}
}

// DTMFMode "info": WhatsApp's digits only go to OnDigit (the gateway sends
// SIP INFO); the PBX gets the audio pause and nothing else. SendDigitToSIP
// still sends events when the PBX negotiated them.
func TestDTMFWhatsAppToSIPInfo(t *testing.T) {
	var log digitLog
	b, sip, _ := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, DTMFMode: DTMFModeInfo, SIPDTMFPayloadType: 101, OnDigit: log.on})
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for range 5 {
		b.handleWhatsAppPacket(src.next())
	}
	for _, p := range src.digit('4', 100*time.Millisecond, nil) {
		b.handleWhatsAppPacket(p)
	}
	for range 5 {
		b.handleWhatsAppPacket(src.next())
	}
	pkts := unmarshal(t, sip.out)
	if len(eventsIn(t, pkts, 101)) != 0 || len(pkts) != 10 || log.from("whatsapp") != "4" {
		t.Fatalf("%d packets, %d events, OnDigit %v", len(pkts), len(eventsIn(t, pkts, 101)), log.got)
	}
	if err := b.SendDigitToSIP('6', 60*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		b.handleWhatsAppPacket(src.next())
	}
	pkts = unmarshal(t, sip.out)
	evs := eventsIn(t, pkts, 101)
	if digitsOf(evs) != "6" {
		t.Fatalf("events %q", digitsOf(evs))
	}
	checkEvent(t, evs[0], 480, 0)
	// The event takes the place of three frames of audio: 60 ms.
	if n := len(evs[0].pkts); n != 2+endRepeats || len(pkts) != 10+n+5 {
		t.Fatalf("%d event packets, %d in all", n, len(pkts))
	}
	checkSeqAndTS(t, pkts, 160)
	if st := b.Stats().WhatsAppToSIP; st.Digits != 1 || st.DigitsSent != 1 {
		t.Fatalf("stats %v", st)
	}
}

// checkSeqAndTS checks a stream's sequence is contiguous and that every
// audio packet comes at least a frame (step units) after the one before it
// or after the end of the event before it.
func checkSeqAndTS(t testing.TB, pkts []rtp.Packet, step uint32) {
	t.Helper()
	var next uint32
	for i, p := range pkts {
		if i > 0 && p.SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, p.SequenceNumber, pkts[i-1].SequenceNumber)
		}
		if ev, ok := parseEvent(p.Payload); ok && len(p.Payload) == 4 && p.PayloadType >= 96 {
			next = max(next, p.Timestamp+uint32(ev.dur))
			continue
		}
		if i > 0 && int32(p.Timestamp-next) < 0 {
			t.Fatalf("packet %d: audio at %d overlaps what came before (until %d)", i, p.Timestamp, next)
		}
		next = p.Timestamp + step
	}
}

// Bad digits and a closed bridge are refused.
func TestSendDigitErrors(t *testing.T) {
	b, _, _ := newDrivenBridgeWith(t, Config{SIPCodec: Codec{"opus", 107, 48000}})
	if err := b.SendDigitToSIP('5', 0); err == nil {
		t.Fatal("Opus without telephone-event took a digit")
	}
	if err := b.SendDigitToWhatsApp('x', 0); err == nil {
		t.Fatal("x accepted")
	}
	for range digitQueueLen {
		if err := b.SendDigitToWhatsApp('1', 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SendDigitToWhatsApp('1', 0); err == nil {
		t.Fatal("a full queue took more")
	}
	b.Close()
	if err := b.SendDigitToWhatsApp('1', 0); err == nil {
		t.Fatal("closed bridge took a digit")
	}
}

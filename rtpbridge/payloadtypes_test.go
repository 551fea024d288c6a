package rtpbridge

import (
	"strings"
	"testing"
	"time"
)

// restampPT moves WhatsApp's packets from Meta's payload types to opusPT
// and dtmfPT, as another offer could have negotiated them.
func restampPT(pkts [][]byte, opusPT, dtmfPT uint8) {
	for _, p := range pkts {
		switch p[1] & 0x7f {
		case metaOpusPT:
			p[1] = p[1]&0x80 | opusPT
		case metaDTMFPT:
			p[1] = p[1]&0x80 | dtmfPT
		}
	}
}

// The payload types toward and from WhatsApp are the offer's, both ways:
// Opus on 96 and telephone-event on 97 here; a packet on Meta's usual 126
// is then no telephone-event.
func TestWhatsAppPayloadTypesAsNegotiated(t *testing.T) {
	var log digitLog
	b, sip, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPDTMFPayloadType: 101, WhatsAppOpusPT: 96, WhatsAppDTMFPT: 97, WhatsAppSSRC: 0xfeed, OnDigit: log.on})
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	var in [][]byte
	for range 5 {
		in = append(in, src.next())
	}
	in = append(in, src.digit('7', 100*time.Millisecond, nil)...)
	for range 5 {
		in = append(in, src.next())
	}
	restampPT(in, 96, 97)
	for _, p := range in {
		b.handleWhatsAppPacket(p)
	}
	b.handleWhatsAppPacket(src.digit('1', 40*time.Millisecond, nil)[0])
	if got := digitsOf(eventsIn(t, unmarshal(t, sip.out), 101)); got != "7" || log.from("whatsapp") != "7" {
		t.Fatalf("digits to the PBX %q, OnDigit %v", got, log.got)
	}
	if st := b.Stats().WhatsAppToSIP; st.TelephoneEvents != 7 || st.OtherPT != 1 || st.Malformed != 0 {
		t.Fatalf("stats %v", st)
	}

	pbxSendsDigit5(t, b)
	out := unmarshal(t, wa.out)
	for i, p := range out {
		if p.PayloadType != 96 && p.PayloadType != 97 {
			t.Fatalf("packet %d toward WhatsApp on PT %d", i, p.PayloadType)
		}
	}
	if got := digitsOf(eventsIn(t, out, 97)); got != "5" {
		t.Fatalf("digits toward WhatsApp %q", got)
	}
}

// An offer without telephone-event: the PBX's digits are reported and
// counted unsent, nothing but Opus goes to WhatsApp, SendDigitToWhatsApp
// fails, and WhatsApp's packets on 126 are no digits.
func TestWhatsAppWithoutTelephoneEvent(t *testing.T) {
	var log digitLog
	b, sip, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPDTMFPayloadType: 101, WhatsAppOpusPT: metaOpusPT, WhatsAppSSRC: 0xfeed, OnDigit: log.on})
	if s := b.String(); !strings.Contains(s, "rfc4733/101 → OnDigit (whatsapp has no telephone-event) → whatsapp") {
		t.Fatalf("chain %s", s)
	}
	if err := b.SendDigitToWhatsApp('1', 0); err == nil || !strings.Contains(err.Error(), "no telephone-event") {
		t.Fatalf("SendDigitToWhatsApp: %v", err)
	}

	pbxSendsDigit5(t, b)
	for i, p := range unmarshal(t, wa.out) {
		if p.PayloadType != metaOpusPT {
			t.Fatalf("packet %d toward WhatsApp on PT %d", i, p.PayloadType)
		}
	}
	if st := b.Stats().SIPToWhatsApp; st.Digits != 1 || st.DigitsUnsent != 1 || st.DigitsSent != 0 || log.from("sip") != "5" {
		t.Fatalf("stats %v, OnDigit %v", st, log.got)
	}

	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	in := [][]byte{src.next()}
	in = append(in, src.digit('7', 60*time.Millisecond, nil)...)
	for _, p := range in {
		b.handleWhatsAppPacket(p)
	}
	if st := b.Stats().WhatsAppToSIP; st.TelephoneEvents != 0 || st.OtherPT != 5 || len(eventsIn(t, unmarshal(t, sip.out), 101)) != 0 || log.from("whatsapp") != "" {
		t.Fatalf("stats %v, OnDigit %v", st, log.got)
	}
}

// pbxSendsDigit5 plays the PBX sending 100 ms of quiet, an RFC 4733 '5'
// on PT 101, and 100 ms of quiet.
func pbxSendsDigit5(t *testing.T, b *Bridge) {
	t.Helper()
	clock := simClock(b)
	pbx := newPBXSender(t, 101)
	quiet := make([]int16, 160*5)
	pkts := append(pbx.audio(quiet), pbx.digit('5', 60*time.Millisecond, nil)...)
	pkts = append(pkts, pbx.audio(quiet)...)
	runPBX(b, clock, pkts, 5)
}

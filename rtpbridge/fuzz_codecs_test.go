package rtpbridge

import (
	"testing"

	"github.com/pion/rtp"
)

// fuzz_test.go fuzzes the PBX side with G.711 and in-band DTMF only. Here
// the PBX's packets go to the other decoders (G.722, PCMA, Opus passed
// through) with RFC 4733 DTMF (the default) and an OnDigit consumer, and
// WhatsApp's to a passthrough bridge: no panic, the playout buffer stays
// within its bound, and the pacer always sends.
func FuzzHandleSIPPacketCodecs(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(uint8(0), s)
	}
	g722, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 9, SequenceNumber: 9}, Payload: make([]byte, 160)}).Marshal()
	pcma, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: 9}, Payload: make([]byte, 160)}).Marshal()
	opus, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 107, SequenceNumber: 9}, Payload: []byte{0x78, 1, 2, 3}}).Marshal()
	ev, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 10, Marker: true}, Payload: []byte{5, 0x8a, 3, 0x20}}).Marshal()
	f.Add(uint8(0), g722)
	f.Add(uint8(1), pcma)
	f.Add(uint8(2), opus)
	for i := range 3 {
		f.Add(uint8(i), ev)
	}
	var bridges []*Bridge
	for _, c := range []Codec{g722Codec, {"PCMA", 8, 8000}, opusSIP} {
		b, _, _ := newDrivenBridgeWith(f, Config{SIPCodec: c, SIPDTMFPayloadType: 101, OnDigit: func(string, rune) {}})
		bridges = append(bridges, b)
	}
	f.Fuzz(func(t *testing.T, which uint8, pkt []byte) {
		b := bridges[int(which)%len(bridges)]
		b.handleSIPPacket(pkt)
		// Loose: the store counts samples at the codec's rate (at most a
		// second of 16 kHz G.722 is 16000) or, passing Opus through, frames.
		if n := b.s2w.play.held(); n > 16000 {
			t.Fatalf("playout buffer holds %d samples", n)
		}
		b.sendFrameToWhatsApp()
	})
}

// WhatsApp's packets into a bridge that passes Opus through to the PBX:
// no panic.
func FuzzHandleWhatsAppPacketPassthrough(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	b, _, _ := newDrivenBridgeWith(f, Config{SIPCodec: opusSIP, SIPSSRC: 0x51b, SIPDTMFPayloadType: 101, OnDigit: func(string, rune) {}})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b.handleWhatsAppPacket(pkt)
	})
}

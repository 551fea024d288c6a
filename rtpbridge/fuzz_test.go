package rtpbridge

import (
	"testing"

	"github.com/pion/rtp"
)

// fuzzSeeds are packets near the edges: valid Opus and G.711 packets, and
// headers broken every way RTP can be.
func fuzzSeeds(t *testing.F) [][]byte {
	src := newWhatsAppSender(t, 1000, 8000, 20, true)
	var seeds [][]byte
	for i := 0; i < 3; i++ {
		seeds = append(seeds, src.next())
	}
	seeds = append(seeds, g711Packets(t, 0, 800, 8000, 20, 1)...)
	ev, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 126, SequenceNumber: 3}, Payload: []byte{1, 0x80, 0, 160}}).Marshal()
	pbxEv, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 4, Marker: true}, Payload: []byte{11, 10, 0, 160}}).Marshal()
	cn, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 13, SequenceNumber: 5}, Payload: []byte{60}}).Marshal()
	seeds = append(seeds, pbxEv, cn)
	ext := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, CSRC: []uint32{1, 2}}, Payload: []byte{0x78, 1, 2}}
	_ = ext.SetExtension(1, []byte{0xff})
	extRaw, _ := ext.Marshal()
	seeds = append(seeds, ev, extRaw,
		nil, []byte{0x80}, make([]byte, 12),
		[]byte{0x8f, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, // 15 CSRCs, none there
		[]byte{0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff, 1},
		[]byte{0xa0, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x78, 200},
		[]byte{0x40, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x78},
		[]byte{0x80, 111, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0x0b, 0xff, 0xff},
		[]byte{0x80, 111, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0x0b, 0x83, 1},
		[]byte{0x80, 111, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0x0a, 0xff},
	)
	return seeds
}

// Whatever arrives from WhatsApp, the bridge neither panics nor sends
// anything but well-formed 20 ms packets and telephone-events to the PBX.
func FuzzHandleWhatsAppPacket(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	b, sip, _ := newDrivenBridgeWith(f, Config{SIPCodec: pcmu, SIPSSRC: 0x51b, SIPDTMFPayloadType: 101})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		sip.out = sip.out[:0]
		b.handleWhatsAppPacket(pkt)
		for _, p := range sip.out {
			h, payload, ok := parseRTP(p)
			if !ok || h.ssrc != 0x51b || !(h.pt == 0 && len(payload) == 160 || h.pt == 101 && len(payload) == 4) {
				t.Fatalf("sent %x", p)
			}
		}
	})
}

// Likewise from the PBX: the playout buffer never holds more than its
// bound (a second), and the pacer always sends.
func FuzzHandleSIPPacket(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	b, _, _ := newDrivenBridgeWith(f, Config{SIPCodec: pcmu, SIPDTMFPayloadType: 101, DTMFMode: DTMFModeInband})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b.handleSIPPacket(pkt)
		if n := b.s2w.play.held(); n > 8000 {
			t.Fatalf("playout buffer holds %d samples", n)
		}
		b.sendFrameToWhatsApp()
	})
}

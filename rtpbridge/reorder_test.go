package rtpbridge

import (
	"bytes"
	"testing"
)

// Packets from WhatsApp that come up to two places out of order are put
// back in order: the PBX gets exactly what it gets from the same stream in
// order, nothing counted lost. One that comes more than the window late is
// dropped (late) and its gap filled as a loss; a duplicate of a held packet
// is dropped too.
func TestWhatsAppReorderWindow(t *testing.T) {
	src := newWhatsAppSender(t, 1000, 8000, 20, true)
	src.depth = 0.45
	var in [][]byte
	for range 40 {
		in = append(in, src.next())
	}
	order := make([]int, 0, len(in))
	for i := range in {
		order = append(order, i)
	}
	move := func(from, to int) { // packet from arrives right after packet to
		var o []int
		for _, i := range order {
			if i != from {
				o = append(o, i)
			}
			if i == to {
				o = append(o, from)
			}
		}
		order = o
	}
	move(5, 6)   // swapped
	move(10, 12) // two places late
	move(20, 23) // three places late: the window has given up on it
	ref, refSIP, _ := newDrivenBridge(t, pcmu)
	b, sip, _ := newDrivenBridge(t, pcmu)
	for _, p := range in {
		ref.handleWhatsAppPacket(p)
	}
	for _, i := range order {
		b.handleWhatsAppPacket(in[i])
		if i == 30 {
			b.handleWhatsAppPacket(in[16]) // an old duplicate
		}
		if i == 22 {
			b.handleWhatsAppPacket(in[22]) // a duplicate of a held packet
		}
	}
	got, want := unmarshal(t, sip.out), unmarshal(t, refSIP.out)
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	checkStream(t, got, 0, 0x51b, 160, 160)
	for i := range got {
		same := bytes.Equal(got[i].Payload, want[i].Payload)
		if i < 20 && !same {
			t.Fatalf("packet %d differs from the in-order stream", i)
		}
		if i == 20 && same {
			t.Fatal("packet 20 came too late to be used, yet is there")
		}
	}
	st := b.Stats().WhatsAppToSIP
	if st.Reordered != 2 || st.Late != 3 || st.Lost != 1 || st.FECRecovered+st.Concealed != 1 {
		t.Fatalf("stats %v", st)
	}
}

// The window picks the held packet next in sequence order across the
// sequence number's wrap, and gives up once full or once held audio starts
// 60 ms past the expected point.
func TestReorderWindowOrder(t *testing.T) {
	w := reorderWindow{span: opusClock * reorderMs / 1000}
	for _, seq := range []uint16{1, 65535, 0} {
		if !w.put(rtpHeader{seq: seq, ts: uint32(seq) * 960}, []byte{byte(seq)}, 960) {
			t.Fatal("put failed")
		}
	}
	if !w.full(0) || w.put(rtpHeader{seq: 2}, nil, 0) {
		t.Fatal("three held is full")
	}
	for _, want := range []uint16{65535, 0, 1} {
		p, ok := w.takeFirst(65533)
		if !ok || p.h.seq != want || p.payload()[0] != byte(want) {
			t.Fatalf("took %d, want %d", p.h.seq, want)
		}
	}
	if _, ok := w.takeFirst(0); ok || w.n != 0 {
		t.Fatal("empty window gave a packet")
	}
	w.put(rtpHeader{seq: 9, ts: 10_000 + 2880}, nil, 960)
	if !w.full(10_000) || w.full(10_001) {
		t.Fatal("60 ms of held audio past the expected point is full, less is not")
	}
	if !w.holds(9) || w.holds(8) {
		t.Fatal("holds")
	}
}

// A held packet keeps a WhatsApp-sized payload in place and a longer one
// (up to an MTU) in a buffer the slot makes once; either comes back whole.
func TestReorderHeldPayloadSizes(t *testing.T) {
	var w reorderWindow
	for i, n := range []int{4, heldInline, heldInline + 1, maxPacket} {
		p := make([]byte, n)
		for k := range p {
			p[k] = byte(k + i)
		}
		if !w.put(rtpHeader{seq: uint16(i)}, p, 960) {
			t.Fatalf("%d bytes: no free slot", n)
		}
		got, ok := w.take(uint16(i))
		if !ok || !bytes.Equal(got.payload(), p) {
			t.Fatalf("%d bytes: held payload not given back whole", n)
		}
	}
}

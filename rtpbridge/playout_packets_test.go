package rtpbridge

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// Passthrough payloads of every size come out as they went in: the usual
// small ones held in the slot, longer ones (up to an MTU) in the buffer a
// slot makes for them, and a small one after a long one in the same slot.
func TestPlayoutPacketSizes(t *testing.T) {
	p, _ := newTestPlayout(t, opusSIP)
	sizes := []int{1, 50, playSlotInline, playSlotInline + 1, 1275, maxPacket}
	slots := len(p.slots.ring)
	var pkts [][]byte
	for round := range 2 {
		for _, n := range sizes {
			pkt := make([]byte, n)
			for j := range pkt {
				pkt[j] = byte(len(pkts) + j)
			}
			pkts = append(pkts, pkt)
		}
		if round == 0 { // then the same sizes in reverse: each slot of the next round has held another size
			slices.Reverse(sizes)
		}
		for range slots - len(sizes) {
			pkts = append(pkts, []byte{0xee}) // the ring comes round to the same slots
		}
	}
	ms := func(v int) int64 { return int64(v) * int64(time.Millisecond) }
	out := make([]byte, maxPacket)
	pcm := make([]int16, 160)
	for i, pkt := range pkts {
		h := rtpHeader{seq: uint16(i), ts: uint32(1000 + 960*i), ssrc: 1}
		if r := p.putPacket(h, pkt, 960, ms(20*i)); r != putOK {
			t.Fatalf("packet %d (%d bytes): put %v", i, len(pkt), r)
		}
		kind, n, _, _, _ := p.get(ms(20*i+10), pcm, out)
		if kind != playPacket || !slices.Equal(out[:n], pkt) {
			t.Fatalf("packet %d (%d bytes): played %v with %d bytes, not the packet", i, len(pkt), kind, n)
		}
	}
}

func newTestSlots(t *testing.T) (*packetSlots, playGeometry) {
	t.Helper()
	s, err := newSetup(opusSIP, 0, 0, defaultFrame, opusWA(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var r packetSlots
	return &r, r.configure(s)
}

// The slots' geometry: the 48 kHz Opus clock, a second of 20 ms slots and
// two more, and half a frame to find the slot a packet mostly falls in.
func TestPacketSlotsGeometry(t *testing.T) {
	r, g := newTestSlots(t)
	if g.rate != opusClock || g.mul != 1 || g.frame != 960 || g.capacity != opusClock || g.mid != 480 || len(r.ring) != 52 {
		t.Fatalf("geometry %+v, %d slots", g, len(r.ring))
	}
}

// A 60 ms packet takes its slot and covers the next two; the same packet
// again is a duplicate; a discard empties the slots it spans.
func TestPacketSlotsCoverAndDiscard(t *testing.T) {
	r, g := newTestSlots(t)
	if !r.put(0, 3, 10, []byte{1, 2, 3}, 3*g.frame) || r.put(0, 3, 10, []byte{1, 2, 3}, 3*g.frame) {
		t.Fatal("the first put is refused, or the duplicate taken")
	}
	if r.quiet(0) || !r.quiet(g.frame) || r.held() != int(g.frame) {
		t.Fatalf("quiet %v/%v, held %d", r.quiet(0), r.quiet(g.frame), r.held())
	}
	pkt := make([]byte, maxPacket)
	var kinds []playKind
	for pos := int64(0); pos < 4*g.frame; pos += g.frame {
		kind, n, dur := r.play(pos, nil, pkt)
		if kind == playPacket && (n != 3 || dur != 3*g.frame || !slices.Equal(pkt[:n], []byte{1, 2, 3})) {
			t.Fatalf("packet of %d bytes lasting %d", n, dur)
		}
		kinds = append(kinds, kind)
	}
	if !slices.Equal(kinds, []playKind{playPacket, playCovered, playCovered, playSilence}) {
		t.Fatalf("played %v", kinds)
	}
	r.put(5*g.frame, 1, 5*g.frame, []byte{9}, g.frame)
	r.put(6*g.frame, 1, 6*g.frame, []byte{8}, g.frame)
	r.discard(5*g.frame, 6*g.frame)
	if r.held() != int(g.frame) || !r.quiet(5*g.frame) || r.quiet(6*g.frame) {
		t.Fatalf("after the discard: held %d", r.held())
	}
	r.silence(nil) // nothing to do: the pacer sends its own silence
}

// A slot keeps a payload up to playSlotInline in place; a longer one in a
// buffer sized to it in spillStep steps, made once and grown only for a
// longer one still: a steady stream of long payloads allocates nothing once
// the slot has seen its size. The payload comes back whole either way.
func TestPlaySlotStoreSizes(t *testing.T) {
	var s playSlot
	for _, n := range []int{40, playSlotInline, playSlotInline + 1, 300, 200, 1275, 1500, 2000} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*7 + n)
		}
		s.store(p)
		want := p[:min(n, maxPacket)]
		if got := s.payload(); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got %d back, not what was stored", n, len(got))
		}
		if n > playSlotInline && (len(s.big) < len(want) || len(s.big)%spillStep != 0 && len(s.big) != maxPacket) {
			t.Fatalf("%d bytes: buffer of %d", n, len(s.big))
		}
	}
	s = playSlot{}
	long := make([]byte, 300)
	s.store(long)
	if allocs := testing.AllocsPerRun(100, func() { s.store(long[:250]); s.store(long) }); allocs != 0 {
		t.Fatalf("%.1f allocations a store once the slot had seen the size", allocs)
	}
}

package rtpbridge

import (
	"fmt"
	"time"
)

// WhatsApp → SIP reordering: a packet that arrives ahead of a gap is held
// for a moment in case the missing one is only late (reordered on the
// way), instead of concealing the gap at once and then dropping the
// latecomer. The window is small: it gives up on the missing packet once
// reorderSlots packets are held or the held audio starts reorderSpan after
// the expected point, whichever comes first; in-order packets pass through
// without delay. Held packets are copies in fixed slots (no allocation but
// a slot's first payload longer than heldInline).
// Like the rest of this direction it runs on WhatsApp's packets, with no
// clock of its own: WhatsApp sends a packet every 20 ms, so the window
// gives up on a gap within reorderMs.

const (
	reorderSlots = 3
	reorderMs    = 60
)

// heldPacket is one packet waiting in the window.
type heldPacket struct {
	h      rtpHeader
	dur    uint32 // WhatsApp clock units of audio (0 for telephone-events)
	n      int
	inline [heldInline]byte
	big    []byte // for a payload that does not fit inline (storeSpill)
}

// heldInline is the payload a slot holds in place: WhatsApp's packets carry
// 40-120 bytes of Opus (SILK-WB) or 4 of telephone-event. Three MTU-sized
// slots made 4.5 KiB of every call's 105 KiB of heap for what is held only
// when packets come out of order. Longer payloads: spill.go.
const heldInline = 256

// store keeps payload (cut at maxPacket).
func (p *heldPacket) store(payload []byte) { p.n = storeSpill(p.inline[:], &p.big, payload) }

// payload is what store kept.
func (p *heldPacket) payload() []byte { return spilled(p.inline[:], p.big, p.n) }

// reorderWindow holds packets that arrived ahead of a gap.
type reorderWindow struct {
	span  int32 // reorderMs on WhatsApp's RTP clock
	slots [reorderSlots]heldPacket
	used  [reorderSlots]bool
	n     int
}

func (w *reorderWindow) String() string {
	return fmt.Sprintf("reorder %v", reorderMs*time.Millisecond)
}

// holds reports whether a packet with sequence number seq is held.
func (w *reorderWindow) holds(seq uint16) bool {
	for i := range w.slots {
		if w.used[i] && w.slots[i].h.seq == seq {
			return true
		}
	}
	return false
}

// put copies a packet into a free slot; ok is false if none is free.
func (w *reorderWindow) put(h rtpHeader, payload []byte, dur uint32) bool {
	for i := range w.slots {
		if !w.used[i] {
			s := &w.slots[i]
			s.h, s.dur = h, dur
			s.store(payload)
			w.used[i] = true
			w.n++
			return true
		}
	}
	return false
}

// full reports whether the window must give up on the gap: every slot
// taken, or held audio starting span or more after nextTS.
func (w *reorderWindow) full(nextTS uint32) bool {
	if w.n == reorderSlots {
		return true
	}
	for i := range w.slots {
		if w.used[i] && int32(w.slots[i].h.ts-nextTS) >= w.span {
			return true
		}
	}
	return false
}

// take removes and returns the held packet with sequence number seq.
func (w *reorderWindow) take(seq uint16) (*heldPacket, bool) {
	for i := range w.slots {
		if w.used[i] && w.slots[i].h.seq == seq {
			w.used[i] = false
			w.n--
			return &w.slots[i], true
		}
	}
	return nil, false
}

// takeFirst removes and returns the held packet nearest after next in
// sequence order.
func (w *reorderWindow) takeFirst(next uint16) (*heldPacket, bool) {
	best := -1
	for i := range w.slots {
		if w.used[i] && (best < 0 || uint16(w.slots[i].h.seq-next) < uint16(w.slots[best].h.seq-next)) {
			best = i
		}
	}
	if best < 0 {
		return nil, false
	}
	w.used[best] = false
	w.n--
	return &w.slots[best], true
}

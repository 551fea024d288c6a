package rtpbridge

import "time"

// packetSlots is the playout buffer's store for passthrough (Opus, or
// G.711 to a WhatsApp leg of the same law): a ring of frame slots, each
// holding the whole packet that starts in it (a packet longer than a frame
// marks the slots it lasts over as covered). The playout buffer's lock
// guards it.
type packetSlots struct {
	frame int64 // timeline units (the codec's RTP clock) per frame
	ring  []playSlot
}

// playSlot holds one passthrough frame.
type playSlot struct {
	pos     int64 // where its packet starts on the timeline (to tell duplicates)
	n       int   // payload bytes, 0 if empty
	dur     int64 // the packet's duration, timeline units
	covered bool  // a longer packet before it lasts over this frame
	inline  [playSlotInline]byte
	big     []byte // for a payload that does not fit inline (storeSpill)
}

// playSlotInline is the payload a slot holds in place (longer ones:
// spill.go): 20 ms of Opus at 64 kbit/s, or of G.711. Meta's audio is about
// 20 kbit/s (50-byte payloads) and a PBX's Opus seldom above 64; a slot of
// a whole MTU made the 52 slots of a passthrough call 80 KB, a third of the
// call's memory, and 320 bytes (128 kbit/s) 19.5 KiB. Opus allows 1275
// bytes a 20 ms frame, more for longer packets (RFC 6716 §3.2.1).
const playSlotInline = 160

// configure makes the slots hold s's packets, empty.
func (r *packetSlots) configure(s *sipSetup) playGeometry {
	r.frame = int64(s.frame.waTS)
	capacity := r.frame * (playCapacityMs / int64(s.frame.d/time.Millisecond))
	if n := int(capacity/r.frame) + 2; len(r.ring) != n {
		r.ring = make([]playSlot, n)
	} else {
		clear(r.ring)
	}
	// A packet takes the slot it mostly falls in: half a frame on.
	return playGeometry{rate: int64(s.codec.clock), mul: 1, frame: r.frame, capacity: capacity, mid: r.frame / 2}
}

func (r *packetSlots) release() { r.ring = nil }

func (r *packetSlots) slot(pos int64) *playSlot { return &r.ring[pos/r.frame%int64(len(r.ring))] }

// put keeps a packet starting at from and lasting dur units in the slot at
// first and marks the frames-1 slots after it covered. It reports false if
// the slot holds that very packet already.
func (r *packetSlots) put(first, frames, from int64, payload []byte, dur int64) bool {
	s := r.slot(first)
	if s.n > 0 && s.pos == from {
		return false
	}
	s.pos, s.dur, s.covered = from, dur, false
	s.store(payload)
	for k := int64(1); k < frames; k++ {
		if c := r.slot(first + k*r.frame); c.n == 0 {
			c.covered = true
		}
	}
	return true
}

// play takes the packet of the slot at pos into pkt.
func (r *packetSlots) play(pos int64, _ []int16, pkt []byte) (playKind, int, int64) {
	s := r.slot(pos)
	switch {
	case s.n > 0:
		n, dur := copy(pkt, s.payload()), s.dur
		s.n, s.covered = 0, false
		return playPacket, n, dur
	case s.covered:
		s.covered = false
		return playCovered, 0, 0
	}
	return playSilence, 0, 0
}

// silence: the pacer sends its own silence packet.
func (r *packetSlots) silence([]int16) {}

// discard empties the slots from from to to.
func (r *packetSlots) discard(from, to int64) {
	for pos := from; pos < to; pos += r.frame {
		s := r.slot(pos)
		s.n, s.covered = 0, false
	}
}

// quiet reports whether the slot at pos is empty (Opus is not decoded to
// look).
func (r *packetSlots) quiet(pos int64) bool { return r.slot(pos).n == 0 }

// held is the number of units of the packets held, a frame each (tests).
func (r *packetSlots) held() int {
	n := 0
	for i := range r.ring {
		if r.ring[i].n > 0 {
			n++
		}
	}
	return n * int(r.frame)
}

// store keeps payload in the slot (cut at maxPacket).
func (s *playSlot) store(payload []byte) { s.n = storeSpill(s.inline[:], &s.big, payload) }

// payload is what store kept.
func (s *playSlot) payload() []byte { return spilled(s.inline[:], s.big, s.n) }

package webrtc

import (
	"encoding/binary"
	"sync/atomic"
)

// byteRing is a single-producer single-consumer queue of variable-length
// entries in a byte array it is given once: each entry is a 2-byte length
// (little endian) and its bytes, laid one after the other. An entry that
// does not fit before the array's end starts again at its beginning: the
// bytes left at the end are skipped, marked by ringWrap when there is room
// for a length (fewer bytes than that are skipped without a mark, as both
// sides know).
//
// head and tail count bytes (prefixes, entries and skipped ends) consumed
// and produced since the start: they only grow, so tail-head is the bytes
// in use, and each side publishes its progress with one atomic store after
// it is done with the bytes (the producer's copy, the consumer's read).
// The positions in the array (wpos, rpos) are each side's own, followed
// by the same rule, so the array's size need not be a power of two.
//
// No lock, no allocation: one goroutine pushes (or callers serialise their
// pushes), one goroutine calls front and pop.
type byteRing struct {
	buf []byte

	// The producer's.
	tail atomic.Uint64
	wpos int
	_    [64]byte // the producer's and the consumer's own on lines of their own

	// The consumer's.
	head   atomic.Uint64
	rpos   int
	next   uint64 // head past the entry front returned
	nextAt int    // rpos past it
	peeked bool   // front returned an entry pop has not dropped yet
}

const (
	ringHdr  = 2      // an entry's length prefix
	ringWrap = 0xffff // the length marking the end's skipped bytes
)

// init gives the ring its array (empty, not shared yet).
func (r *byteRing) init(buf []byte) {
	*r = byteRing{buf: buf}
}

// maxEntry is the longest entry the ring takes: half the array, less the
// prefix, so that it fits the empty ring wherever the producer stands (the
// end it may skip is shorter than the entry).
func (r *byteRing) maxEntry() int { return min(len(r.buf)/2-ringHdr, ringWrap-1) }

// push copies p in as the newest entry; false when it does not fit now
// (the ring is too full: p is not taken) or ever (longer than maxEntry).
// The producer's.
func (r *byteRing) push(p []byte) bool {
	n := len(p)
	if n > r.maxEntry() {
		return false
	}
	tail := r.tail.Load()
	free := len(r.buf) - int(tail-r.head.Load())
	need := ringHdr + n
	pos := r.wpos
	if skip := len(r.buf) - pos; skip < need { // past the end: start again at 0
		if skip+need > free {
			return false
		}
		if skip >= ringHdr {
			binary.LittleEndian.PutUint16(r.buf[pos:], ringWrap)
		}
		tail += uint64(skip)
		pos = 0
	} else if need > free {
		return false
	}
	binary.LittleEndian.PutUint16(r.buf[pos:], uint16(n))
	copy(r.buf[pos+ringHdr:], p)
	r.wpos = pos + need
	r.tail.Store(tail + uint64(need)) // publishes the entry (and a skipped end)
	return true
}

// front is the oldest entry, in place, until pop; false when the ring is
// empty. The consumer's.
func (r *byteRing) front() ([]byte, bool) {
	head := r.head.Load()
	if head == r.tail.Load() {
		return nil, false
	}
	pos := r.rpos
	if skip := len(r.buf) - pos; skip < ringHdr || binary.LittleEndian.Uint16(r.buf[pos:]) == ringWrap {
		head += uint64(skip) // the producer started again at 0, with the entry published with it
		pos = 0
	}
	n := int(binary.LittleEndian.Uint16(r.buf[pos:]))
	r.nextAt = pos + ringHdr + n
	r.next = head + uint64(ringHdr+n)
	r.peeked = true
	return r.buf[pos+ringHdr : r.nextAt], true
}

// pop drops the entry front returned, giving its bytes back to the
// producer. The consumer's.
func (r *byteRing) pop() {
	if !r.peeked {
		return
	}
	r.peeked = false
	r.rpos = r.nextAt
	r.head.Store(r.next)
}

// used is the bytes in use (entries, prefixes and skipped ends).
func (r *byteRing) used() int { return int(r.tail.Load() - r.head.Load()) }

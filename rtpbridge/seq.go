package rtpbridge

// Receive-side sequence tracking: where each incoming packet stands against
// the one expected next (RFC 3550 §A.1 in spirit, without probation: the
// bridge has one sender per leg and restarts at once).

type seqVerdict uint8

const (
	seqNext    seqVerdict = iota // the packet expected next
	seqGap                       // packets are missing before this one
	seqLate                      // a duplicate or a packet older than the expected one
	seqRestart                   // first packet, new SSRC, or a jump too large for loss or reordering
)

const (
	maxMisorder = 100  // packets behind: older than this, the sender restarted its sequence
	maxDropout  = 3000 // packets ahead: further than this, likewise (RFC 3550 §A.1's figure)
)

type seqTracker struct {
	started bool
	ssrc    uint32
	next    uint16 // sequence number expected next
	nextTS  uint32 // timestamp expected next: last audio packet's timestamp plus its duration
}

// check classifies a packet; for seqGap, missing is how many packets are
// missing before it.
func (t *seqTracker) check(seq uint16, ssrc uint32) (v seqVerdict, missing int) {
	if !t.started || ssrc != t.ssrc {
		return seqRestart, 0
	}
	d := int(int16(seq - t.next))
	switch {
	case d == 0:
		return seqNext, 0
	case d > 0 && d <= maxDropout:
		return seqGap, d
	case d < 0 && d >= -maxMisorder:
		return seqLate, 0
	}
	return seqRestart, 0
}

// accept records an audio packet as played: its successor is expected next,
// dur timestamp units after it.
func (t *seqTracker) accept(seq uint16, ssrc uint32, ts, dur uint32) {
	t.started, t.ssrc, t.next, t.nextTS = true, ssrc, seq+1, ts+dur
}

// skip records a packet of the same stream that carries no audio (a
// telephone-event): the sequence moves on, the audio timestamp does not.
func (t *seqTracker) skip(seq uint16) { t.next = seq + 1 }

// tsGap is how far ts lies after the timestamp expected next (negative if
// before it).
func (t *seqTracker) tsGap(ts uint32) int32 { return int32(ts - t.nextTS) }

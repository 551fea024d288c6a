package rtpbridge

import "time"

// The pacer sends one frame toward WhatsApp per frame period from Start to
// Close, whatever the PBX does: the WhatsApp client hangs up after 20-30 s
// without media. Frames are due at start + k·period; each tick sends every
// frame that is due, so a late tick (GC pause, busy machine) is made up at
// once and the rate never drifts. After a stall longer than maxCatchUp
// frames the missed frames are skipped instead of burst out: skipped says
// how many, so the sender can move its timestamp over them.
//
// Each send may ask for the schedule's phase to move: start moves by the
// shift it returns (less than a period either way), so the next frame is
// due that much later (or earlier) and every one after keeps the new phase.
// The playout buffer uses it to tick a few ms after the PBX's packets come
// rather than wherever the call's start happened to put the ticks. The
// pacer never waits for anything but its own schedule.

const maxCatchUp = 5

// schedule is the pacer's timetable, apart from the timer so that tests can
// drive it with a clock of their own.
type schedule struct {
	start  time.Time // frame k is due at start + k·period
	period time.Duration
	sent   int64 // frames sent or skipped
}

// next is when the next frame is due.
func (s *schedule) next() time.Time { return s.start.Add(time.Duration(s.sent) * s.period) }

// due is how many frames are due by now (the first at start).
func (s *schedule) due(now time.Time) int64 {
	el := now.Sub(s.start)
	if el < 0 {
		return 0
	}
	return int64(el/s.period) + 1
}

// run sends the frames due at now, skipping all but the last of them after
// a stall. send gets how far behind its time its frame goes (≥ 0) and
// returns the shift it asks for.
func (s *schedule) run(now time.Time, send func(behind time.Duration) time.Duration, skipped func(frames int64)) {
	s.runUpTo(now, maxCatchUp+1, send, skipped)
}

// runUpTo is run sending at most most frames: a media worker sends one
// frame at a time and goes back to its heap, so that its calls' frames
// and its reads interleave when it is behind.
func (s *schedule) runUpTo(now time.Time, most int, send func(behind time.Duration) time.Duration, skipped func(frames int64)) {
	if n := s.due(now) - s.sent; n > maxCatchUp {
		skipped(n - 1)
		s.sent += n - 1
	}
	// Bounded: shifts that keep asking for earlier frames cannot keep it
	// here.
	for i := 0; i < most && s.sent < s.due(now); i++ {
		behind := max(now.Sub(s.next()), 0)
		s.sent++
		// Less than a period: a bad request cannot stall the stream or
		// make it burst.
		shift := min(max(send(behind), -s.period+1), s.period-1)
		s.start = s.start.Add(shift)
	}
}

// pacedHeap orders streams by when their next frame is due.
type pacedHeap []*pacedStream

func (h pacedHeap) Len() int           { return len(h) }
func (h pacedHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h pacedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *pacedHeap) Push(x any) {
	st := x.(*pacedStream)
	st.index = len(*h)
	*h = append(*h, st)
}
func (h *pacedHeap) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	st.index = -1
	*h = old[:len(old)-1]
	return st
}

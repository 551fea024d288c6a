package rtpbridge

import (
	"container/heap"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

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
	if n := s.due(now) - s.sent; n > maxCatchUp {
		skipped(n - 1)
		s.sent += n - 1
	}
	// Bounded: shifts that keep asking for earlier frames cannot keep it
	// here.
	for i := 0; i <= maxCatchUp && s.sent < s.due(now); i++ {
		behind := max(now.Sub(s.next()), 0)
		s.sent++
		// Less than a period: a bad request cannot stall the stream or
		// make it burst.
		shift := min(max(send(behind), -s.period+1), s.period-1)
		s.start = s.start.Add(shift)
	}
}

// A pacer goroutine keeps its streams in a heap by due time and sends each
// frame when it is due; between frames it sleeps on one timer. A call that
// transcodes has a pacer of its own: its frame costs an Opus encode (about
// 50 µs), and the scheduler can run each call's the moment it is due on
// whichever CPU is free (a shared goroutine would queue encodes behind one
// another; in a 200-call load run that made frames late). Passthrough
// frames cost a few µs, so those calls share a few pacers (one per CPU the
// runtime uses), which wake on a grid of pacerGrid and send every frame
// due within half a step of the wake: at 1,000 calls at most 2,000 wake-ups
// a second instead of 50,000, and no channel or timer per frame
// (docs/performance.md has the figures). A frame then goes
// out at most half a step before or after its time; its buffer is read at
// its due time either way. Sends on a shared pacer run one at a time on its
// goroutine, so they must not block.
const pacerGrid = time.Millisecond

// pacedStream is one call's schedule on a pacer.
type pacedStream struct {
	s       schedule
	send    func(behind time.Duration) time.Duration
	skipped func(frames int64)
	pacer   *pacer
	at      time.Duration // s.next() since the pacer's epoch, the heap's key
	index   int           // in pacer.streams; -1 once stopped
}

// pacer runs the schedules of its streams on one goroutine.
type pacer struct {
	mu      sync.Mutex // held while sends run, so stop waits out a send
	streams pacedHeap
	epoch   time.Time     // the grid's origin
	grid    time.Duration // 0: wake when each frame is due
	private bool          // one stream's: the goroutine ends with it
	wake    chan struct{}
}

var sharedPacers struct {
	once sync.Once
	all  []*pacer
	next atomic.Uint32
}

// startPacing paces send every period from now on (the first frame at
// once: it never waits for the other side) until stop: on a pacer of its
// own, or on one of the shared pacers.
func startPacing(period time.Duration, shared bool, send func(behind time.Duration) time.Duration, skipped func(frames int64)) *pacedStream {
	var p *pacer
	if shared {
		sharedPacers.once.Do(func() {
			for range max(runtime.GOMAXPROCS(0), 1) {
				p := &pacer{epoch: time.Now(), grid: pacerGrid, wake: make(chan struct{}, 1)}
				sharedPacers.all = append(sharedPacers.all, p)
				go p.runShared()
			}
		})
		p = sharedPacers.all[int(sharedPacers.next.Add(1))%len(sharedPacers.all)]
	} else {
		p = &pacer{epoch: time.Now(), private: true, wake: make(chan struct{}, 1)}
	}
	now := time.Now()
	st := &pacedStream{s: schedule{start: now, period: period}, send: send, skipped: skipped, pacer: p, at: now.Sub(p.epoch)}
	p.mu.Lock()
	heap.Push(&p.streams, st)
	first := st.index == 0
	p.mu.Unlock()
	if p.private {
		go p.runPrivate()
	} else if first {
		p.poke()
	}
	return st
}

// stop takes the stream off its pacer; once it returns, send is not called
// again (and a private pacer's goroutine is ending). It must not be called
// from send.
func (st *pacedStream) stop() {
	p := st.pacer
	p.mu.Lock()
	if st.index >= 0 {
		heap.Remove(&p.streams, st.index)
	}
	p.mu.Unlock()
	p.poke()
}

// poke wakes the pacer to look at its heap again.
func (p *pacer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// runShared and runPrivate name the two kinds in goroutine dumps.
func (p *pacer) runShared()  { p.run() }
func (p *pacer) runPrivate() { p.run() }

func (p *pacer) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		now := time.Since(p.epoch)
		for len(p.streams) > 0 {
			st := p.streams[0]
			if st.at-now > p.grid/2 {
				break
			}
			// A frame taken up to half a step early counts as on time.
			st.s.run(p.epoch.Add(max(now, st.at)), st.send, st.skipped)
			st.at = st.s.next().Sub(p.epoch)
			heap.Fix(&p.streams, 0)
			now = time.Since(p.epoch)
		}
		if p.private && len(p.streams) == 0 {
			p.mu.Unlock()
			return
		}
		sleep := time.Hour
		if len(p.streams) > 0 {
			next := p.streams[0].at
			if p.grid > 0 {
				next = next.Round(p.grid)
			}
			sleep = max(next-now, 0)
		}
		p.mu.Unlock()
		t.Reset(sleep)
		select {
		case <-t.C:
		case <-p.wake:
		}
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

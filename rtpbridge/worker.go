package rtpbridge

import (
	"container/heap"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Media workers run the calls' media: one per CPU the runtime uses, each
// owning a share of the calls (a call stays on the worker it was placed on).
// A worker is one goroutine that wakes on a grid of workerGrid and, at each
// tick, does all its calls' work that is due:
//
//  1. the PBX packets waiting in its calls' RTP sockets: one epoll_wait(2)
//     over all of them (without waiting), then one read per ready socket;
//     in the same epoll set the shared sockets (the ICE sockets every
//     call's WebRTC media arrives on, SharedSocket): whichever worker finds
//     one readable reads what it holds in batches and hands each packet to
//     its leg's queue;
//  2. the WhatsApp packets its calls' WebRTC legs queued since the last
//     tick (the legs say which: a bit per call, set as a packet is queued);
//  3. the frames due toward WhatsApp, from a heap of every call's pacer
//     schedule (pacer.go).
//
// So a call costs no goroutine, no timer, no channel hand-off and no
// wake-up of its own: at 200 calls the workers wake 2,000 times a second
// where per-call goroutines woke 30,000 times, and each wake-up does the
// work of many calls while its code and the runtime's are warm. A packet
// waits at most one step for its tick (half a step on average); a frame
// goes out at most half a step before or after its time (its buffer is read
// at its due time either way).
//
// Legs that cannot be polled (the interfaces below; test fakes, platforms
// without epoll) are read by a goroutine each, as before; their calls'
// pacing is still the worker's.
//
// A worker's lock is held while its tick runs and taken otherwise only when
// a call starts or ends on it: per packet nothing contends with another
// worker or another call.

// PolledReader is a leg a media worker reads without a goroutine of its
// own: TryReadPacket is ReadPacket that never waits (0 and no error when no
// packet is waiting). It is called from one goroutine at a time.
type PolledReader interface {
	PacketReader
	TryReadPacket(b []byte) (int, error)
}

// SocketReader is a PolledReader whose packets wait in its socket: the
// worker polls the socket's readiness (epoll) and reads the leg when it is
// readable.
type SocketReader interface {
	PolledReader
	SyscallConn() (syscall.RawConn, error)
}

// SignalingReader is a PolledReader that says when it has queued a packet:
// it calls the function last given to SetOnPacket (nil: none) after each,
// on its own goroutine; the function returns at once.
type SignalingReader interface {
	PolledReader
	SetOnPacket(f func())
}

// SharedSocket is a socket that many calls' packets arrive on together (the
// WhatsApp legs' ICE socket). The media workers poll it beside their calls'
// sockets while they have calls (SetPolled says when a worker starts and
// stops) and whichever finds it readable reads it with TryRead, which never
// waits, does nothing while another reads it, and hands each packet to its
// leg (a SignalingReader then signals its worker). While no worker polls
// it, its owner reads it.
type SharedSocket interface {
	SyscallConn() (syscall.RawConn, error)
	TryRead()
	SetPolled(on bool)
}

const (
	// workerGrid is the workers' step.
	workerGrid = time.Millisecond
	// maxPolledCalls bounds the calls a worker reads itself (the ready
	// bitmap's size); beyond it a call's legs get reader goroutines.
	maxPolledCalls = 4096
	// maxLegReadsPerTick bounds the WhatsApp packets read for one call in
	// one tick (after a stall the rest wait for the next ticks). A PBX
	// socket is read once per tick: after a stall its backlog drains at
	// 1,000 packets a second, 20 times as fast as it came.
	maxLegReadsPerTick = 64
)

// worker runs its calls' reads and pacing on one goroutine.
type worker struct {
	mu      sync.Mutex // held while a tick runs; placing and releasing a call take it
	streams pacedHeap
	epoch   time.Time // the grid's origin
	wake    chan struct{}

	calls  []*polledCall // by slot; nil: free
	free   []int32
	polled int                                // calls with a leg read here
	ready  [maxPolledCalls / 64]atomic.Uint64 // slots whose WhatsApp leg queued packets
	poll   *poller                            // nil where the platform has none
	buf    [maxPacket]byte

	// The shared sockets in the poller (tagged sharedTag(i)); nil: removed.
	shared     []SharedSocket
	sharedOn   bool          // SetPolled(true) given to them (the worker has polled calls)
	sharedRead time.Duration // since epoch: when this worker last read them

	load atomic.Int32 // calls placed here (pacing or reading)

	stats workerCounters
}

// workerCounters are a worker's figures, read atomically (WorkerStats).
type workerCounters struct {
	ticks     atomic.Uint64
	lateTicks atomic.Uint64 // ticks that began more than lateTick after their time
	maxLag    atomic.Int64  // ns: the latest a tick began after its time
	busy      atomic.Int64  // ns spent in ticks
	maxTick   atomic.Int64  // ns: the longest tick
}

// lateTick is how late a tick may begin before it counts as late: a frame
// is then at least this far behind its time.
const lateTick = 5 * time.Millisecond

// WorkerStats is one media worker's figures since the process started.
type WorkerStats struct {
	Calls     int           // calls on it now
	Ticks     uint64        // times it woke
	LateTicks uint64        // wake-ups more than 5 ms after their time
	MaxLag    time.Duration // the latest wake-up after its time
	Busy      time.Duration // time spent working
	MaxTick   time.Duration // the longest single wake-up's work
}

// Workers returns each media worker's figures, starting the workers if no
// call has yet (idle, they only wait).
func Workers() []WorkerStats {
	all := workers()
	out := make([]WorkerStats, len(all))
	for i, w := range all {
		c := &w.stats
		out[i] = WorkerStats{Calls: int(w.load.Load()), Ticks: c.ticks.Load(), LateTicks: c.lateTicks.Load(),
			MaxLag: time.Duration(c.maxLag.Load()), Busy: time.Duration(c.busy.Load()), MaxTick: time.Duration(c.maxTick.Load())}
	}
	return out
}

// tick records one wake-up that began lag after its time and worked for d.
func (c *workerCounters) tick(lag, d time.Duration) {
	c.ticks.Add(1)
	c.busy.Add(int64(d))
	if lag > lateTick {
		c.lateTicks.Add(1)
	}
	if int64(lag) > c.maxLag.Load() {
		c.maxLag.Store(int64(lag))
	}
	if int64(d) > c.maxTick.Load() {
		c.maxTick.Store(int64(d))
	}
}

// polledCall is one call's legs that a worker reads (under worker.mu).
type polledCall struct {
	b     *Bridge
	slot  int32
	gen   uint32 // tells a reused slot's readiness events from its old call's
	wa    SignalingReader
	sip   SocketReader
	sipRC syscall.RawConn
}

var mediaWorkers struct {
	once sync.Once
	all  []*worker
}

// workers starts the media workers the first time it is called.
func workers() []*worker {
	mediaWorkers.once.Do(func() {
		for range max(runtime.GOMAXPROCS(0), 1) {
			w := &worker{epoch: time.Now(), wake: make(chan struct{}, 1)}
			w.poll, _ = newPoller() // none: sockets get reader goroutines
			mediaWorkers.all = append(mediaWorkers.all, w)
			go w.run()
		}
	})
	return mediaWorkers.all
}

// pickWorker is the worker with the fewest calls; the caller counts its
// call there (load) and uncounts it when the call ends.
func pickWorker() *worker {
	all := workers()
	best := all[0]
	for _, w := range all[1:] {
		if w.load.Load() < best.load.Load() {
			best = w
		}
	}
	best.load.Add(1)
	return best
}

// startPacing paces send every period from now on (the first frame at
// once: it never waits for the other side) until stop.
func (w *worker) startPacing(period time.Duration, send func(behind time.Duration) time.Duration, skipped func(frames int64)) *pacedStream {
	now := time.Now()
	st := &pacedStream{s: schedule{start: now, period: period}, send: send, skipped: skipped, w: w, at: now.Sub(w.epoch)}
	w.mu.Lock()
	heap.Push(&w.streams, st)
	first := st.index == 0
	w.mu.Unlock()
	if first {
		w.poke()
	}
	return st
}

// pacedStream is one call's schedule on a worker.
type pacedStream struct {
	s       schedule
	send    func(behind time.Duration) time.Duration
	skipped func(frames int64)
	w       *worker
	at      time.Duration // s.next() since the worker's epoch, the heap's key
	index   int           // in worker.streams; -1 once stopped
}

// stop takes the stream off its worker; once it returns, send is not called
// again. It must not be called from send.
func (st *pacedStream) stop() {
	w := st.w
	w.mu.Lock()
	if st.index >= 0 {
		heap.Remove(&w.streams, st.index)
	}
	w.mu.Unlock()
	w.poke()
}

// pollSIP has the worker read b's PBX leg from now on. It reports false
// when it cannot (no poller, no free slot, a socket epoll refuses): the
// caller reads the leg with a goroutine then.
func (w *worker) pollSIP(b *Bridge, r SocketReader) bool {
	if w.poll == nil {
		return false
	}
	rc, err := r.SyscallConn()
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.callOf(b)
	if c == nil {
		return false
	}
	if err := w.poll.add(rc, c.slot, c.gen); err != nil {
		w.dropIfIdle(c)
		return false
	}
	c.sip, c.sipRC = r, rc
	w.addPolled()
	w.poke()
	return true
}

// pollWhatsApp has the worker read b's WhatsApp leg from now on (false: no
// free slot, the caller reads it with a goroutine).
func (w *worker) pollWhatsApp(b *Bridge, r SignalingReader) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.callOf(b)
	if c == nil {
		return false
	}
	c.wa = r
	w.addPolled()
	word, bit := &w.ready[c.slot/64], uint64(1)<<(c.slot%64)
	r.SetOnPacket(func() { word.Or(bit) })
	word.Or(bit) // what it queued before
	w.poke()
	return true
}

// callOf is b's slot, taken if it has none yet (nil: all are taken).
func (w *worker) callOf(b *Bridge) *polledCall {
	if b.polled != nil {
		return b.polled
	}
	var slot int32
	switch {
	case len(w.free) > 0:
		slot = w.free[len(w.free)-1]
		w.free = w.free[:len(w.free)-1]
	case len(w.calls) < maxPolledCalls:
		slot = int32(len(w.calls))
		w.calls = append(w.calls, nil)
	default:
		return nil
	}
	c := &polledCall{b: b, slot: slot, gen: nextGen.Add(1)}
	w.calls[slot] = c
	b.polled = c
	return c
}

var nextGen atomic.Uint32

// dropIfIdle frees c's slot if it reads no leg.
func (w *worker) dropIfIdle(c *polledCall) {
	if c.wa != nil || c.sip != nil {
		return
	}
	w.calls[c.slot] = nil
	w.free = append(w.free, c.slot)
	c.b.polled = nil
}

// release stops reading b's legs; once it returns the worker no longer
// touches b. The call is uncounted.
func (w *worker) release(b *Bridge) {
	w.mu.Lock()
	if c := b.polled; c != nil {
		w.stopSIP(c)
		w.stopWhatsApp(c)
		w.dropIfIdle(c)
	}
	w.mu.Unlock()
	w.load.Add(-1)
}

func (w *worker) stopSIP(c *polledCall) {
	if c.sip == nil {
		return
	}
	w.poll.del(c.sipRC)
	c.sip, c.sipRC = nil, nil
	w.dropPolled()
}

func (w *worker) stopWhatsApp(c *polledCall) {
	if c.wa == nil {
		return
	}
	c.wa.SetOnPacket(nil)
	c.wa = nil
	w.dropPolled()
}

// addPolled counts a leg read here; with the first, the worker starts
// reading the shared sockets.
func (w *worker) addPolled() {
	w.polled++
	if w.polled == 1 && !w.sharedOn {
		w.sharedOn = true
		for _, s := range w.shared {
			if s != nil {
				s.SetPolled(true)
			}
		}
	}
}

// dropPolled uncounts a leg; with the last, the shared sockets' owners
// read them again.
func (w *worker) dropPolled() {
	w.polled--
	if w.polled == 0 && w.sharedOn {
		w.sharedOn = false
		for _, s := range w.shared {
			if s != nil {
				s.SetPolled(false)
			}
		}
	}
}

// sharedTag is the poller's tag of shared socket i (call slots are >= 0,
// and -1 is no event).
func sharedTag(i int) int32 { return int32(-2 - i) }

// PollShared has the media workers read s while they have calls, until the
// returned function is called (before s closes). Where the workers cannot
// poll (no epoll), they leave s to its owner.
func PollShared(s SharedSocket) (stop func()) {
	rc, err := s.SyscallConn()
	if err != nil {
		return func() {}
	}
	type placed struct {
		w *worker
		i int
	}
	var at []placed
	for _, w := range workers() {
		w.mu.Lock()
		if w.poll != nil {
			i := slices.Index(w.shared, nil)
			if i < 0 {
				i = len(w.shared)
				w.shared = append(w.shared, nil)
			}
			if w.poll.add(rc, sharedTag(i), 0) == nil {
				w.shared[i] = s
				at = append(at, placed{w, i})
				if w.sharedOn {
					s.SetPolled(true)
				}
			}
		}
		w.mu.Unlock()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, p := range at {
				p.w.mu.Lock()
				p.w.poll.del(rc)
				p.w.shared[p.i] = nil
				if p.w.sharedOn {
					s.SetPolled(false)
				}
				p.w.mu.Unlock()
			}
		})
	}
}

// poke wakes the worker to look at its work again.
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	due := time.Duration(-1) // when this wake-up was meant to be; -1: a poke
	for {
		w.mu.Lock()
		begin := time.Since(w.epoch)
		if w.polled > 0 {
			w.readSIP()
			w.readWhatsApp()
		}
		now := w.pace(begin)
		sleep := time.Hour
		switch {
		case w.polled > 0: // the next step
			sleep = (now/workerGrid+1)*workerGrid - now
		case len(w.streams) > 0:
			sleep = max(w.streams[0].at.Round(workerGrid)-now, 0)
		}
		w.mu.Unlock()
		if due >= 0 {
			w.stats.tick(begin-due, now-begin)
		}
		due = now + sleep
		t.Reset(sleep)
		select {
		case <-t.C:
		case <-w.wake:
			due = -1
		}
	}
}

// readSIP reads one packet from each PBX socket that is readable. A
// socket that fails (its call closed it) is no longer polled.
func (w *worker) readSIP() {
	if w.poll == nil {
		return
	}
	for i := range w.poll.wait() {
		slot, gen := w.poll.event(i)
		if slot <= sharedTag(0) {
			if k := int(sharedTag(0) - slot); k < len(w.shared) && w.shared[k] != nil {
				w.shared[k].TryRead()
				w.sharedRead = time.Since(w.epoch)
			}
			continue
		}
		if slot < 0 || int(slot) >= len(w.calls) {
			continue
		}
		c := w.calls[slot]
		if c == nil || c.gen != gen || c.sip == nil {
			continue // a call released since
		}
		n, err := c.sip.TryReadPacket(w.buf[:])
		if err != nil {
			w.stopSIP(c)
			continue
		}
		if n > 0 {
			c.b.handleSIPPacket(w.buf[:min(n, len(w.buf))])
		}
	}
}

// readWhatsApp reads the packets the signaled WhatsApp legs queued. A leg
// that fails (closed) is no longer read.
func (w *worker) readWhatsApp() {
	words := (len(w.calls) + 63) / 64
	for i := range words {
		if w.ready[i].Load() == 0 {
			continue
		}
		set := w.ready[i].Swap(0)
		for set != 0 {
			slot := i*64 + bits.TrailingZeros64(set)
			set &= set - 1
			c := w.calls[slot]
			if c == nil || c.wa == nil {
				continue
			}
			for k := 0; ; k++ {
				if k == maxLegReadsPerTick {
					w.ready[i].Or(1 << (slot % 64)) // the rest next tick
					break
				}
				n, err := c.wa.TryReadPacket(w.buf[:])
				if err != nil {
					w.stopWhatsApp(c)
					break
				}
				if n == 0 {
					break
				}
				c.b.handleWhatsAppPacket(w.buf[:min(n, len(w.buf))])
			}
			// A long round (a backlog after a stall, an overloaded
			// machine) must not leave the shared sockets unread: their
			// kernel buffer holds every call's packets for a few tens of
			// ms at 1,000 calls, and new calls' ICE and DTLS come there too.
			if len(w.shared) > 0 && time.Since(w.epoch)-w.sharedRead >= workerGrid {
				w.readShared()
			}
		}
	}
}

// readShared reads the shared sockets (whichever another worker is not
// reading at the moment).
func (w *worker) readShared() {
	for _, s := range w.shared {
		if s != nil {
			s.TryRead()
		}
	}
	w.sharedRead = time.Since(w.epoch)
}

// pace sends the frames due by the tick's beginning (within half a step)
// and returns the time. Frames that fall due while it works wait for the
// next tick, which reads the legs first: an overloaded worker still takes
// its calls' packets every step instead of pacing on from playout buffers
// it no longer fills. Between frames, once a step has passed since the
// legs were read, it reads them again, so a packet is not taken for late
// for having waited on other calls' encodes.
func (w *worker) pace(begin time.Duration) time.Duration {
	now, read := begin, begin
	// Bounded: a stream behind is taken again for at most maxCatchUp
	// frames, and shifts that keep asking for earlier frames cannot keep
	// the tick here either.
	for most := (maxCatchUp + 1) * len(w.streams); most > 0 && len(w.streams) > 0; most-- {
		st := w.streams[0]
		if st.at-begin > workerGrid/2 {
			break
		}
		// A frame taken up to half a step early counts as on time. One
		// frame: a stream that is behind goes back in the heap.
		st.s.runUpTo(w.epoch.Add(max(now, st.at)), 1, st.send, st.skipped)
		st.at = st.s.next().Sub(w.epoch)
		heap.Fix(&w.streams, 0)
		now = time.Since(w.epoch)
		if w.polled > 0 && now-read >= workerGrid {
			w.readSIP()
			w.readWhatsApp()
			now = time.Since(w.epoch)
			read = now
		}
	}
	return now
}

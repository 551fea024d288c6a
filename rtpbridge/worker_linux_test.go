//go:build linux

package rtpbridge

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// signalLeg is an in-memory WhatsApp leg a worker polls: feed queues a
// packet and calls the worker's function, as the WebRTC leg does. Its
// ReadPacket must never be called.
type signalLeg struct {
	*memLeg
	t        testing.TB
	mu       sync.Mutex
	queue    [][]byte
	onPacket atomic.Pointer[func()]
	reads    atomic.Int64  // TryReadPacket calls
	cost     time.Duration // how long a TryReadPacket that finds a packet takes
}

func newSignalLeg(t testing.TB) *signalLeg { return &signalLeg{memLeg: newMemLeg(), t: t} }

func (l *signalLeg) ReadPacket([]byte) (int, error) {
	l.t.Error("ReadPacket called on a leg the worker polls")
	<-l.closed
	return 0, errLegClosed
}

func (l *signalLeg) TryReadPacket(b []byte) (int, error) {
	l.reads.Add(1)
	select {
	case <-l.closed:
		return 0, errLegClosed
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return 0, nil
	}
	p := l.queue[0]
	l.queue = l.queue[1:]
	if l.cost > 0 {
		time.Sleep(l.cost)
	}
	return copy(b, p), nil
}

func (l *signalLeg) SetOnPacket(f func()) {
	if f == nil {
		l.onPacket.Store(nil)
		return
	}
	l.onPacket.Store(&f)
}

func (l *signalLeg) feed(p []byte) {
	l.mu.Lock()
	l.queue = append(l.queue, p)
	l.mu.Unlock()
	if f := l.onPacket.Load(); f != nil {
		(*f)()
	}
}

// socketLeg is a PBX leg on a real loopback UDP socket that a worker polls:
// it sends to peer and reads without waiting. Its ReadPacket must never be
// called.
type socketLeg struct {
	t    testing.TB
	conn *net.UDPConn
	peer *net.UDPAddr
}

func (l *socketLeg) ReadPacket([]byte) (int, error) {
	l.t.Error("ReadPacket called on a socket the worker polls")
	return 0, errLegClosed
}

func (l *socketLeg) TryReadPacket(b []byte) (int, error) {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b, syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return 0, err
	}
	if errors.Is(rerr, syscall.EAGAIN) {
		return 0, nil
	}
	return n, rerr
}

func (l *socketLeg) SyscallConn() (syscall.RawConn, error) { return l.conn.SyscallConn() }

func (l *socketLeg) WritePacket(b []byte) error {
	_, err := l.conn.WriteToUDP(b, l.peer)
	return err
}

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A bridge whose legs can be polled runs no goroutine of its own: its worker
// reads the PBX's socket (epoll) and the signaled WhatsApp leg, and the
// audio crosses both ways (a 1 kHz tone to the PBX in PCMU, a 500 Hz one
// back to WhatsApp in Opus). Once Close returns the worker no longer reads
// the legs and its slot is free.
func TestWorkerReadsPolledLegs(t *testing.T) {
	waitGoroutines(t, 0)
	pbx := listenLoopback(t)
	sipLeg := &socketLeg{t: t, conn: listenLoopback(t), peer: pbx.LocalAddr().(*net.UDPAddr)}
	waLeg := newSignalLeg(t)
	b, err := New(withMetaPTs(Config{WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu}))
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	waitGoroutines(t, 0) // no reader goroutine: the worker reads both legs
	w := b.worker
	w.mu.Lock()
	polled := b.polled
	w.mu.Unlock()
	if polled == nil || polled.sip == nil || polled.wa == nil {
		t.Fatalf("legs not polled by the worker: %+v", polled)
	}

	// The PBX sends 1 s of a 500 Hz tone; WhatsApp 1 s of a 1 kHz one, paced.
	const frames = 50
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	toPBX := g711Packets(t, 0, 500, 8000, 20, frames)
	tick := time.NewTicker(20 * time.Millisecond)
	for i := range frames {
		waLeg.feed(src.next())
		if _, err := pbx.WriteToUDP(toPBX[i], sipLeg.conn.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		<-tick.C
	}
	tick.Stop()

	// What the PBX got: PCMU of the 1 kHz tone.
	_ = pbx.SetReadDeadline(time.Now().Add(2 * time.Second))
	var pcm []int16
	buf := make([]byte, 1500)
	for len(pcm) < 160*(frames-5) {
		n, err := pbx.Read(buf)
		if err != nil {
			t.Fatalf("the PBX got %d samples: %v", len(pcm), err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		s := make([]int16, len(p.Payload))
		g711.DecodeUlaw(p.Payload, s)
		pcm = append(pcm, s...)
	}
	checkTone(t, pcm[800:], 8000, 1000, toneLevel(8000), 0.9)

	// What WhatsApp got: Opus of the 500 Hz tone, once the PBX's audio came.
	out := unmarshal(t, waLeg.waitFor(t, frames, 2*time.Second))
	checkStream(t, out, metaOpusPT, 0xfeed, 960, 0)
	got := decodeOpus(t, out, 8000)
	checkTone(t, got[len(got)-160*20:], 8000, 500, toneLevel(8000), 0.9)
	if st := b.Stats(); st.WhatsAppToSIP.PacketsIn != frames || st.SIPToWhatsApp.PacketsIn != frames {
		t.Fatalf("the worker read %d of WhatsApp's %d packets and %d of the PBX's %d", st.WhatsAppToSIP.PacketsIn, frames, st.SIPToWhatsApp.PacketsIn, frames)
	}

	waLeg.Close()
	sipLeg.conn.Close()
	b.Close()
	w.mu.Lock()
	slotFree := b.polled == nil && w.calls[polled.slot] == nil
	w.mu.Unlock()
	if !slotFree {
		t.Fatal("the call still holds its worker slot after Close")
	}
	reads := waLeg.reads.Load()
	waLeg.feed(src.next()) // a late packet signaled after Close: not read
	time.Sleep(10 * time.Millisecond)
	if n := waLeg.reads.Load(); n != reads {
		t.Fatalf("the worker read the leg %d times after Close", n-reads)
	}
	waitGoroutines(t, 0)
}

// A slot freed by one call and taken by the next carries a new generation:
// readiness events of the old call's socket are not taken for the new one's.
func TestWorkerSlotReuse(t *testing.T) {
	w := newTestWorker()
	b1 := &Bridge{worker: w}
	w.mu.Lock()
	c1 := w.callOf(b1)
	w.mu.Unlock()
	w.release(b1)
	b2 := &Bridge{worker: w}
	w.mu.Lock()
	c2 := w.callOf(b2)
	w.mu.Unlock()
	if c1.slot != c2.slot || c1.gen == c2.gen {
		t.Fatalf("slot %d gen %d, then slot %d gen %d: want the same slot, another generation", c1.slot, c1.gen, c2.slot, c2.gen)
	}
	w.release(b2)
}

// An overloaded worker (its frames cost more than the period) still reads
// its calls' legs every few milliseconds: between frames it polls them
// again once a step has passed, so a packet does not wait for a whole
// round of other calls' encodes (which would make the PBX's packets look
// late to the playout buffer).
func TestWorkerReadsWhileOverloaded(t *testing.T) {
	w := newTestWorker()
	const streams, work = 12, 3 * time.Millisecond // 36 ms of sends every 20 ms
	paced := make([]*pacedStream, streams)
	for i := range paced {
		paced[i] = w.startPacing(20*time.Millisecond, func(time.Duration) time.Duration {
			time.Sleep(work)
			return 0
		}, func(int64) {})
	}
	defer func() {
		for _, st := range paced {
			st.stop()
		}
	}()
	waLeg, sipLeg := newSignalLeg(t), newMemLeg()
	b, err := New(withMetaPTs(Config{WhatsAppIn: waLeg, WhatsAppOut: waLeg, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu}))
	if err != nil {
		t.Fatal(err)
	}
	b.worker.load.Add(-1) // placed on the test's worker instead
	b.worker = w
	w.load.Add(1)
	b.Start()
	defer func() { waLeg.Close(); sipLeg.Close(); b.Close() }()

	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	var worst time.Duration
	for i := range 25 {
		fed := time.Now()
		waLeg.feed(src.next())
		for b.WhatsAppPacketsIn() < uint64(i+1) {
			if time.Since(fed) > time.Second {
				t.Fatalf("packet %d not read within 1 s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		worst = max(worst, time.Since(fed))
		time.Sleep(20*time.Millisecond - time.Since(fed))
	}
	t.Logf("worst wait for a read: %v with %v of sends per 20 ms", worst, streams*work)
	if worst > 15*time.Millisecond {
		t.Fatalf("a packet waited %v for the overloaded worker to read it; want a few ms", worst)
	}
}

// sharedSock is a socket many calls share, polled by the workers: TryRead
// takes every queued datagram without waiting and hands it to leg (as the
// ICE socket hands SRTP to its call's WebRTC leg).
type sharedSock struct {
	conn      *net.UDPConn
	leg       atomic.Pointer[signalLeg]
	reads     atomic.Int64 // TryRead calls that found datagrams
	datagrams atomic.Int64
	on, off   atomic.Int64 // SetPolled calls
	tries     atomic.Int64 // TryRead calls
	onTry     atomic.Pointer[func()]
}

func (s *sharedSock) SyscallConn() (syscall.RawConn, error) { return s.conn.SyscallConn() }

func (s *sharedSock) SetPolled(on bool) {
	if on {
		s.on.Add(1)
	} else {
		s.off.Add(1)
	}
}

func (s *sharedSock) TryRead() {
	s.tries.Add(1)
	if f := s.onTry.Load(); f != nil {
		(*f)()
	}
	rc, _ := s.conn.SyscallConn()
	found := false
	for range 64 {
		buf := make([]byte, 1500)
		n := -1
		_ = rc.Read(func(fd uintptr) bool {
			var err error
			if n, _, err = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT); err != nil {
				n = -1
			}
			return true
		})
		if n < 0 {
			break
		}
		found = true
		s.datagrams.Add(1)
		if l := s.leg.Load(); l != nil {
			l.feed(buf[:n])
		}
	}
	if found {
		s.reads.Add(1)
	}
}

// The media workers read a shared socket while, and only while, they have
// calls: its packets reach the call's leg and cross the bridge within its
// worker's pass; SetPolled tells the socket's owner when to stop and resume
// reading it, and the stop function takes it off the workers.
func TestWorkerReadsSharedSocket(t *testing.T) {
	waitGoroutines(t, 0)
	shared := &sharedSock{conn: listenLoopback(t)}
	stop := PollShared(shared)
	sender := listenLoopback(t)
	to := shared.conn.LocalAddr().(*net.UDPAddr)
	src := newWhatsAppSender(t, 1000, 8000, 20, false)

	// No call: nobody reads it (its owner would).
	if _, err := sender.WriteToUDP(src.next(), to); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if shared.datagrams.Load() != 0 || shared.on.Load() != 0 {
		t.Fatalf("without calls: %d datagrams read, SetPolled(true) %d times", shared.datagrams.Load(), shared.on.Load())
	}

	pbx := listenLoopback(t)
	sipLeg := &socketLeg{t: t, conn: listenLoopback(t), peer: pbx.LocalAddr().(*net.UDPAddr)}
	waLeg := newSignalLeg(t)
	shared.leg.Store(waLeg)
	b, err := New(withMetaPTs(Config{WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu}))
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	if shared.on.Load() != 1 {
		t.Fatalf("a call on a worker: SetPolled(true) %d times, want 1", shared.on.Load())
	}
	const frames = 25
	tick := time.NewTicker(20 * time.Millisecond)
	for range frames - 1 {
		<-tick.C
		if _, err := sender.WriteToUDP(src.next(), to); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	// Each datagram is read within a few passes (1 ms each) and crosses to
	// the PBX: the one queued before the call too.
	_ = pbx.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for got := 0; got < frames; got++ {
		if _, err := pbx.Read(buf); err != nil {
			t.Fatalf("the PBX got %d packets of %d: %v", got, frames, err)
		}
	}
	if n := shared.datagrams.Load(); n != frames {
		t.Fatalf("%d datagrams read, want %d", n, frames)
	}
	if r := shared.reads.Load(); r < frames/2 {
		t.Errorf("%d reads found datagrams: sent every 20 ms, each should be its own", r)
	}

	b.Close()
	waLeg.Close()
	if shared.off.Load() != 1 {
		t.Fatalf("the last call gone: SetPolled(false) %d times, want 1", shared.off.Load())
	}
	if _, err := sender.WriteToUDP(src.next(), to); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := shared.datagrams.Load(); n != frames {
		t.Fatalf("after the call: %d more datagrams read", n-frames)
	}

	stop()
	for _, w := range workers() {
		w.mu.Lock()
		for i, s := range w.shared {
			if s != nil {
				t.Errorf("worker still holds shared socket %d after stop", i)
			}
		}
		w.mu.Unlock()
	}
	waitGoroutines(t, 0)
}

// A worker's long round through its calls' WhatsApp packets (a backlog
// after a stall: here two calls a worker with 64 packets each that take
// 1 ms apiece, a 128 ms round) still reads the shared sockets between
// calls: their kernel buffer, every call's packets, is not left to
// overflow.
func TestWorkerReadsSharedSocketDuringLongRounds(t *testing.T) {
	waitGoroutines(t, 0)
	shared := &sharedSock{conn: listenLoopback(t)}
	stop := PollShared(shared)
	defer stop()
	var legs []*signalLeg
	var bridges []*Bridge
	for range 2 * len(workers()) {
		pbx := listenLoopback(t)
		sipLeg := &socketLeg{t: t, conn: listenLoopback(t), peer: pbx.LocalAddr().(*net.UDPAddr)}
		waLeg := newSignalLeg(t)
		waLeg.cost = time.Millisecond
		b, err := New(withMetaPTs(Config{WhatsAppIn: waLeg, WhatsAppOut: waLeg, WhatsAppSSRC: 0xfeed, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu}))
		if err != nil {
			t.Fatal(err)
		}
		b.Start()
		legs, bridges = append(legs, waLeg), append(bridges, b)
	}
	defer func() {
		for i, b := range bridges {
			b.Close()
			legs[i].Close()
		}
	}()
	var mu sync.Mutex
	var last time.Time
	var worst time.Duration
	f := func() {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if now.Sub(last) > worst {
			worst = now.Sub(last)
		}
		last = now
	}
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	last = time.Now()
	start := last
	mu.Unlock()
	shared.onTry.Store(&f)
	for _, l := range legs { // the backlog, queued at once
		l.mu.Lock()
		for range maxLegReadsPerTick {
			l.queue = append(l.queue, src.next())
		}
		l.mu.Unlock()
		if g := l.onPacket.Load(); g != nil {
			(*g)()
		}
	}
	for _, l := range legs { // until every backlog is read
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			l.mu.Lock()
			left := len(l.queue)
			l.mu.Unlock()
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d packets never read", left)
			}
		}
	}
	shared.onTry.Store(nil)
	f() // the round's end
	mu.Lock()
	defer mu.Unlock()
	round := time.Since(start)
	t.Logf("longest time without a read of the shared socket: %v, in a round of %v", worst, round)
	if worst > round*3/4 { // each worker's round is two calls: a read between them halves it
		t.Fatalf("the shared socket went %v of a %v round unread", worst, round)
	}
}

package webrtc

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pion/stun/v4"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/internal/rawudp"
)

// iceSocket is one UDP socket of the shared ICE port: every call's ICE
// checks, DTLS and SRTP to and from WhatsApp go through it (one socket per
// listen address, so replies leave from the address a check was sent to).
// Its datagrams are read in batches where the platform allows (recvmmsg on
// Linux: socket_batch_linux.go) and demultiplexed by first byte (RFC 7983):
// STUN goes to the leg whose ufrag or transaction it is; DTLS and SRTP/SRTCP
// go to the leg whose selected pair has that remote address (the table is
// replaced whole on change, so readers look up without a lock).
//
// One reader at a time (readMu): while media workers poll the socket
// (SetPolled, rtpbridge.SharedSocket) they read it in their passes (TryRead),
// with no goroutine woken per datagram; otherwise its own goroutine does
// (readLoop). On Linux the socket is outside Go's poller (internal/rawudp), so
// a datagram a worker will read wakes no other thread.
type iceSocket struct {
	conn  *rawudp.Socket
	raw   syscall.RawConn // conn's, for reads that never wait
	local netip.AddrPort
	mux   *legMux
	log   *zap.Logger

	byRemote atomic.Pointer[map[netip.AddrPort]*Leg]
	remoteMu sync.Mutex // serializes the replacements of byRemote

	readMu   sync.Mutex // held by the one reading and routing
	reader   *batchReader
	msg      stun.Message       // the STUN message routing decodes into (under readMu)
	waitRead func(uintptr) bool // s.waitReadFD as a value, made once
	pollers  atomic.Int32       // media workers polling the socket
	resume   chan struct{}      // a token each time pollers falls to 0
	closing  chan struct{}
	done     chan struct{}

	// Datagrams read, and by whom (counted per read, not per datagram).
	ownReads, workerReads, datagrams atomic.Uint64
}

func newICESocket(conn *rawudp.Socket, mux *legMux, log *zap.Logger) (*iceSocket, error) {
	la := conn.LocalAddr().AddrPort()
	s := &iceSocket{
		conn:    conn,
		raw:     conn.SyscallConn(),
		reader:  newBatchReader(),
		local:   netip.AddrPortFrom(la.Addr().Unmap(), la.Port()),
		mux:     mux,
		log:     log,
		resume:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.waitRead = s.waitReadFD
	// The own reader's waiter exists from the start (a descriptor: whoever
	// counts them sees it at once), until a media worker polls the socket.
	if _, err := conn.Waiter(); err != nil {
		return nil, err
	}
	empty := map[netip.AddrPort]*Leg{}
	s.byRemote.Store(&empty)
	go s.readLoop()
	return s, nil
}

// SyscallConn is the socket's raw connection, for a media worker to poll.
func (s *iceSocket) SyscallConn() (syscall.RawConn, error) { return s.raw, nil }

// SetPolled says a media worker starts (true) or stops polling the socket.
// While one does, the socket's own reader leaves the reading to them.
func (s *iceSocket) SetPolled(on bool) {
	if on {
		if s.pollers.Add(1) == 1 {
			s.conn.DropWaiter() // wakes the own reader, which then parks
		}
		return
	}
	if s.pollers.Add(-1) == 0 {
		select {
		case s.resume <- struct{}{}:
		default:
		}
	}
}

// routeBatch routes the n datagrams of the reader's last read (under readMu).
func (s *iceSocket) routeBatch(n int) {
	s.datagrams.Add(uint64(n))
	for i := range n {
		if p, src := s.reader.datagram(i); len(p) > 0 {
			s.route(&s.msg, p, src)
		}
	}
}

// writeTo sends one datagram. Concurrent writers (every call's pacer) share
// the socket; the kernel orders them.
func (s *iceSocket) writeTo(b []byte, dst netip.AddrPort) error {
	return s.conn.WriteTo(b, dst)
}

// bind routes remote's DTLS and SRTP to l, once its pair is selected.
func (s *iceSocket) bind(remote netip.AddrPort, l *Leg) {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	old := *s.byRemote.Load()
	if prev := old[remote]; prev != nil && prev != l {
		// Two calls to one remote address: the newer one wins and the
		// older's media can no longer be told apart. Meta gives each call a
		// candidate of its own; say so loudly if that ever changes.
		s.log.Warn("webrtc: two calls share a remote ICE address; the older loses its media",
			zap.String("remote", remote.String()))
	}
	m := make(map[netip.AddrPort]*Leg, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[remote] = l
	s.byRemote.Store(&m)
}

// unbind forgets remote if it still routes to l.
func (s *iceSocket) unbind(remote netip.AddrPort, l *Leg) {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	old := *s.byRemote.Load()
	if old[remote] != l {
		return
	}
	m := make(map[netip.AddrPort]*Leg, len(old))
	for k, v := range old {
		if k != remote {
			m[k] = v
		}
	}
	s.byRemote.Store(&m)
}

func (s *iceSocket) close() error {
	close(s.closing)
	err := s.conn.Close()
	<-s.done
	return err
}

// route hands one datagram to its leg (each copies what it keeps: the
// reader's buffers are reused).
func (s *iceSocket) route(msg *stun.Message, p []byte, src netip.AddrPort) {
	if p[0] < 4 { // STUN (RFC 7983 §7)
		s.mux.handleSTUN(s, msg, p, src)
		return
	}
	if l := (*s.byRemote.Load())[src]; l != nil {
		l.deliver(p)
	} // else: no call has this address (a call that ended, or a stray)
}

// legMux finds the leg a STUN message is for: a request by the ufrag in its
// USERNAME (ours first, RFC 8445 §7.2.2), a response by its transaction.
// Only ICE set-up and consent checks (every few seconds a call) take its
// lock; media never does.
type legMux struct {
	mu      sync.Mutex
	byUfrag map[string]*Leg
	byTx    map[[stun.TransactionIDSize]byte]*Leg
}

func newLegMux() *legMux {
	return &legMux{byUfrag: map[string]*Leg{}, byTx: map[[stun.TransactionIDSize]byte]*Leg{}}
}

func (m *legMux) addLeg(l *Leg) {
	m.mu.Lock()
	m.byUfrag[l.ice.localUfrag] = l
	m.mu.Unlock()
}

func (m *legMux) removeLeg(l *Leg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.byUfrag, l.ice.localUfrag)
	for tx, x := range m.byTx {
		if x == l {
			delete(m.byTx, tx)
		}
	}
}

func (m *legMux) addTx(tx [stun.TransactionIDSize]byte, l *Leg) {
	m.mu.Lock()
	m.byTx[tx] = l
	m.mu.Unlock()
}

func (m *legMux) takeTx(tx [stun.TransactionIDSize]byte) *Leg {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.byTx[tx]
	delete(m.byTx, tx)
	return l
}

func (m *legMux) dropTx(tx [stun.TransactionIDSize]byte) {
	m.mu.Lock()
	delete(m.byTx, tx)
	m.mu.Unlock()
}

func (m *legMux) legByUfrag(u string) *Leg {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byUfrag[u]
}

// handleSTUN decodes one STUN datagram (msg is the reader's own) and hands
// it to its leg.
func (m *legMux) handleSTUN(s *iceSocket, msg *stun.Message, p []byte, src netip.AddrPort) {
	msg.Raw = append(msg.Raw[:0], p...)
	if err := msg.Decode(); err != nil {
		return
	}
	switch msg.Type.Class {
	case stun.ClassRequest:
		var user stun.Username
		if msg.Type.Method != stun.MethodBinding || user.GetFrom(msg) != nil {
			return
		}
		local, _, ok := strings.Cut(string(user), ":")
		if !ok {
			return
		}
		if l := m.legByUfrag(local); l != nil {
			l.ice.handleRequest(s, msg, src)
		}
	case stun.ClassSuccessResponse, stun.ClassErrorResponse:
		if l := m.takeTx(msg.TransactionID); l != nil {
			l.ice.handleResponse(s, msg, src)
		}
	}
}

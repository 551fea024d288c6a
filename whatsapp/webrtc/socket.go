package webrtc

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/stun/v4"
	"go.uber.org/zap"
)

// iceSocket is one UDP socket of the shared ICE port: every call's ICE
// checks, DTLS and SRTP to and from WhatsApp go through it (one socket per
// listen address, so replies leave from the address a check was sent to).
// One goroutine reads it, every datagram queued in one call where the
// platform allows (recvmmsg on Linux: socket_batch_linux.go; 13 datagrams a
// read on average at 1,000 passthrough calls), and demultiplexes by first
// byte (RFC 7983): STUN goes to the leg whose ufrag or transaction it is;
// DTLS and SRTP/SRTCP go to the leg whose selected pair has that remote
// address (the table is replaced whole on change, so the reader looks up
// without a lock).
type iceSocket struct {
	conn   *net.UDPConn
	reader *batchReader // the read loop's own
	local  netip.AddrPort
	mux    *legMux
	log    *zap.Logger

	byRemote atomic.Pointer[map[netip.AddrPort]*Leg]
	remoteMu sync.Mutex // serializes the replacements of byRemote

	done chan struct{}
}

func newICESocket(conn *net.UDPConn, mux *legMux, log *zap.Logger) (*iceSocket, error) {
	r, err := newBatchReader(conn)
	if err != nil {
		return nil, err
	}
	la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s := &iceSocket{
		conn:   conn,
		reader: r,
		local:  netip.AddrPortFrom(la.Addr().Unmap(), la.Port()),
		mux:    mux,
		log:    log,
		done:   make(chan struct{}),
	}
	empty := map[netip.AddrPort]*Leg{}
	s.byRemote.Store(&empty)
	go s.readLoop()
	return s, nil
}

// writeTo sends one datagram. Concurrent writers (every call's pacer) share
// the socket; the kernel orders them.
func (s *iceSocket) writeTo(b []byte, dst netip.AddrPort) error {
	_, err := s.conn.WriteToUDPAddrPort(b, dst)
	return err
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
	err := s.conn.Close()
	<-s.done
	return err
}

func (s *iceSocket) readLoop() {
	defer close(s.done)
	var msg stun.Message
	for {
		n, err := s.reader.readMany()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. an ICMP error surfaced on a read: keep reading
		}
		for i := range n {
			if p, src := s.reader.datagram(i); len(p) > 0 {
				s.route(&msg, p, src)
			}
		}
	}
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

package dtlssrtp

import (
	"net"
	"os"
	"sync"
	"time"
)

// pipeQueue is how many records wait for the handshake; past it a record is
// dropped and DTLS retransmits (RFC 6347 §4.2.4).
const pipeQueue = 32

// Pipe is the net.PacketConn a DTLS handshake runs over when the socket is
// shared: whoever reads the socket hands DTLS records in with Deliver
// (RFC 7983: first byte 20-63), and what DTLS writes goes out through send
// to the one remote address. It honours read deadlines, which pion's DTLS
// uses to cancel reads.
type Pipe struct {
	local, remote net.Addr
	send          func([]byte) error
	in            chan []byte

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{}
	closed   chan struct{}
	once     sync.Once
}

// NewPipe makes a pipe between local and remote; send writes one datagram
// to remote.
func NewPipe(local, remote net.Addr, send func([]byte) error) *Pipe {
	return &Pipe{
		local: local, remote: remote, send: send,
		in:     make(chan []byte, pipeQueue),
		wake:   make(chan struct{}),
		closed: make(chan struct{}),
	}
}

// Deliver hands one DTLS record (datagram) to the handshake. It copies rec
// and never blocks.
func (p *Pipe) Deliver(rec []byte) {
	select {
	case p.in <- append([]byte(nil), rec...):
	default:
	}
}

func (p *Pipe) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, again, err := p.readOnce(b)
		if !again {
			if err != nil {
				return 0, nil, err
			}
			return n, p.remote, nil
		}
	}
}

// readOnce waits for one record until the deadline; again means the
// deadline moved meanwhile.
func (p *Pipe) readOnce(b []byte) (n int, again bool, err error) {
	select {
	case <-p.closed:
		return 0, false, net.ErrClosed
	default:
	}
	p.mu.Lock()
	dl, wake := p.deadline, p.wake
	p.mu.Unlock()
	var timeout <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return 0, false, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case rec := <-p.in:
		return copy(b, rec), false, nil
	case <-p.closed:
		return 0, false, net.ErrClosed
	case <-wake:
		return 0, true, nil
	case <-timeout:
		return 0, false, os.ErrDeadlineExceeded
	}
}

func (p *Pipe) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-p.closed:
		return 0, net.ErrClosed
	default:
	}
	if err := p.send(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close ends reads and writes; the socket itself is not the pipe's.
func (p *Pipe) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *Pipe) LocalAddr() net.Addr { return p.local }

// RemoteAddr is the one peer the pipe talks to.
func (p *Pipe) RemoteAddr() net.Addr { return p.remote }

func (p *Pipe) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *Pipe) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	return nil
}

func (p *Pipe) SetWriteDeadline(time.Time) error { return nil }

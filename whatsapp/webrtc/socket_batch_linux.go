//go:build linux

package webrtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wagateway/wagateway/internal/sockaddr"
)

// batchReader reads the shared ICE socket with recvmmsg(2): every datagram
// already queued, up to readBatch, in one system call. The socket carries
// every call's media (50 packets a second each), so a media worker's pass
// at hundreds of calls finds several queued, and its own reader, when it
// wakes, usually a few. It allocates nothing once made.
type batchReader struct {
	try func(fd uintptr) bool // r.tryFD as a value made once (a method value allocates)

	hdrs  [readBatch]mmsghdr
	iovs  [readBatch]unix.Iovec
	names [readBatch]unix.RawSockaddrAny
	bufs  [readBatch][maxDatagram]byte

	n     int // datagrams of the last read
	errno syscall.Errno
}

// readBatch is the most datagrams one read takes: 20 ms of 1,600 calls'
// packets would be 1,600; a few dozen already make the call's own cost small
// against the datagrams' (the kernel copies each anyway).
const readBatch = 32

// maxTryBatches bounds the reads of one TryRead (a worker's pass): what is
// left waits for the worker's next read, 1 ms on. 1,024 datagrams: 20 ms of
// 1,000 calls' packets, so a worker back from a stall drains the backlog in
// a few reads rather than letting the kernel buffer overflow.
const maxTryBatches = 32

// mmsghdr is struct mmsghdr (recvmmsg(2)); on 64-bit platforms Go pads it
// to 8 bytes as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func newBatchReader() *batchReader {
	r := &batchReader{}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(maxDatagram)
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	r.try = r.tryFD
	return r
}

// recv is one recvmmsg that does not wait: r.n datagrams, or r.errno
// (EAGAIN: none queued).
func (r *batchReader) recv(fd uintptr) {
	for i := range r.hdrs {
		r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrAny
		r.hdrs[i].len = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), readBatch, unix.MSG_DONTWAIT, 0, 0)
	r.n, r.errno = 0, e
	if e == 0 {
		r.n = int(n)
	}
}

func (r *batchReader) tryFD(fd uintptr) bool {
	r.recv(fd)
	return true
}

// tryRead reads what is queued, without waiting: 0 and no error when
// nothing is. datagram(i) is each datagram read, valid until the next read.
func (r *batchReader) tryRead(rc syscall.RawConn) (int, error) {
	if err := rc.Read(r.try); err != nil {
		return 0, err
	}
	switch r.errno {
	case 0:
		return r.n, nil
	case unix.EAGAIN:
		return 0, nil
	}
	return 0, fmt.Errorf("ice socket: recvmmsg: %w", r.errno)
}

// datagram is the i-th datagram of the last read and where it came from
// (IPv4-mapped addresses unmapped). A datagram longer than maxDatagram
// comes cut (its SRTP tag then fails).
func (r *batchReader) datagram(i int) ([]byte, netip.AddrPort) {
	return r.bufs[i][:min(int(r.hdrs[i].len), maxDatagram)], sockaddr.AddrPort(&r.names[i])
}

// TryRead reads and routes what is queued on the socket, without waiting
// (a media worker's pass); nothing when another reader is at it.
func (s *iceSocket) TryRead() {
	if !s.readMu.TryLock() {
		return
	}
	defer s.readMu.Unlock()
	for range maxTryBatches {
		n, err := s.reader.tryRead(s.raw)
		if err != nil || n == 0 {
			return // an error (an ICMP one surfaced on a read, say) is left to the next pass
		}
		s.workerReads.Add(1)
		s.routeBatch(n)
		if n < readBatch {
			return
		}
	}
}

// readLoop is the socket's own reader: while no media worker polls the
// socket it waits for datagrams in Go's poller (through the socket's
// waiter) and routes them; while one does, it waits for them to stop.
func (s *iceSocket) readLoop() {
	defer close(s.done)
	for {
		if s.pollers.Load() > 0 {
			// A waiter made just as a worker began polling would keep
			// the runtime's poller woken per datagram: none while parked.
			s.conn.DropWaiter()
			select {
			case <-s.resume:
			case <-s.closing:
				return
			}
			continue
		}
		rc, err := s.conn.Waiter()
		if err == nil {
			// Returns when a read found datagrams, or with an error once
			// SetPolled dropped the waiter or the socket closed.
			err = rc.Read(s.waitRead)
		}
		select {
		case <-s.closing:
			return
		default:
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// No waiter (out of descriptors?): do not spin.
			select {
			case <-time.After(10 * time.Millisecond):
			case <-s.closing:
				return
			}
		}
	}
}

// waitReadFD reads and routes what is queued; false (nothing) has the
// waiter wait for more. Once a worker polls the socket it stops.
func (s *iceSocket) waitReadFD(fd uintptr) bool {
	if s.pollers.Load() > 0 {
		return true
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.reader.recv(fd)
	switch s.reader.errno {
	case 0:
		s.ownReads.Add(1)
		s.routeBatch(s.reader.n)
	case unix.EAGAIN:
		return false
	}
	return true // another error (EINTR, an ICMP one): read again at once
}

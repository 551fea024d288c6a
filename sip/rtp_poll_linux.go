//go:build linux

package sip

import (
	"errors"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wagateway/wagateway/internal/sockaddr"
)

// A media worker (rtpbridge, worker.go) reads the PBX's RTP without a
// goroutine per call: it polls the socket (SyscallConn) and takes what is
// waiting with TryReadPacket, which never waits. On other platforms the
// bridge reads with ReadPacket on a goroutine.

// maxTryReads bounds the datagrams one TryReadPacket looks at: strangers'
// datagrams are dropped on the way, and a flood of them must not keep the
// worker here (what is left waits for its next tick).
const maxTryReads = 8

// tryRecv is the state of one non-blocking recvfrom(2), kept in the conn so
// that a read allocates nothing (one reader at a time).
type tryRecv struct {
	fn      func(fd uintptr) bool // recv as a value, made once
	buf     []byte
	n       int
	errno   syscall.Errno
	name    unix.RawSockaddrAny
	nameLen uint32
}

// SyscallConn is the socket's raw connection, for polling its readiness.
func (r *RTPConn) SyscallConn() (syscall.RawConn, error) { return r.sock.SyscallConn(), nil }

// TryReadPacket is ReadPacket that never waits: it returns 0 and no error
// when no packet from the peer is waiting. One reader at a time, and not
// before the early discarder stopped (as ReadPacket).
func (r *RTPConn) TryReadPacket(b []byte) (int, error) {
	if len(b) < 12 {
		return 0, errors.New("rtp: read buffer shorter than an RTP header")
	}
	for range maxTryReads {
		n, src, ok, err := r.tryRaw(b)
		if err != nil {
			return 0, r.readErr(err)
		}
		if !ok {
			return 0, nil
		}
		if r.accept(b[:n], src) {
			return n, nil
		}
	}
	return 0, nil
}

// tryRaw returns the datagram the early discarder kept, if any, else the
// socket's next one if one is queued (ok false: none).
func (r *RTPConn) tryRaw(b []byte) (n int, src netip.AddrPort, ok bool, err error) {
	if h := r.held.Load(); h != nil && r.held.CompareAndSwap(h, nil) {
		return copy(b, h.b), h.src, true, nil
	}
	if r.rc == nil {
		r.rc = r.sock.SyscallConn()
		r.try.fn = r.recv
	}
	t := &r.try
	t.buf, t.n, t.errno = b, 0, 0
	// RawConn.Read holds the socket open while recv runs (a concurrent
	// Close waits) and fails once it is closed; recv never asks it to wait.
	err = r.rc.Read(t.fn)
	t.buf = nil
	switch {
	case err != nil:
		return 0, src, false, err
	case t.errno == unix.EAGAIN:
		return 0, src, false, nil
	case t.errno != 0:
		return 0, src, false, t.errno
	}
	return t.n, sockaddr.AddrPort(&t.name), true, nil
}

// recv is one recvfrom(2) that does not wait, into r.try.
func (r *RTPConn) recv(fd uintptr) bool {
	t := &r.try
	t.nameLen = unix.SizeofSockaddrAny
	for range 3 { // EINTR: again, a few times
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)),
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&t.name)), uintptr(unsafe.Pointer(&t.nameLen)))
		if e == unix.EINTR {
			continue
		}
		t.n, t.errno = min(int(n), len(t.buf)), e
		return true
	}
	t.errno = unix.EAGAIN // the next tick tries again
	return true
}

// The calls' media: the PBX leg as the bridge's media worker reads it.

// SyscallConn is the RTP socket's raw connection (see RTPConn.SyscallConn).
func (c *Call) SyscallConn() (syscall.RawConn, error) { return c.rtp.SyscallConn() }

// TryReadPacket is ReadPacket that never waits (see RTPConn.TryReadPacket).
func (c *Call) TryReadPacket(b []byte) (int, error) { return c.rtp.TryReadPacket(b) }

// SyscallConn is the RTP socket's raw connection (see RTPConn.SyscallConn).
func (m *EarlyMedia) SyscallConn() (syscall.RawConn, error) { return m.rtp.SyscallConn() }

// TryReadPacket is ReadPacket that never waits (see RTPConn.TryReadPacket).
func (m *EarlyMedia) TryReadPacket(b []byte) (int, error) { return m.rtp.TryReadPacket(b) }

// SyscallConn is the RTP socket's raw connection (see RTPConn.SyscallConn).
func (c *InboundCall) SyscallConn() (syscall.RawConn, error) { return c.rtp.SyscallConn() }

// TryReadPacket is ReadPacket that never waits (see RTPConn.TryReadPacket).
func (c *InboundCall) TryReadPacket(b []byte) (int, error) { return c.rtp.TryReadPacket(b) }

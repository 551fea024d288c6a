//go:build linux

package sip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wagateway/wagateway/internal/sockaddr"
)

// rtpSocket is a call's RTP socket as a raw non-blocking file descriptor
// that Go's network poller does not watch. A media worker polls it in its
// own epoll set (rtpbridge, worker.go); were the socket also in the
// runtime's set (edge-triggered, as every net.UDPConn is), each datagram
// would also wake whichever thread sleeps in the runtime's poller, to find
// nobody waiting: one wasted wake-up per packet (at 100 passthrough calls,
// 15 % of the gateway's CPU).
//
// A blocking read (the early discarder, a bridge that cannot poll) goes
// through a waiter: a duplicate of the descriptor that the runtime does
// watch, made on first use and closed by dropWaiter or close.
//
// Reads, writes and polls hold a reference; close marks the socket closed and
// the last reference closes the descriptor, so a number the kernel hands to
// another socket is never read, written or unpolled by mistake.
type rtpSocket struct {
	fd    int
	local *net.UDPAddr
	v6    bool         // an AF_INET6 socket: IPv4 destinations are sent v4-mapped
	state atomic.Int64 // references × 2, | 1 once closed

	mu     sync.Mutex // guards waiter
	waiter *net.UDPConn
}

// listenRTPSocket binds a socket to ip:port (port 0: any).
func listenRTPSocket(ip net.IP, port int) (*rtpSocket, error) {
	family, v6 := unix.AF_INET, ip.To4() == nil
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	var sa unix.Sockaddr
	if v6 {
		// As net.ListenUDP("udp6", …): IPv6 only.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("setsockopt", err)
		}
		a := &unix.SockaddrInet6{Port: port}
		copy(a.Addr[:], ip.To16())
		sa = a
	} else {
		a := &unix.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip.To4())
		sa = a
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("getsockname", err)
	}
	s := &rtpSocket{fd: fd, v6: v6}
	switch a := bound.(type) {
	case *unix.SockaddrInet4:
		s.local = &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		s.local = &net.UDPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return s, nil
}

// acquire takes a reference; false once the socket is closed.
func (s *rtpSocket) acquire() bool {
	for {
		v := s.state.Load()
		if v&1 != 0 {
			return false
		}
		if s.state.CompareAndSwap(v, v+2) {
			return true
		}
	}
}

// release drops a reference, closing the descriptor if it was the last of a
// closed socket.
func (s *rtpSocket) release() {
	if s.state.Add(-2) == 1 {
		unix.Close(s.fd)
	}
}

// readFrom waits for the next datagram (through the waiter).
func (s *rtpSocket) readFrom(b []byte) (int, netip.AddrPort, error) {
	w, err := s.waiterConn()
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	return w.ReadFromUDPAddrPort(b)
}

// setReadDeadline sets the waiter's read deadline (see net.Conn).
func (s *rtpSocket) setReadDeadline(t time.Time) error {
	w, err := s.waiterConn()
	if err != nil {
		return err
	}
	return w.SetReadDeadline(t)
}

// waiterConn is the waiter, made on first use.
func (s *rtpSocket) waiterConn() (*net.UDPConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiter != nil {
		return s.waiter, nil
	}
	if !s.acquire() {
		return nil, net.ErrClosed
	}
	defer s.release()
	// FilePacketConn makes its own duplicate (watched by the runtime);
	// the file's is closed at once.
	dup, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(dup), "rtp")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("rtp: waiter: %w", err)
	}
	s.waiter = pc.(*net.UDPConn)
	return s.waiter, nil
}

// dropWaiter closes the waiter, if any: the runtime no longer watches the
// socket. A read blocked in it returns net.ErrClosed.
func (s *rtpSocket) dropWaiter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiter != nil {
		s.waiter.Close()
		s.waiter = nil
	}
}

// writeTo sends one datagram to dst without waiting: a full send buffer
// fails (EAGAIN) instead of holding the media worker.
func (s *rtpSocket) writeTo(b []byte, dst netip.AddrPort) error {
	var sa [unix.SizeofSockaddrInet6]byte
	l := s.sockaddr(&sa, dst)
	if l == 0 {
		return fmt.Errorf("address %s not of the socket's family", dst)
	}
	if !s.acquire() {
		return net.ErrClosed
	}
	defer s.release()
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(p), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(&sa)), uintptr(l))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return os.NewSyscallError("sendto", e)
	}
}

// sockaddr writes dst as the socket's family's sockaddr into sa and returns
// its length (0: dst cannot be reached from this socket).
func (s *rtpSocket) sockaddr(sa *[unix.SizeofSockaddrInet6]byte, dst netip.AddrPort) int {
	a := dst.Addr()
	if !s.v6 {
		if !a.Unmap().Is4() {
			return 0
		}
		in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		in4.Family, in4.Addr = unix.AF_INET, a.Unmap().As4()
		sockaddr.PutPort(&in4.Port, dst.Port())
		return unix.SizeofSockaddrInet4
	}
	in6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
	in6.Family, in6.Addr = unix.AF_INET6, a.As16() // an IPv4 address v4-mapped
	sockaddr.PutPort(&in6.Port, dst.Port())
	return unix.SizeofSockaddrInet6
}

// close closes the waiter and, once no read, write or poll holds it, the
// descriptor. Idempotent.
func (s *rtpSocket) close() error {
	s.dropWaiter()
	for {
		v := s.state.Load()
		if v&1 != 0 {
			return nil
		}
		if s.state.CompareAndSwap(v, v|1) {
			if v == 0 {
				return os.NewSyscallError("close", unix.Close(s.fd))
			}
			return nil
		}
	}
}

// syscallConn is the socket as a syscall.RawConn, for polling and
// non-blocking reads. Its Read and Write never wait: a function that asks to
// (returns false) gets an EAGAIN error back.
func (s *rtpSocket) syscallConn() syscall.RawConn { return rawRTPConn{s} }

type rawRTPConn struct{ s *rtpSocket }

func (c rawRTPConn) Control(f func(fd uintptr)) error {
	if !c.s.acquire() {
		return net.ErrClosed
	}
	defer c.s.release()
	f(uintptr(c.s.fd))
	return nil
}

func (c rawRTPConn) Read(f func(fd uintptr) bool) error { return c.do(f) }

func (c rawRTPConn) Write(f func(fd uintptr) bool) error { return c.do(f) }

func (c rawRTPConn) do(f func(fd uintptr) bool) error {
	if !c.s.acquire() {
		return net.ErrClosed
	}
	defer c.s.release()
	if !f(uintptr(c.s.fd)) {
		return errWouldWait
	}
	return nil
}

var errWouldWait = errors.New("rtp: the socket does not wait: " + unix.EAGAIN.Error())

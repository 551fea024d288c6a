//go:build linux

// Package rawudp is a UDP socket as a raw non-blocking descriptor that Go's
// network poller does not watch, for the media workers (rtpbridge,
// worker.go), which poll their sockets in epoll sets of their own. Were a
// socket also in the runtime's set (edge-triggered, as every net.UDPConn is),
// each datagram would also wake whichever thread sleeps in the runtime's
// poller, to find nobody waiting: one wasted wake-up per packet (at 100
// passthrough calls, 15 % of the gateway's CPU).
//
// A blocking read goes through a waiter: a duplicate of the descriptor that
// the runtime does watch, made on demand and closed by DropWaiter or Close.
//
// Reads, writes and polls hold a reference; Close marks the socket closed and
// the last reference closes the descriptor, so a number the kernel hands to
// another socket is never read, written or unpolled by mistake.
package rawudp

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

// Socket is one bound UDP socket (see the package).
type Socket struct {
	fd    int
	local *net.UDPAddr
	v6    bool         // an AF_INET6 socket: IPv4 destinations are sent v4-mapped
	state atomic.Int64 // references × 2, | 1 once closed

	mu       sync.Mutex // guards waiter and waiterRC
	waiter   *net.UDPConn
	waiterRC syscall.RawConn
}

// Listen binds a socket to ip:port (port 0: any).
func Listen(ip net.IP, port int) (*Socket, error) {
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
	s := &Socket{fd: fd, v6: v6}
	switch a := bound.(type) {
	case *unix.SockaddrInet4:
		s.local = &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		s.local = &net.UDPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return s, nil
}

// LocalAddr is the bound address.
func (s *Socket) LocalAddr() *net.UDPAddr { return s.local }

// SetBuffers asks for kernel receive and send buffers of these sizes, bytes
// (the kernel caps them at net.core.rmem_max and wmem_max).
func (s *Socket) SetBuffers(read, write int) error {
	if !s.acquire() {
		return net.ErrClosed
	}
	defer s.release()
	return errors.Join(
		os.NewSyscallError("setsockopt", unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, read)),
		os.NewSyscallError("setsockopt", unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, write)))
}

// acquire takes a reference; false once the socket is closed.
func (s *Socket) acquire() bool {
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
func (s *Socket) release() {
	if s.state.Add(-2) == 1 {
		unix.Close(s.fd)
	}
}

// ReadFrom waits for the next datagram (through the waiter).
func (s *Socket) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	w, err := s.waiterConn()
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	return w.ReadFromUDPAddrPort(b)
}

// SetReadDeadline sets the waiter's read deadline (see net.Conn).
func (s *Socket) SetReadDeadline(t time.Time) error {
	w, err := s.waiterConn()
	if err != nil {
		return err
	}
	return w.SetReadDeadline(t)
}

// Waiter is the waiter's raw connection: its Read waits in Go's poller
// while the function asks to (see syscall.RawConn). The descriptor it hands
// over is the waiter's, the same socket's.
func (s *Socket) Waiter() (syscall.RawConn, error) {
	if _, err := s.waiterConn(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiterRC == nil {
		return nil, net.ErrClosed // dropped meanwhile
	}
	return s.waiterRC, nil
}

// waiterConn is the waiter, made on first use.
func (s *Socket) waiterConn() (*net.UDPConn, error) {
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
	f := os.NewFile(uintptr(dup), "udp")
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("rawudp: waiter: %w", err)
	}
	w := pc.(*net.UDPConn)
	rc, err := w.SyscallConn()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("rawudp: waiter: %w", err)
	}
	s.waiter, s.waiterRC = w, rc // the RawConn made once: each SyscallConn allocates
	return s.waiter, nil
}

// DropWaiter closes the waiter, if any: the runtime no longer watches the
// socket. A read blocked in it returns net.ErrClosed.
func (s *Socket) DropWaiter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiter != nil {
		s.waiter.Close()
		s.waiter, s.waiterRC = nil, nil
	}
}

// WriteTo sends one datagram to dst without waiting: a full send buffer
// fails (EAGAIN) instead of holding the media worker.
func (s *Socket) WriteTo(b []byte, dst netip.AddrPort) error {
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
func (s *Socket) sockaddr(sa *[unix.SizeofSockaddrInet6]byte, dst netip.AddrPort) int {
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

// Close closes the waiter and, once no read, write or poll holds it, the
// descriptor. Idempotent.
func (s *Socket) Close() error {
	s.DropWaiter()
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

// SyscallConn is the socket as a syscall.RawConn, for polling and
// non-blocking reads. Its Read and Write never wait: a function that asks to
// (returns false) gets an EAGAIN error back.
func (s *Socket) SyscallConn() syscall.RawConn { return rawConn{s} }

type rawConn struct{ s *Socket }

func (c rawConn) Control(f func(fd uintptr)) error {
	if !c.s.acquire() {
		return net.ErrClosed
	}
	defer c.s.release()
	f(uintptr(c.s.fd))
	return nil
}

func (c rawConn) Read(f func(fd uintptr) bool) error { return c.do(f) }

func (c rawConn) Write(f func(fd uintptr) bool) error { return c.do(f) }

func (c rawConn) do(f func(fd uintptr) bool) error {
	if !c.s.acquire() {
		return net.ErrClosed
	}
	defer c.s.release()
	if !f(uintptr(c.s.fd)) {
		return ErrWouldWait
	}
	return nil
}

var ErrWouldWait = errors.New("rawudp: the socket does not wait: " + unix.EAGAIN.Error())

//go:build linux

package wasim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// litePoller reads every lite leg of a load run from one goroutine: raw
// non-blocking IPv4 sockets kept out of Go's netpoller, one epoll set, and
// after each batch a pause of pollPause so that the next batch gathers more
// packets. With hundreds of calls this costs one wake-up a millisecond
// instead of one per packet; the kernel's receive timestamps keep every
// packet's arrival time exact.
type litePoller struct {
	epfd  int
	pause time.Duration

	mu   sync.Mutex // held while a batch is handled, and by add and remove
	legs map[int32]*liteLeg

	// The loop's own.
	buf  []byte
	oob  []byte
	name syscall.RawSockaddrInet4
	iov  syscall.Iovec
	msg  syscall.Msghdr

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const (
	pollPause     = time.Millisecond
	pollEvents    = 512
	pollPerSocket = 8 // datagrams read from one socket per batch at most
	pollWaitMs    = 100
	liteRcvBuf    = 256 << 10
)

func newLitePoller() (*litePoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("wasim: epoll: %w", err)
	}
	p := &litePoller{
		epfd: epfd, pause: pollPause, legs: map[int32]*liteLeg{},
		buf: make([]byte, liteMaxPacket), oob: make([]byte, rxOOBLen),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	p.iov.Base = &p.buf[0]
	p.iov.SetLen(len(p.buf))
	p.msg.Name = (*byte)(unsafe.Pointer(&p.name))
	p.msg.Iov = &p.iov
	p.msg.Iovlen = 1
	p.msg.Control = &p.oob[0]
	go p.loop()
	return p, nil
}

// rawSock is a non-blocking IPv4 UDP socket the poller reads.
type rawSock struct{ fd int }

func (r rawSock) writeTo(b []byte, dst netip.AddrPort) error {
	if len(b) == 0 || !dst.Addr().Is4() {
		return errors.New("wasim: raw socket: empty packet or not IPv4")
	}
	var sa syscall.RawSockaddrInet4
	sa.Family = syscall.AF_INET
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], dst.Port())
	sa.Addr = dst.Addr().As4()
	_, _, e := syscall.Syscall6(syscall.SYS_SENDTO, uintptr(r.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if e != 0 {
		return e
	}
	return nil
}

func (r rawSock) close() error { return syscall.Close(r.fd) }

// add binds a socket on ip for leg l, sets l.sock, l.local and
// l.kernelTS, and starts reading it.
func (p *litePoller) add(ip net.IP, l *liteLeg) error {
	ip4 := ip.To4()
	if ip4 == nil {
		return errors.New("the poller takes IPv4 only")
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		syscall.Close(fd)
		return err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, liteRcvBuf)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return fail(err)
	}
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], ip4)
	if err := syscall.Bind(fd, sa); err != nil {
		return fail(err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	bound, ok := got.(*syscall.SockaddrInet4)
	if !ok {
		return fail(errors.New("not an IPv4 socket"))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
		return fail(errors.New("poller closed"))
	default:
	}
	l.sock, l.kernelTS = rawSock{fd}, true
	l.local = netip.AddrPortFrom(netip.AddrFrom4(bound.Addr), uint16(bound.Port))
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
		l.sock = nil
		return fail(err)
	}
	p.legs[int32(fd)] = l
	return nil
}

// remove stops reading l's socket; once it returns the poller does not
// touch l again.
func (p *litePoller) remove(l *liteLeg) {
	rs, ok := l.sock.(rawSock)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.legs[int32(rs.fd)] == l {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, rs.fd, nil)
		delete(p.legs, int32(rs.fd))
	}
}

// Close stops the poller; close every leg first.
func (p *litePoller) Close() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		p.mu.Lock()
		syscall.Close(p.epfd)
		p.mu.Unlock()
	})
}

func (p *litePoller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, pollEvents)
	for {
		n, err := syscall.EpollWait(p.epfd, events, pollWaitMs)
		select {
		case <-p.stop:
			return
		default:
		}
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		if n <= 0 {
			continue
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			l := p.legs[ev.Fd]
			if l == nil {
				continue
			}
			for k := 0; k < pollPerSocket; k++ {
				size, src, at, ok := p.recv(int(ev.Fd))
				if !ok {
					break
				}
				l.handleDatagram(p.buf[:size], src, at)
			}
		}
		p.mu.Unlock()
		time.Sleep(p.pause)
	}
}

// recv reads one datagram without blocking.
func (p *litePoller) recv(fd int) (int, netip.AddrPort, int64, bool) {
	p.msg.Namelen = uint32(unsafe.Sizeof(p.name))
	p.msg.SetControllen(len(p.oob))
	p.msg.Flags = 0
	n, _, e := syscall.Syscall(syscall.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&p.msg)), syscall.MSG_DONTWAIT)
	if e != 0 {
		return 0, netip.AddrPort{}, 0, false
	}
	at, ok := rxTimestamp(p.oob[:p.msg.Controllen])
	if !ok {
		at = time.Now().UnixNano()
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.name.Port))[:])
	return int(n), netip.AddrPortFrom(netip.AddrFrom4(p.name.Addr), port), at, true
}

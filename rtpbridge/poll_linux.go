//go:build linux

package rtpbridge

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller is a worker's epoll(7) set of its calls' PBX sockets,
// level-triggered: a socket with packets left after a read is reported again
// at the next tick. Each entry carries the call's slot and generation, so an
// event of a call released meanwhile is recognized. A closed socket leaves
// the set by itself (epoll(7), "Q6"). The sip package's RTP sockets are not
// in Go's own poller as well (sip/rtpsocket_linux.go), so their packets wake
// no other thread.
type poller struct {
	fd     int
	n      int
	events [pollEvents]unix.EpollEvent
}

// pollEvents is the most sockets one tick reads; more ready wait for the
// next tick (epoll hands ready entries out round robin).
const pollEvents = 512

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("rtpbridge: epoll_create1: %w", err)
	}
	return &poller{fd: fd}, nil
}

// add polls the socket for reading, tagged with slot and gen.
func (p *poller) add(rc syscall.RawConn, slot int32, gen uint32) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: slot, Pad: int32(gen)}
		err = unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	return errors.Join(cerr, err)
}

// del stops polling the socket. Control fails on a closed socket (which
// epoll dropped already), so a number the kernel has since given another
// socket is never removed by mistake.
func (p *poller) del(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// wait returns how many sockets are readable now, without waiting; event(i)
// says whose.
func (p *poller) wait() int {
	n, err := unix.EpollWait(p.fd, p.events[:], 0)
	if err != nil || n < 0 {
		n = 0 // EINTR among them: the next tick polls again
	}
	p.n = n
	return n
}

// event is the slot and generation of the i-th readable socket.
func (p *poller) event(i int) (int32, uint32) {
	if i >= p.n {
		return -1, 0
	}
	return p.events[i].Fd, uint32(p.events[i].Pad)
}

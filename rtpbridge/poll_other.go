//go:build !linux

package rtpbridge

import (
	"errors"
	"syscall"
)

// poller is the epoll set of poll_linux.go; elsewhere there is none and a
// call's PBX socket is read by a goroutine of its own.
type poller struct{}

func newPoller() (*poller, error) {
	return nil, errors.New("rtpbridge: no socket poller on this platform")
}

func (p *poller) add(syscall.RawConn, int32, uint32) error {
	return errors.New("rtpbridge: no socket poller on this platform")
}
func (p *poller) del(syscall.RawConn)       {}
func (p *poller) wait() int                 { return 0 }
func (p *poller) event(int) (int32, uint32) { return -1, 0 }

//go:build !linux

package wasim

import (
	"errors"
	"net"
)

// litePoller exists on Linux only; elsewhere each lite leg reads its own
// socket.
type litePoller struct{}

func newLitePoller() (*litePoller, error) {
	return nil, errors.New("wasim: no poller on this platform")
}

func (p *litePoller) add(net.IP, *liteLeg) error {
	return errors.New("wasim: no poller on this platform")
}

func (p *litePoller) remove(*liteLeg) {}

func (p *litePoller) Close() {}

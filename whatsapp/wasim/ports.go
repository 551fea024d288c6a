package wasim

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// FreeLoopbackPort asks the kernel for a free port on 127.0.0.1 ("tcp" or
// "udp"), for a gateway, echo or simulator started on loopback.
func FreeLoopbackPort(network string) (int, error) {
	// The port is free when it is returned, not reserved: the kernel may
	// hand the same number to a later port-0 bind, this function's own
	// included. Numbers already handed out in this process are skipped, so
	// two callers never get the same one (a gateway's SIP port and the
	// PBX's beside it, say).
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range maxPortTries {
		p, err := freeLoopbackPort(network)
		if err != nil {
			return 0, err
		}
		key := network + ":" + strconv.Itoa(p)
		if !handedOut[key] {
			handedOut[key] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("free %s port: every one of %d tries gave a port handed out before", network, maxPortTries)
}

const maxPortTries = 64

var (
	handedOutMu sync.Mutex
	handedOut   = map[string]bool{}
)

func freeLoopbackPort(network string) (int, error) {
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free udp port: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	case "tcp":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("free tcp port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	return 0, fmt.Errorf("free port: unknown network %q", network)
}

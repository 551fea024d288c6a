package wasim

import (
	"fmt"
	"net"
)

// FreeLoopbackPort asks the kernel for a free port on 127.0.0.1 ("tcp" or
// "udp"), for a gateway, echo or simulator started on loopback.
func FreeLoopbackPort(network string) (int, error) {
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

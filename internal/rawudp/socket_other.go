//go:build !linux

// Package rawudp is a UDP socket for the media paths. On Linux it is a raw
// descriptor outside Go's poller that media workers poll (socket_linux.go);
// here, where media is read on goroutines, it is a net.UDPConn.
package rawudp

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Socket is one bound UDP socket.
type Socket struct {
	conn  *net.UDPConn
	local *net.UDPAddr
}

// ErrWouldWait is what a Linux socket's raw Read returns where it would wait.
var ErrWouldWait = errors.New("rawudp: the socket does not wait")

// Listen binds a socket to ip:port (port 0: any).
func Listen(ip net.IP, port int) (*Socket, error) {
	network := "udp4"
	if ip.To4() == nil {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	la, _ := c.LocalAddr().(*net.UDPAddr)
	return &Socket{conn: c, local: la}, nil
}

func (s *Socket) LocalAddr() *net.UDPAddr { return s.local }

func (s *Socket) SetBuffers(read, write int) error {
	return errors.Join(s.conn.SetReadBuffer(read), s.conn.SetWriteBuffer(write))
}

func (s *Socket) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	return s.conn.ReadFromUDPAddrPort(b)
}

func (s *Socket) SetReadDeadline(t time.Time) error { return s.conn.SetReadDeadline(t) }

func (s *Socket) Waiter() (syscall.RawConn, error) { return s.conn.SyscallConn() }

func (s *Socket) DropWaiter() {}

func (s *Socket) WriteTo(b []byte, dst netip.AddrPort) error {
	_, err := s.conn.WriteToUDPAddrPort(b, dst)
	return err
}

func (s *Socket) Close() error { return s.conn.Close() }

func (s *Socket) SyscallConn() syscall.RawConn {
	rc, _ := s.conn.SyscallConn()
	return rc
}

//go:build !linux

package sip

import (
	"net"
	"net/netip"
	"syscall"
	"time"
)

// rtpSocket is a call's RTP socket; on Linux a raw descriptor the media
// workers poll (rtpsocket_linux.go), here a net.UDPConn read on a goroutine.
type rtpSocket struct {
	conn  *net.UDPConn
	local *net.UDPAddr
}

func listenRTPSocket(ip net.IP, port int) (*rtpSocket, error) {
	network := "udp4"
	if ip.To4() == nil {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	la, _ := c.LocalAddr().(*net.UDPAddr)
	return &rtpSocket{conn: c, local: la}, nil
}

func (s *rtpSocket) readFrom(b []byte) (int, netip.AddrPort, error) {
	return s.conn.ReadFromUDPAddrPort(b)
}

func (s *rtpSocket) setReadDeadline(t time.Time) error { return s.conn.SetReadDeadline(t) }

func (s *rtpSocket) dropWaiter() {}

func (s *rtpSocket) writeTo(b []byte, dst netip.AddrPort) error {
	_, err := s.conn.WriteToUDPAddrPort(b, dst)
	return err
}

func (s *rtpSocket) close() error { return s.conn.Close() }

func (s *rtpSocket) syscallConn() syscall.RawConn {
	rc, _ := s.conn.SyscallConn()
	return rc
}

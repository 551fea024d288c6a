//go:build linux

// Package sockaddr reads the socket addresses that raw system calls
// (recvfrom(2), recvmmsg(2)) fill in, without allocating: the media paths
// of both legs read their sockets that way.
package sockaddr

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AddrPort reads an AF_INET or AF_INET6 socket address, IPv4-mapped
// addresses unmapped; any other family gives the zero AddrPort (never a
// peer's). An IPv6 scope (zone) is left out: callers match by address and
// port, and a zone would make netip allocate its name.
func AddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		s := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), port(&s.Port))
	case unix.AF_INET6:
		s := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(s.Addr).Unmap(), port(&s.Port))
	}
	return netip.AddrPort{}
}

// port reads a sockaddr's port, which is in network byte order.
func port(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// PutPort stores port in a raw sockaddr's port field, in network byte order.
func PutPort(p *uint16, port uint16) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(p))[:], port)
}

//go:build linux

package sockaddr

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAddrPort(t *testing.T) {
	var sa unix.RawSockaddrAny
	in4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
	in4.Family, in4.Addr = unix.AF_INET, [4]byte{127, 0, 0, 1}
	// The port in network byte order: 8080 = 0x1f90.
	(*[2]byte)(unsafe.Pointer(&in4.Port))[0], (*[2]byte)(unsafe.Pointer(&in4.Port))[1] = 0x1f, 0x90
	if got, want := AddrPort(&sa), netip.MustParseAddrPort("127.0.0.1:8080"); got != want {
		t.Fatalf("v4: %v, want %v", got, want)
	}
	sa = unix.RawSockaddrAny{}
	in6 := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
	in6.Family, in6.Addr = unix.AF_INET6, netip.MustParseAddr("::ffff:10.0.0.7").As16()
	(*[2]byte)(unsafe.Pointer(&in6.Port))[0], (*[2]byte)(unsafe.Pointer(&in6.Port))[1] = 0x13, 0xc4
	if got, want := AddrPort(&sa), netip.MustParseAddrPort("10.0.0.7:5060"); got != want {
		t.Fatalf("v4-mapped: %v, want %v", got, want)
	}
	sa.Addr.Family = unix.AF_UNIX
	if got := AddrPort(&sa); got.IsValid() {
		t.Fatalf("AF_UNIX: %v, want none", got)
	}
}

//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || loong64)

package wasim

import (
	"encoding/binary"
	"net"
	"syscall"
)

// Kernel receive timestamps (SO_TIMESTAMPNS) on 64-bit Linux: a cmsghdr
// of 16 bytes (len uint64, level int32, type int32) then a timespec of
// two int64s.

const rxOOBLen = 64

func enableRxTimestamps(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// rxTimestamp finds the SCM_TIMESTAMPNS message in oob: Unix nanoseconds.
func rxTimestamp(oob []byte) (int64, bool) {
	const hdrLen = 16
	ne := binary.NativeEndian
	for len(oob) >= hdrLen {
		l := int(ne.Uint64(oob[0:8]))
		level, typ := int32(ne.Uint32(oob[8:12])), int32(ne.Uint32(oob[12:16]))
		if l < hdrLen || l > len(oob) {
			return 0, false
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SCM_TIMESTAMPNS && l >= hdrLen+16 {
			sec, nsec := int64(ne.Uint64(oob[16:24])), int64(ne.Uint64(oob[24:32]))
			return sec*1e9 + nsec, true
		}
		l = (l + 7) &^ 7 // CMSG_ALIGN
		if l > len(oob) {
			return 0, false
		}
		oob = oob[l:]
	}
	return 0, false
}

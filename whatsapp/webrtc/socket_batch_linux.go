//go:build linux

package webrtc

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wagateway/wagateway/internal/sockaddr"
)

// batchReader reads the shared ICE socket with recvmmsg(2): every datagram
// already queued, up to readBatch, in one system call. The socket carries
// every call's media (50 packets a second each), so at hundreds of calls
// its reader is usually behind by a few packets and one call takes them
// all. It waits in Go's netpoller like any read (RawConn.Read), and
// allocates nothing once made.
type batchReader struct {
	rc   syscall.RawConn
	read func(fd uintptr) bool // r.recv as a value made once (a method value allocates)

	hdrs  [readBatch]mmsghdr
	iovs  [readBatch]unix.Iovec
	names [readBatch]unix.RawSockaddrAny
	bufs  [readBatch][maxDatagram]byte

	n     int // datagrams of the last read
	errno syscall.Errno
}

// readBatch is the most datagrams one read takes: 20 ms of 1,600 calls'
// packets would be 1,600; a few dozen already make the call's own cost small
// against the datagrams' (the kernel copies each anyway).
const readBatch = 32

// mmsghdr is struct mmsghdr (recvmmsg(2)); on 64-bit platforms Go pads it
// to 8 bytes as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func newBatchReader(conn *net.UDPConn) (*batchReader, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ice socket: %w", err)
	}
	r := &batchReader{rc: rc}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(maxDatagram)
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	r.read = r.recv
	return r, nil
}

// readMany waits for at least one datagram and returns how many it read;
// datagram(i) is each of them, valid until the next readMany. It fails
// with net.ErrClosed once the socket is closed.
func (r *batchReader) readMany() (int, error) {
	for i := range r.hdrs {
		r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrAny
		r.hdrs[i].len = 0
	}
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.read); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, fmt.Errorf("ice socket: recvmmsg: %w", r.errno)
	}
	return r.n, nil
}

// recv is one recvmmsg; false (nothing queued: EAGAIN) sends RawConn.Read
// back to the netpoller to wait. Any other error, EINTR included, goes to
// the read loop, which reads again at once (waiting instead could miss
// datagrams already queued: the netpoller wakes on new ones).
func (r *batchReader) recv(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), readBatch, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		r.n = int(n)
	case unix.EAGAIN:
		return false
	default:
		r.errno = e
	}
	return true
}

// datagram is the i-th datagram of the last read and where it came from
// (IPv4-mapped addresses unmapped). A datagram longer than maxDatagram
// comes cut (its SRTP tag then fails).
func (r *batchReader) datagram(i int) ([]byte, netip.AddrPort) {
	return r.bufs[i][:min(int(r.hdrs[i].len), maxDatagram)], sockaddr.AddrPort(&r.names[i])
}

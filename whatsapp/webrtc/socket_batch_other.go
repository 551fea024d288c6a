//go:build !linux

package webrtc

import (
	"net"
	"net/netip"
)

// batchReader reads the ICE socket one datagram at a time where recvmmsg(2)
// is not available (socket_batch_linux.go has the batched one).
type batchReader struct {
	conn *net.UDPConn
	buf  [maxDatagram]byte
	n    int
	src  netip.AddrPort
}

func newBatchReader(conn *net.UDPConn) (*batchReader, error) {
	return &batchReader{conn: conn}, nil
}

func (r *batchReader) readMany() (int, error) {
	n, src, err := r.conn.ReadFromUDPAddrPort(r.buf[:])
	if err != nil {
		return 0, err
	}
	r.n, r.src = n, netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	return 1, nil
}

func (r *batchReader) datagram(int) ([]byte, netip.AddrPort) { return r.buf[:r.n], r.src }

//go:build !linux

package webrtc

import (
	"errors"
	"net"
	"net/netip"
)

// batchReader reads the ICE socket one datagram at a time where recvmmsg(2)
// is not available (socket_batch_linux.go has the batched one); no media
// worker polls the socket here.
type batchReader struct {
	buf [maxDatagram]byte
	n   int
	src netip.AddrPort
}

func newBatchReader() *batchReader { return &batchReader{} }

func (r *batchReader) datagram(int) ([]byte, netip.AddrPort) { return r.buf[:r.n], r.src }

// TryRead does nothing: the socket's own reader reads it.
func (s *iceSocket) TryRead() {}

func (s *iceSocket) waitReadFD(uintptr) bool { return true }

func (s *iceSocket) readLoop() {
	defer close(s.done)
	for {
		n, src, err := s.conn.ReadFrom(s.reader.buf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. an ICMP error surfaced on a read: keep reading
		}
		s.readMu.Lock()
		s.reader.n, s.reader.src = n, netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.routeBatch(1)
		s.readMu.Unlock()
	}
}

package sip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// maxRTPPortTries bounds the search for a free even port in a range.
const maxRTPPortTries = 256

// ErrNoRemote is returned by WritePacket before any destination is known.
var ErrNoRemote = errors.New("rtp: no remote address yet")

// rtpPortCursor spreads allocations over the range so that a port just
// released is not handed out again at once (late packets of the old call).
var rtpPortCursor atomic.Uint32

// RTPConn is one call's RTP socket. It does symmetric RTP (RFC 4961): it sends
// to the address from the SDP until the first RTP packet arrives, then to the
// address that packet came from, which fixes peers whose SDP holds a private
// address behind NAT. Reads and writes do not allocate.
type RTPConn struct {
	conn    *net.UDPConn
	local   *net.UDPAddr
	dst     atomic.Pointer[netip.AddrPort]
	latched atomic.Bool
	closed  atomic.Bool
	once    sync.Once
}

// ListenRTP binds a UDP socket on ip at an even port within [portMin, portMax]
// (RFC 3550 §11: RTP on even ports). portMin = portMax = 0 lets the system
// pick any free port.
func ListenRTP(ip net.IP, portMin, portMax int) (*RTPConn, error) {
	if ip == nil {
		return nil, errors.New("rtp: no IP address to bind")
	}
	network := "udp4"
	if ip.To4() == nil {
		network = "udp6"
	}
	if portMin == 0 && portMax == 0 {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
		if err != nil {
			return nil, fmt.Errorf("rtp: bind %s: %w", ip, err)
		}
		return newRTPConn(c), nil
	}
	if portMin < 1 || portMax > 65535 || portMax < portMin {
		return nil, fmt.Errorf("rtp: bad port range %d-%d", portMin, portMax)
	}
	first := portMin + portMin%2 // first even port
	n := (portMax-first)/2 + 1   // even ports in range
	if first > portMax || n < 1 {
		return nil, fmt.Errorf("rtp: port range %d-%d has no even port", portMin, portMax)
	}
	start := int(rtpPortCursor.Add(1)) + rand.IntN(n)
	tries := min(n, maxRTPPortTries)
	var lastErr error
	for i := 0; i < tries; i++ {
		port := first + 2*((start+i)%n)
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			lastErr = err
			continue
		}
		rtpPortCursor.Add(uint32(i))
		return newRTPConn(c), nil
	}
	return nil, fmt.Errorf("rtp: no free even port in %d-%d on %s after %d tries: %w", portMin, portMax, ip, tries, lastErr)
}

func newRTPConn(c *net.UDPConn) *RTPConn {
	la, _ := c.LocalAddr().(*net.UDPAddr)
	return &RTPConn{conn: c, local: la}
}

// LocalAddr is the bound address.
func (r *RTPConn) LocalAddr() *net.UDPAddr { return r.local }

// Port is the bound port.
func (r *RTPConn) Port() int {
	if r.local == nil {
		return 0
	}
	return r.local.Port
}

// SetRemote sets the destination announced in the peer's SDP and forgets any
// latched source, so that the next packet latches again (a re-INVITE may move
// the media).
func (r *RTPConn) SetRemote(a *net.UDPAddr) {
	if a == nil {
		return
	}
	ap := a.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	// A socket bound to a loopback address reaches only this host: a peer
	// that advertises another of this host's addresses (a PBX or phone
	// beside the gateway) is sent to over loopback instead, until its own
	// packets latch the real source.
	if r.local != nil && r.local.IP.IsLoopback() && !ap.Addr().IsLoopback() {
		lo := netip.IPv6Loopback()
		if r.local.IP.To4() != nil {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		ap = netip.AddrPortFrom(lo, ap.Port())
	}
	r.dst.Store(&ap)
	r.latched.Store(false)
}

// Remote is the current destination (SDP address, or the latched source).
func (r *RTPConn) Remote() *net.UDPAddr {
	p := r.dst.Load()
	if p == nil {
		return nil
	}
	return net.UDPAddrFromAddrPort(*p)
}

// Latched reports whether the destination follows a received packet's source.
func (r *RTPConn) Latched() bool { return r.latched.Load() }

// ReadPacket reads the next RTP packet into b and returns its length. Datagrams
// that are not RTP version 2 (and RTCP sent to this port) are dropped. The
// first packet latches the destination to its source.
func (r *RTPConn) ReadPacket(b []byte) (int, error) {
	n, _, err := r.ReadPacketFrom(b)
	return n, err
}

// ReadPacketFrom is ReadPacket that also returns the packet's source.
func (r *RTPConn) ReadPacketFrom(b []byte) (int, netip.AddrPort, error) {
	if len(b) < 12 {
		return 0, netip.AddrPort{}, errors.New("rtp: read buffer shorter than an RTP header")
	}
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(b)
		if err != nil {
			if r.closed.Load() {
				return 0, src, fmt.Errorf("rtp: read: %w", net.ErrClosed)
			}
			return 0, src, fmt.Errorf("rtp: read: %w", err)
		}
		if !isRTP(b[:n]) {
			continue
		}
		if !r.latched.Load() {
			s := netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			r.dst.Store(&s)
			r.latched.Store(true)
		}
		return n, src, nil
	}
}

// WritePacket sends one RTP packet to the current destination.
func (r *RTPConn) WritePacket(b []byte) error {
	p := r.dst.Load()
	if p == nil {
		return ErrNoRemote
	}
	if _, err := r.conn.WriteToUDPAddrPort(b, *p); err != nil {
		return fmt.Errorf("rtp: write: %w", err)
	}
	return nil
}

// WritePacketTo sends one packet to addr, whatever the destination is.
func (r *RTPConn) WritePacketTo(b []byte, addr netip.AddrPort) error {
	if _, err := r.conn.WriteToUDPAddrPort(b, addr); err != nil {
		return fmt.Errorf("rtp: write: %w", err)
	}
	return nil
}

// Close releases the socket; a blocked ReadPacket returns an error wrapping
// net.ErrClosed. It is idempotent.
func (r *RTPConn) Close() error {
	var err error
	r.once.Do(func() {
		r.closed.Store(true)
		err = r.conn.Close()
	})
	return err
}

// isRTP accepts RTP version 2 packets with a full fixed header and rejects
// RTCP (packet types 200-204 read as RTP PT 72-76, RFC 5761 §4).
func isRTP(b []byte) bool {
	if len(b) < 12 || b[0]>>6 != 2 {
		return false
	}
	pt := b[1] & 0x7f
	return pt < 72 || pt > 76
}

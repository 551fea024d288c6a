package sip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wagateway/wagateway/internal/rawudp"
)

// maxRTPDatagram is the largest datagram read whole (an Ethernet MTU).
const maxRTPDatagram = 1500

// maxRTPPortTries bounds the search for a free even port in a range.
const maxRTPPortTries = 256

// ErrNoRemote is returned by WritePacket before any destination is known.
var ErrNoRemote = errors.New("rtp: no remote address yet")

// rtpPortCursor spreads allocations over the range so that a port just
// released is not handed out again at once (late packets of the old call).
var rtpPortCursor atomic.Uint32

// RTPConn is one call's RTP socket. It takes media only from the peer that
// was negotiated: packets from the address in the peer's SDP are accepted,
// and the first of them pins the source. A peer whose SDP names a private
// address (RFC 1918, RFC 6598, RFC 4193, link-local) may be behind NAT, so
// the socket also latches once onto another source (symmetric RTP, RFC 4961
// §5), but only for a packet whose payload type is one negotiated and whose
// SSRC is the stream's, if one is known yet (RFC 3550 §8). Once a source is
// pinned, packets from any other are dropped and counted
// (StrangerPackets). Sends go to the SDP address until a source is pinned,
// then to that source. Reads and writes do not allocate, lock or log.
type RTPConn struct {
	sock   *rawudp.Socket
	local  *net.UDPAddr
	dst    atomic.Pointer[netip.AddrPort] // where WritePacket sends
	peer   atomic.Pointer[rtpPeer]        // what the peer's SDP allows
	src    atomic.Pointer[netip.AddrPort] // the pinned source; nil until the first accepted packet
	ssrc   atomic.Uint64                  // the stream's SSRC | ssrcKnown, 0 while unknown
	pts    [2]atomic.Uint64               // negotiated payload types (bit per PT); all zero = any
	closed atomic.Bool
	once   sync.Once
	// latchMu orders latching (rare: once per SDP address) with SetRemote.
	latchMu sync.Mutex

	strangers atomic.Uint64
	// onStranger, if set, is also incremented per dropped packet (the
	// UA's total across calls).
	onStranger *atomic.Uint64
	// open, if set, counts the socket while it is open (the UA's RTP
	// ports in use): decremented once by Close.
	open *atomic.Int64

	// Early discard (discardEarly): a reader that drops what arrives
	// before the PBX answers, so it is not queued and played as new audio.
	discardStop atomic.Bool
	discardDone chan struct{} // closed when that reader returned; nil when none ran
	discarded   atomic.Uint64
	held        atomic.Pointer[heldPacket] // read by the discarder after the stop: the next ReadPacket's

	// TryReadPacket's (rtp_poll_linux.go), made at its first read.
	rc  syscall.RawConn
	try tryRecv
}

// heldPacket is a datagram the early discarder read after it was told to
// stop: it belongs to the answered call.
type heldPacket struct {
	b   []byte
	src netip.AddrPort
}

// ssrcKnown marks RTPConn.ssrc as holding an SSRC.
const ssrcKnown = 1 << 32

// rtpPeer is the media address of the peer's latest SDP.
type rtpPeer struct {
	sdp    netip.AddrPort // as the SDP says
	mapped netip.AddrPort // where we send it (loopback for a loopback-bound socket)
	natOK  bool           // the SDP address is private: its packets may come from a NAT's
	// retired is the source pinned before this SDP moved the media: its
	// late packets (same SSRC) must not latch again.
	retired netip.AddrPort
}

// ListenRTP binds a UDP socket on ip at an even port within [portMin, portMax]
// (RFC 3550 §11: RTP on even ports). portMin = portMax = 0 lets the system
// pick any free port.
func ListenRTP(ip net.IP, portMin, portMax int) (*RTPConn, error) {
	if ip == nil {
		return nil, errors.New("rtp: no IP address to bind")
	}
	if portMin == 0 && portMax == 0 {
		s, err := rawudp.Listen(ip, 0)
		if err != nil {
			return nil, fmt.Errorf("rtp: bind %s: %w", ip, err)
		}
		return newRTPConn(s), nil
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
		s, err := rawudp.Listen(ip, port)
		if err != nil {
			lastErr = err
			continue
		}
		rtpPortCursor.Add(uint32(i))
		return newRTPConn(s), nil
	}
	return nil, fmt.Errorf("rtp: no free even port in %d-%d on %s after %d tries: %w", portMin, portMax, ip, tries, lastErr)
}

// discardEarly starts a reader that drops every datagram until
// stopDiscard: what a PBX sends before its answer (early media we do not
// play, RFC 3960 §2) would otherwise wait in the socket's buffer and be
// played as new audio after the answer. ReadPacket must not be called
// before stopDiscard returned.
func (r *RTPConn) discardEarly() {
	done := make(chan struct{})
	r.discardDone = done
	go func() {
		defer close(done)
		buf := make([]byte, maxRTPDatagram)
		for {
			n, src, err := r.sock.ReadFrom(buf)
			if err != nil {
				return // stopDiscard's deadline, or Close
			}
			if r.discardStop.Load() {
				// Read after the answer arrived: the answered call's audio.
				r.held.Store(&heldPacket{b: buf[:n], src: src})
				return
			}
			r.discarded.Add(1)
		}
	}()
}

// stopDiscard ends the early discarder and returns once it stopped; what
// arrives from now on is read by ReadPacket. It returns the number of
// datagrams dropped. It does nothing when no discarder runs.
func (r *RTPConn) stopDiscard() uint64 {
	if r.discardDone == nil || r.discardStop.Swap(true) {
		return r.discarded.Load()
	}
	// A deadline in the past wakes the blocked read and leaves queued
	// datagrams in the socket.
	_ = r.sock.SetReadDeadline(time.Now())
	<-r.discardDone
	_ = r.sock.SetReadDeadline(time.Time{})
	// From now on a media worker reads the socket, or ReadPacket makes the
	// waiter again: see rawudp.
	r.sock.DropWaiter()
	return r.discarded.Load()
}

// track counts the socket in open until it is closed.
func (r *RTPConn) track(open *atomic.Int64) {
	open.Add(1)
	r.open = open
}

func newRTPConn(s *rawudp.Socket) *RTPConn {
	return &RTPConn{sock: s, local: s.LocalAddr()}
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

// SetRemote sets the peer's media address from its SDP (the answer, or a
// re-INVITE that moves the media). Packets are then accepted from that
// address; a source pinned for an older address no longer is. Moving the
// address does not open the socket to other sources: a NAT latch needs the
// same checks as the first time, and the stream's SSRC, once seen, stays
// required for it.
func (r *RTPConn) SetRemote(a *net.UDPAddr) {
	if a == nil {
		return
	}
	ap := a.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	p := &rtpPeer{sdp: ap, mapped: ap, natOK: mayBeNATed(ap.Addr())}
	// A socket bound to a loopback address reaches only this host: a peer
	// that advertises another of this host's addresses (a PBX or phone
	// beside the gateway) is sent to over loopback instead, until its own
	// packets pin the real source.
	if r.local != nil && r.local.IP.IsLoopback() && !ap.Addr().IsLoopback() {
		lo := netip.IPv6Loopback()
		if r.local.IP.To4() != nil {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		p.mapped = netip.AddrPortFrom(lo, ap.Port())
	}
	r.latchMu.Lock()
	defer r.latchMu.Unlock()
	if cur := r.peer.Load(); cur != nil && cur.sdp == p.sdp {
		return // the same address again (a 2xx after a 183's early media, a refresh): keep the latch
	}
	if old := r.src.Load(); old != nil {
		p.retired = *old
	}
	r.peer.Store(p)
	r.src.Store(nil)
	r.dst.Store(&p.mapped)
}

// mayBeNATed reports whether an SDP address is one a NAT would rewrite:
// private (RFC 1918, RFC 4193), shared (RFC 6598) or link-local.
func mayBeNATed(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLinkLocalUnicast() || cgnat.Contains(a)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// SetPayloadTypes sets the payload types negotiated for the stream (the
// codec's, telephone-event's, CN's): a NAT latch needs one of them. With none
// set, any payload type may latch.
func (r *RTPConn) SetPayloadTypes(pts ...uint8) {
	var m [2]uint64
	for _, pt := range pts {
		pt &= 0x7f
		m[pt/64] |= 1 << (pt % 64)
	}
	r.pts[0].Store(m[0])
	r.pts[1].Store(m[1])
}

// Remote is the current destination (SDP address, or the pinned source).
func (r *RTPConn) Remote() *net.UDPAddr {
	p := r.dst.Load()
	if p == nil {
		return nil
	}
	return net.UDPAddrFromAddrPort(*p)
}

// Latched reports whether a source is pinned (a packet was accepted since
// the last SetRemote).
func (r *RTPConn) Latched() bool { return r.src.Load() != nil }

// StrangerPackets is the number of datagrams dropped because they came from
// a source other than the negotiated peer.
func (r *RTPConn) StrangerPackets() uint64 { return r.strangers.Load() }

// ReadPacket reads the next RTP packet from the peer into b and returns its
// length. Datagrams that are not RTP version 2 (and RTCP sent to this port)
// are dropped, and so is everything from other sources (see RTPConn).
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
		n, src, err := r.readRaw(b)
		if err != nil {
			return 0, src, r.readErr(err)
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if r.accept(b[:n], src) {
			return n, src, nil
		}
	}
}

// readErr wraps a read's failure, as net.ErrClosed once Close was called.
func (r *RTPConn) readErr(err error) error {
	if r.closed.Load() {
		return fmt.Errorf("rtp: read: %w", net.ErrClosed)
	}
	return fmt.Errorf("rtp: read: %w", err)
}

// accept says whether a datagram from src is the peer's RTP (see RTPConn),
// counting it as a stranger's if it is from another source.
func (r *RTPConn) accept(pkt []byte, src netip.AddrPort) bool {
	if p := r.src.Load(); p != nil {
		if *p == src && isRTP(pkt) {
			return true
		}
		if *p != src {
			r.stranger()
		}
		return false
	}
	if !isRTP(pkt) {
		if p := r.peer.Load(); p == nil || (src != p.sdp && src != p.mapped) {
			r.stranger()
		}
		return false
	}
	if r.latch(src, pkt) {
		return true
	}
	r.stranger()
	return false
}

// readRaw returns the datagram the early discarder kept, if any, else the
// socket's next one.
func (r *RTPConn) readRaw(b []byte) (int, netip.AddrPort, error) {
	if h := r.held.Load(); h != nil && r.held.CompareAndSwap(h, nil) {
		return copy(b, h.b), h.src, nil
	}
	return r.sock.ReadFrom(b)
}

// latch pins src as the peer's source if the SDP allows it: it is the SDP's
// address, or (a NATed peer) the packet fits the negotiated stream.
func (r *RTPConn) latch(src netip.AddrPort, pkt []byte) bool {
	r.latchMu.Lock()
	defer r.latchMu.Unlock()
	if p := r.src.Load(); p != nil { // pinned meanwhile
		return *p == src
	}
	p := r.peer.Load()
	if p == nil {
		return false // no SDP yet: nobody to accept
	}
	ssrc := uint64(binary.BigEndian.Uint32(pkt[8:12])) | ssrcKnown
	if src != p.sdp && src != p.mapped {
		if !p.natOK || src == p.retired || !r.ptAllowed(pkt[1]&0x7f) {
			return false
		}
		if known := r.ssrc.Load(); known != 0 && known != ssrc {
			return false
		}
	}
	r.ssrc.Store(ssrc)
	s := src
	r.src.Store(&s)
	r.dst.Store(&s)
	return true
}

func (r *RTPConn) ptAllowed(pt uint8) bool {
	m0, m1 := r.pts[0].Load(), r.pts[1].Load()
	if m0 == 0 && m1 == 0 {
		return true
	}
	if pt < 64 {
		return m0&(1<<pt) != 0
	}
	return m1&(1<<(pt-64)) != 0
}

func (r *RTPConn) stranger() {
	r.strangers.Add(1)
	if r.onStranger != nil {
		r.onStranger.Add(1)
	}
}

// WritePacket sends one RTP packet to the current destination.
func (r *RTPConn) WritePacket(b []byte) error {
	p := r.dst.Load()
	if p == nil {
		return ErrNoRemote
	}
	if err := r.sock.WriteTo(b, *p); err != nil {
		return fmt.Errorf("rtp: write: %w", err)
	}
	return nil
}

// WritePacketTo sends one packet to addr, whatever the destination is.
func (r *RTPConn) WritePacketTo(b []byte, addr netip.AddrPort) error {
	if err := r.sock.WriteTo(b, addr); err != nil {
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
		err = r.sock.Close()
		if r.open != nil {
			r.open.Add(-1)
		}
		if r.discardDone != nil {
			<-r.discardDone
		}
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

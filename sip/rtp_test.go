package sip

import (
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestListenRTPEvenPorts(t *testing.T) {
	ip := net.IPv4(127, 0, 0, 1)
	var conns []*RTPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// A range of 3 even ports: 33000, 33002, 33004.
	for i := 0; i < 3; i++ {
		c, err := ListenRTP(ip, 32999, 33005)
		if err != nil {
			t.Fatalf("port %d: %v", i, err)
		}
		if p := c.Port(); p%2 != 0 || p < 33000 || p > 33004 {
			t.Errorf("port %d outside the even ports of the range", p)
		}
		conns = append(conns, c)
	}
	if _, err := ListenRTP(ip, 32999, 33005); err == nil {
		t.Error("a fourth socket in a range of three even ports")
	}
	// Freed on Close.
	conns[0].Close()
	c, err := ListenRTP(ip, 32999, 33005)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	conns = append(conns, c)

	for _, r := range [][2]int{{33001, 33001}, {5, 3}, {0, 70000}} {
		if c, err := ListenRTP(ip, r[0], r[1]); err == nil {
			c.Close()
			t.Errorf("range %v accepted", r)
		}
	}
	if _, err := ListenRTP(nil, 0, 0); err == nil {
		t.Error("nil IP accepted")
	}
}

// TestSymmetricRTP: the SDP announces a private address (a PBX behind NAT);
// once the peer's first packet arrives from elsewhere, replies go there.
func TestSymmetricRTP(t *testing.T) {
	ip := net.IPv4(127, 0, 0, 1)
	c, err := ListenRTP(ip, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WritePacket(make([]byte, 12)); !errors.Is(err, ErrNoRemote) {
		t.Errorf("write without remote: %v", err)
	}
	announced := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 4000} // private: sent to over loopback, nothing there
	c.SetRemote(announced)
	if c.Remote().String() != "127.0.0.1:4000" || c.Latched() {
		t.Fatalf("remote %s latched %v", c.Remote(), c.Latched())
	}

	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// Not RTP: dropped, no latch.
	if _, err := peer.WriteToUDP([]byte{1, 2, 3}, c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	// RTCP sender report on the RTP port: dropped too.
	rtcp := make([]byte, 28)
	rtcp[0], rtcp[1] = 0x80, 200
	if _, err := peer.WriteToUDP(rtcp, c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 20)
	pkt[0], pkt[1] = 0x80, 0
	if _, err := peer.WriteToUDP(pkt, c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.ReadPacket(buf)
	if err != nil || n != 20 {
		t.Fatalf("read %d %v", n, err)
	}
	if !c.Latched() || c.Remote().String() != peer.LocalAddr().String() {
		t.Fatalf("remote %s, want the source %s", c.Remote(), peer.LocalAddr())
	}
	if err := c.WritePacket(pkt); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := peer.ReadFromUDP(buf); err != nil || n != 20 {
		t.Fatalf("peer read %d %v", n, err)
	}
	// A re-INVITE moving media resets the latch.
	c.SetRemote(&net.UDPAddr{IP: ip, Port: 9})
	if c.Latched() {
		t.Error("still latched after SetRemote")
	}

	// Close unblocks a reader with net.ErrClosed; Close is idempotent.
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadPacket(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadPacket not unblocked by Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func BenchmarkRTPWriteRead(b *testing.B) {
	ip := net.IPv4(127, 0, 0, 1)
	a, err := ListenRTP(ip, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	z, err := ListenRTP(ip, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer z.Close()
	a.SetRemote(z.LocalAddr())
	z.SetRemote(a.LocalAddr()) // z takes media only from its negotiated peer
	pkt := make([]byte, 172)
	pkt[0] = 0x80
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		if err := a.WritePacket(pkt); err != nil {
			b.Fatal(err)
		}
		if _, err := z.ReadPacket(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// A loopback-bound socket never sends off loopback: a peer advertising
// another of this host's addresses is reached over 127.0.0.1.
func TestLoopbackSocketKeepsToLoopback(t *testing.T) {
	c, err := ListenRTP(net.ParseIP("127.0.0.1"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetRemote(&net.UDPAddr{IP: net.ParseIP("192.0.2.2"), Port: 4000})
	if got := c.Remote().String(); got != "127.0.0.1:4000" {
		t.Fatalf("remote %s, want 127.0.0.1:4000", got)
	}
	c.SetRemote(&net.UDPAddr{IP: net.ParseIP("127.0.0.5"), Port: 4002})
	if got := c.Remote().String(); got != "127.0.0.5:4002" {
		t.Fatalf("remote %s, want the loopback address as given", got)
	}
}

// rtpPkt is a 20-byte RTP packet with the given PT, SSRC and payload byte.
func rtpPkt(pt uint8, ssrc uint32, fill byte) []byte {
	b := make([]byte, 20)
	b[0], b[1] = 0x80, pt
	binary.BigEndian.PutUint32(b[8:12], ssrc)
	for i := 12; i < len(b); i++ {
		b[i] = fill
	}
	return b
}

func udpPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// readRTP reads one accepted packet within 2 s.
func readRTP(t *testing.T, c *RTPConn, buf []byte) []byte {
	t.Helper()
	c.sock.SetReadDeadline(time.Now().Add(2 * time.Second))
	defer c.sock.SetReadDeadline(time.Time{})
	n, err := c.ReadPacket(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// expectNothing fails if p receives a datagram within d.
func expectNothing(t *testing.T, p *net.UDPConn, d time.Duration, who string) {
	t.Helper()
	buf := make([]byte, 1500)
	p.SetReadDeadline(time.Now().Add(d))
	if n, _, err := p.ReadFromUDP(buf); err == nil {
		t.Fatalf("%s received %d bytes from us", who, n)
	}
}

// TestRTPOnlyFromNegotiatedPeer: with a routable (here loopback) SDP
// address, only that address is accepted, before and after its first packet;
// strangers are counted and never sent to.
func TestRTPOnlyFromNegotiatedPeer(t *testing.T) {
	c, err := ListenRTP(net.IPv4(127, 0, 0, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var total atomic.Uint64
	c.onStranger = &total
	pbx, stranger := udpPeer(t), udpPeer(t)
	c.SetPayloadTypes(0, 101, 13)
	c.SetRemote(pbx.LocalAddr().(*net.UDPAddr))
	buf := make([]byte, 1500)

	// Before the PBX's first packet: a stranger's packet fits the stream
	// (PT 0) but does not come from the SDP address.
	stranger.WriteToUDP(rtpPkt(0, 0xBAD, 0xEE), c.LocalAddr())
	time.Sleep(20 * time.Millisecond)
	pbx.WriteToUDP(rtpPkt(0, 0x1234, 0x11), c.LocalAddr())
	if got := readRTP(t, c, buf); got[12] != 0x11 {
		t.Fatalf("read the stranger's packet (payload %#x)", got[12])
	}
	// After it: same.
	stranger.WriteToUDP(rtpPkt(0, 0x1234, 0xEE), c.LocalAddr()) // even with the PBX's SSRC
	time.Sleep(20 * time.Millisecond)
	pbx.WriteToUDP(rtpPkt(0, 0x1234, 0x22), c.LocalAddr())
	if got := readRTP(t, c, buf); got[12] != 0x22 {
		t.Fatalf("read the stranger's packet (payload %#x)", got[12])
	}
	if n := c.StrangerPackets(); n != 2 || total.Load() != 2 {
		t.Errorf("stranger packets %d (UA total %d), want 2", n, total.Load())
	}
	if err := c.WritePacket(rtpPkt(0, 1, 1)); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, stranger, 200*time.Millisecond, "the stranger")

	// A re-INVITE moves the media to another address: the old source and
	// strangers are dropped, the new address is accepted.
	moved := udpPeer(t)
	c.SetRemote(moved.LocalAddr().(*net.UDPAddr))
	pbx.WriteToUDP(rtpPkt(0, 0x1234, 0x33), c.LocalAddr())
	stranger.WriteToUDP(rtpPkt(0, 0x1234, 0xEE), c.LocalAddr())
	time.Sleep(20 * time.Millisecond)
	moved.WriteToUDP(rtpPkt(0, 0x5678, 0x44), c.LocalAddr())
	if got := readRTP(t, c, buf); got[12] != 0x44 {
		t.Fatalf("after the move read payload %#x, want the new address's", got[12])
	}
	if n := c.StrangerPackets(); n != 4 {
		t.Errorf("stranger packets %d, want 4", n)
	}
}

// TestRTPNATLatch: a private SDP address lets one other source latch, only
// with a negotiated payload type and the stream's SSRC once known; a
// re-INVITE to another private address does not let a stranger in.
func TestRTPNATLatch(t *testing.T) {
	c, err := ListenRTP(net.IPv4(127, 0, 0, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nat, stranger := udpPeer(t), udpPeer(t)
	c.SetPayloadTypes(0, 101, 13)
	c.SetRemote(&net.UDPAddr{IP: net.IPv4(192, 168, 7, 7), Port: 4000})
	buf := make([]byte, 1500)

	stranger.WriteToUDP(rtpPkt(96, 0xBAD, 0xEE), c.LocalAddr()) // PT not negotiated
	time.Sleep(20 * time.Millisecond)
	nat.WriteToUDP(rtpPkt(0, 0x1234, 0x11), c.LocalAddr())
	if got := readRTP(t, c, buf); got[12] != 0x11 {
		t.Fatalf("latched the stranger (payload %#x)", got[12])
	}
	if c.Remote().String() != nat.LocalAddr().String() {
		t.Fatalf("remote %s, want the NAT source %s", c.Remote(), nat.LocalAddr())
	}
	stranger.WriteToUDP(rtpPkt(0, 0x1234, 0xEE), c.LocalAddr()) // latched: nobody else
	time.Sleep(20 * time.Millisecond)
	nat.WriteToUDP(rtpPkt(101, 0x1234, 0x22), c.LocalAddr())
	if got := readRTP(t, c, buf); got[12] != 0x22 {
		t.Fatalf("read payload %#x after latching", got[12])
	}

	// Re-INVITE to another private address: a packet with another SSRC
	// cannot latch; the stream's SSRC can.
	c.SetRemote(&net.UDPAddr{IP: net.IPv4(192, 168, 7, 8), Port: 4002})
	moved := udpPeer(t)
	stranger.WriteToUDP(rtpPkt(0, 0xBAD, 0xEE), c.LocalAddr())
	nat.WriteToUDP(rtpPkt(0, 0x1234, 0xEE), c.LocalAddr()) // a late packet from the old source
	time.Sleep(20 * time.Millisecond)
	moved.WriteToUDP(rtpPkt(0, 0x1234, 0x33), c.LocalAddr())
	if got := readRTP(t, c, buf); got[12] != 0x33 {
		t.Fatalf("read payload %#x after the move", got[12])
	}
	if n := c.StrangerPackets(); n != 4 {
		t.Errorf("stranger packets %d, want 4", n)
	}
	if err := c.WritePacket(rtpPkt(0, 1, 1)); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, stranger, 200*time.Millisecond, "the stranger")
}

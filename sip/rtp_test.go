package sip

import (
	"errors"
	"net"
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

// TestSymmetricRTP: the SDP announces a private address; once the peer's
// first packet arrives from elsewhere, replies go there.
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
	announced := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4000} // another loopback address, never written to
	c.SetRemote(announced)
	if c.Remote().String() != announced.String() || c.Latched() {
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

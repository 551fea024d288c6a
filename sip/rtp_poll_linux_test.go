//go:build linux

package sip

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TryReadPacket, as a media worker calls it: nothing waiting is 0 and no
// error; a stranger's packet is dropped and counted on the way to the
// peer's; what the early discarder kept comes first; reads allocate nothing;
// after Close it fails with net.ErrClosed.
func TestRTPTryReadPacket(t *testing.T) {
	c, err := ListenRTP(net.IPv4(127, 0, 0, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pbx, stranger := udpPeer(t), udpPeer(t)
	c.SetRemote(pbx.LocalAddr().(*net.UDPAddr))
	buf := make([]byte, 1500)
	if n, err := c.TryReadPacket(buf); n != 0 || err != nil {
		t.Fatalf("empty socket: %d, %v", n, err)
	}
	stranger.WriteToUDP(rtpPkt(0, 0x1234, 0xEE), c.LocalAddr())
	pbx.WriteToUDP(rtpPkt(0, 0x1234, 0x11), c.LocalAddr())
	time.Sleep(20 * time.Millisecond)
	if n, err := c.TryReadPacket(buf); n != 20 || err != nil || buf[12] != 0x11 {
		t.Fatalf("got %d bytes (payload %#x), %v; want the PBX's 20", n, buf[12], err)
	}
	if c.StrangerPackets() != 1 {
		t.Fatalf("stranger packets %d, want 1", c.StrangerPackets())
	}
	if n, err := c.TryReadPacket(buf); n != 0 || err != nil {
		t.Fatalf("drained socket: %d, %v", n, err)
	}

	c.held.Store(&heldPacket{b: rtpPkt(0, 0x1234, 0x22), src: pbxAddrPort(pbx)})
	pbx.WriteToUDP(rtpPkt(0, 0x1234, 0x33), c.LocalAddr())
	time.Sleep(20 * time.Millisecond)
	for _, want := range []byte{0x22, 0x33} {
		if n, err := c.TryReadPacket(buf); n != 20 || err != nil || buf[12] != want {
			t.Fatalf("got %d bytes (payload %#x), %v; want payload %#x", n, buf[12], err, want)
		}
	}

	pkt := rtpPkt(0, 0x1234, 0x44)
	if allocs := testing.AllocsPerRun(50, func() {
		pbx.WriteToUDP(pkt, c.LocalAddr())
		for range 1000 {
			if n, _ := c.TryReadPacket(buf); n > 0 {
				break
			}
		}
		c.TryReadPacket(buf) // and one that finds nothing
	}); allocs > 0 {
		t.Errorf("%.1f allocations a read", allocs)
	}

	c.Close()
	if _, err := c.TryReadPacket(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v, want net.ErrClosed", err)
	}
}

func pbxAddrPort(p *net.UDPConn) netip.AddrPort { return p.LocalAddr().(*net.UDPAddr).AddrPort() }

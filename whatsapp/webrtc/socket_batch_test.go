package webrtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

// The ICE socket's reader takes several queued datagrams per read (on
// Linux) and gives each with its own sender, IPv4 and IPv6.
func TestBatchReaderSources(t *testing.T) {
	for _, loop := range []string{"127.0.0.1", "::1"} {
		t.Run(loop, func(t *testing.T) {
			ip := netip.MustParseAddr(loop)
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
			if err != nil {
				if ip.Is6() && os.Getenv("CI") != "true" {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatal(err)
			}
			defer conn.Close()
			r, err := newBatchReader(conn)
			if err != nil {
				t.Fatal(err)
			}
			dst := conn.LocalAddr().(*net.UDPAddr).AddrPort()
			var senders [2]*net.UDPConn
			want := map[string]netip.AddrPort{}
			const perSender = 5
			for i := range senders {
				s, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				senders[i] = s
				for k := range perSender {
					p := fmt.Sprintf("\x80sender %d packet %d", i, k)
					if _, err := s.WriteToUDPAddrPort([]byte(p), dst); err != nil {
						t.Fatal(err)
					}
					want[p] = s.LocalAddr().(*net.UDPAddr).AddrPort()
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			most := 0
			for reads := 0; len(want) > 0 && reads < 2*perSender*len(senders); reads++ {
				n, err := r.readMany()
				if err != nil {
					t.Fatalf("read: %v (%d datagrams still expected)", err, len(want))
				}
				most = max(most, n)
				for i := range n {
					p, src := r.datagram(i)
					from, ok := want[string(p)]
					if !ok {
						t.Fatalf("datagram %q: not one sent, or twice", p)
					}
					if src != from {
						t.Errorf("datagram %q from %v, want %v", p, src, from)
					}
					delete(want, string(p))
				}
			}
			if len(want) > 0 {
				t.Fatalf("%d datagrams never read", len(want))
			}
			if runtime.GOOS == "linux" && most != perSender*len(senders) {
				t.Errorf("at most %d datagrams in one read, want all %d that were queued", most, perSender*len(senders))
			}

			// A read allocates nothing (the sender's write neither).
			pkt := []byte("\x80one more")
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := senders[0].WriteToUDPAddrPort(pkt, dst); err != nil {
					t.Fatal(err)
				}
				if n, err := r.readMany(); err != nil || n != 1 {
					t.Fatalf("read: %d datagrams, %v", n, err)
				}
				if p, src := r.datagram(0); string(p) != string(pkt) || !src.IsValid() {
					t.Fatalf("read %q from %v", p, src)
				}
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per datagram, want 0", allocs)
			}
		})
	}
}

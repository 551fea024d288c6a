//go:build linux

package webrtc

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/internal/rawudp"
)

// listenLoop binds a raw socket on a loopback address (IPv6 may be missing
// off CI).
func listenLoop(t *testing.T, loop string) *rawudp.Socket {
	t.Helper()
	ip := netip.MustParseAddr(loop)
	s, err := rawudp.Listen(net.IP(ip.AsSlice()), 0)
	if err != nil {
		if ip.Is6() && os.Getenv("CI") != "true" {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		t.Fatal(err)
	}
	return s
}

// The batch reader takes every queued datagram in one read and gives each
// with its own sender, IPv4 and IPv6; a read never waits and allocates
// nothing.
func TestBatchReaderSources(t *testing.T) {
	for _, loop := range []string{"127.0.0.1", "::1"} {
		t.Run(loop, func(t *testing.T) {
			conn := listenLoop(t, loop)
			defer conn.Close()
			r, rc := newBatchReader(), conn.SyscallConn()
			if n, err := r.tryRead(rc); n != 0 || err != nil {
				t.Fatalf("empty socket: %d, %v", n, err)
			}
			ip := netip.MustParseAddr(loop)
			dst := conn.LocalAddr().AddrPort()
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
			time.Sleep(20 * time.Millisecond) // loopback delivers at once; a margin all the same
			n, err := r.tryRead(rc)
			if err != nil || n != perSender*len(senders) {
				t.Fatalf("read %d datagrams, %v; want all %d queued in one read", n, err, perSender*len(senders))
			}
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

			pkt := []byte("\x80one more")
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := senders[0].WriteToUDPAddrPort(pkt, dst); err != nil {
					t.Fatal(err)
				}
				n := 0
				for range 10000 {
					if n, _ = r.tryRead(rc); n > 0 {
						break
					}
				}
				if p, src := r.datagram(0); n != 1 || string(p) != string(pkt) || !src.IsValid() {
					t.Fatalf("read %d: %q from %v", n, p, src)
				}
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per datagram, want 0", allocs)
			}
		})
	}
}

// The ICE socket's own reader reads while no media worker polls the socket,
// and leaves it to the workers' TryRead while one does: it does not take
// (or wait for) their datagrams; when the last stops it reads again.
func TestICESocketReaderHandover(t *testing.T) {
	conn := listenLoop(t, "127.0.0.1")
	s, err := newICESocket(conn, newLegMux(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	send := func(n int) {
		for range n {
			// SRTP-looking, from no call's address: read, then dropped.
			if _, err := peer.WriteToUDPAddrPort([]byte("\x80\x6fsrtp from nobody"), s.local); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor := func(what string, want uint64) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); s.datagrams.Load() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d datagrams read, want %d", what, s.datagrams.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	send(3)
	waitFor("own reader", 3)
	if s.ownReads.Load() == 0 || s.workerReads.Load() != 0 {
		t.Fatalf("reads: own %d, workers' %d", s.ownReads.Load(), s.workerReads.Load())
	}

	s.SetPolled(true)
	s.SetPolled(true) // two workers
	time.Sleep(20 * time.Millisecond)
	own := s.ownReads.Load()
	send(4)
	time.Sleep(50 * time.Millisecond)
	if got := s.datagrams.Load(); got != 3 {
		t.Fatalf("polled by workers: the own reader read %d more", got-3)
	}
	s.TryRead()
	if got := s.datagrams.Load(); got != 7 || s.workerReads.Load() != 1 || s.ownReads.Load() != own {
		t.Fatalf("TryRead: %d datagrams in all (want 7), workers' reads %d (want 1), own %d → %d",
			got, s.workerReads.Load(), own, s.ownReads.Load())
	}

	s.SetPolled(false)
	send(1)
	time.Sleep(50 * time.Millisecond)
	if s.datagrams.Load() != 7 {
		t.Fatal("one worker still polls: the own reader read")
	}
	s.SetPolled(false)
	waitFor("own reader again", 8)

	done := make(chan error, 1)
	go func() { done <- s.close() }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("close did not end the own reader")
	}
	s.TryRead() // on a closed socket: nothing, no panic
}

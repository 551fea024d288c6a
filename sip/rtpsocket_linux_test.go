//go:build linux

package sip

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// watchedByAnEpoll reports whether some epoll set of this process (the Go
// runtime's poller's among them) watches fd's socket, by inode
// (proc_pid_fdinfo(5): "tfd: … ino:<hex>").
func watchedByAnEpoll(t *testing.T, fd int) bool {
	t.Helper()
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || !strings.HasPrefix(link, "socket:[") {
		t.Fatalf("fd %d: %q, %v", fd, link, err)
	}
	ino, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
	want := " ino:" + strconv.FormatUint(ino, 16) + " "
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l != "anon_inode:[eventpoll]" {
			continue
		}
		info, _ := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if strings.Contains(string(info), want) {
			return true
		}
	}
	return false
}

// The raw RTP socket: no epoll watches it but while a blocking read needs
// the waiter (a packet must not wake the Go runtime's poller for nobody); writes reach the peer over IPv4 and IPv6 without
// allocating; a blocking read (through the waiter) works and the waiter goes
// away with dropWaiter; Close ends a blocked read; no descriptor is left
// open afterwards, whichever paths a socket took.
func TestRTPSocketLifecycle(t *testing.T) {
	before := openFDs(t)
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		network := "udp4"
		if ip.To4() == nil {
			network = "udp6"
		}
		peer, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
		if err != nil {
			t.Skipf("%s loopback: %v", network, err)
		}
		c, err := ListenRTP(ip, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !c.LocalAddr().IP.Equal(ip) || c.Port() == 0 {
			t.Fatalf("bound to %v", c.LocalAddr())
		}
		c.SetRemote(peer.LocalAddr().(*net.UDPAddr))
		if watchedByAnEpoll(t, c.sock.fd) {
			t.Fatalf("%s: a new RTP socket is watched by an epoll set", network)
		}
		pkt := rtpPkt(0, 0x1234, 0x55)
		if allocs := testing.AllocsPerRun(20, func() {
			if err := c.WritePacket(pkt); err != nil {
				t.Fatal(err)
			}
		}); allocs > 0 {
			t.Errorf("%s: %.1f allocations a write", network, allocs)
		}
		got := make([]byte, 1500)
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := peer.ReadFromUDPAddrPort(got)
		if err != nil || n != len(pkt) || got[12] != 0x55 {
			t.Fatalf("%s: peer read %d bytes, %v", network, n, err)
		}

		// A blocking read, then its waiter dropped and made again.
		peer.WriteToUDP(rtpPkt(0, 0x1234, 0x66), c.LocalAddr())
		_ = c.sock.setReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.ReadPacket(got); err != nil || n != 20 || got[12] != 0x66 {
			t.Fatalf("%s: ReadPacket %d bytes, %v", network, n, err)
		}
		if !watchedByAnEpoll(t, c.sock.fd) {
			t.Fatalf("%s: the waiter is not watched", network) // the check itself failing
		}
		c.sock.dropWaiter()
		if watchedByAnEpoll(t, c.sock.fd) {
			t.Fatalf("%s: still watched after dropWaiter", network)
		}
		peer.WriteToUDP(rtpPkt(0, 0x1234, 0x77), c.LocalAddr())
		_ = c.sock.setReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.ReadPacket(got); err != nil || n != 20 || got[12] != 0x77 {
			t.Fatalf("%s: ReadPacket after dropWaiter %d bytes, %v", network, n, err)
		}

		// Close ends a read blocked in the waiter.
		_ = c.sock.setReadDeadline(time.Time{})
		done := make(chan error, 1)
		go func() { _, err := c.ReadPacket(got); done <- err }()
		time.Sleep(20 * time.Millisecond)
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: blocked read after Close: %v, want net.ErrClosed", network, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: Close did not end a blocked read", network)
		}
		if err := c.WritePacket(pkt); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s: write after Close: %v, want net.ErrClosed", network, err)
		}
		if err := c.sock.syscallConn().Control(func(uintptr) {}); err == nil {
			t.Fatalf("%s: Control after Close succeeded", network)
		}
		peer.Close()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

// A socket closed while other goroutines read, write and poll it closes its
// descriptor only once they are out: no call on a number the kernel may have
// given another socket (run with -race).
func TestRTPSocketCloseUnderUse(t *testing.T) {
	peer := udpPeer(t)
	defer peer.Close()
	before := openFDs(t)
	for range 20 {
		c, err := ListenRTP(net.IPv4(127, 0, 0, 1), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		c.SetRemote(peer.LocalAddr().(*net.UDPAddr))
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(2)
		go func() { // the worker: polls and reads
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, err := c.TryReadPacket(buf); err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("read: %v", err)
					}
					return
				}
			}
		}()
		go func() { // the pacer: writes
			defer wg.Done()
			pkt := rtpPkt(0, 1, 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.WritePacketTo(pkt, netip.MustParseAddrPort("127.0.0.1:9")) // discard port
			}
		}()
		time.Sleep(2 * time.Millisecond)
		c.Close()
		close(stop)
		wg.Wait()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

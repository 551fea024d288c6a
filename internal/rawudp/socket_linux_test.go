//go:build linux

package rawudp

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

	"golang.org/x/sys/unix"
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

// fdOf is s's descriptor.
func fdOf(s *Socket) int {
	fd := -1
	_ = s.SyscallConn().Control(func(f uintptr) { fd = int(f) })
	return fd
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

// A socket: no epoll watches it but while a blocking read needs the waiter
// (a datagram must not wake the Go runtime's poller for nobody); writes
// reach the peer over IPv4 and IPv6 without allocating; raw reads never
// wait; Close ends a read blocked in the waiter, and every operation after
// it fails; no descriptor is left open.
func TestSocketLifecycle(t *testing.T) {
	before := openFDs(t)
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		network := "udp4"
		if ip.To4() == nil {
			network = "udp6"
		}
		peer, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
		if err != nil {
			if ip.To4() == nil && os.Getenv("CI") != "true" {
				t.Skipf("%s loopback: %v", network, err)
			}
			t.Fatal(err)
		}
		s, err := Listen(ip, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !s.LocalAddr().IP.Equal(ip) || s.LocalAddr().Port == 0 {
			t.Fatalf("bound to %v", s.LocalAddr())
		}
		if err := s.SetBuffers(1<<16, 1<<16); err != nil {
			t.Fatal(err)
		}
		if watchedByAnEpoll(t, fdOf(s)) {
			t.Fatalf("%s: a new socket is watched by an epoll set", network)
		}
		to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
		pkt := []byte("datagram")
		if allocs := testing.AllocsPerRun(20, func() {
			if err := s.WriteTo(pkt, to); err != nil {
				t.Fatal(err)
			}
		}); allocs > 0 {
			t.Errorf("%s: %.1f allocations a write", network, allocs)
		}
		got := make([]byte, 1500)
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err := peer.ReadFromUDPAddrPort(got); err != nil || string(got[:n]) != "datagram" {
			t.Fatalf("%s: peer read %q, %v", network, got[:n], err)
		}

		// A raw read with nothing queued does not wait.
		if err := s.SyscallConn().Read(func(uintptr) bool { return false }); !errors.Is(err, ErrWouldWait) {
			t.Fatalf("%s: a raw read asking to wait: %v, want ErrWouldWait", network, err)
		}

		// A blocking read through the waiter; the waiter watched, then not.
		self := s.LocalAddr().AddrPort()
		peer.WriteToUDPAddrPort([]byte("one"), self)
		_ = s.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, src, err := s.ReadFrom(got); err != nil || string(got[:n]) != "one" || src.Port() != to.Port() {
			t.Fatalf("%s: ReadFrom %q from %v, %v", network, got[:n], src, err)
		}
		if !watchedByAnEpoll(t, fdOf(s)) {
			t.Fatalf("%s: the waiter is not watched", network) // the check itself failing
		}
		s.DropWaiter()
		if watchedByAnEpoll(t, fdOf(s)) {
			t.Fatalf("%s: still watched after DropWaiter", network)
		}

		// Close ends a read blocked in the waiter.
		_ = s.SetReadDeadline(time.Time{})
		done := make(chan error, 1)
		go func() { _, _, err := s.ReadFrom(got); done <- err }()
		time.Sleep(20 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s: blocked read after Close: %v, want net.ErrClosed", network, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: Close did not end a blocked read", network)
		}
		if err := s.WriteTo(pkt, to); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s: write after Close: %v, want net.ErrClosed", network, err)
		}
		if err := s.SyscallConn().Control(func(uintptr) {}); err == nil {
			t.Fatalf("%s: Control after Close succeeded", network)
		}
		if _, err := s.Waiter(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s: Waiter after Close: %v", network, err)
		}
		_ = s.Close() // idempotent
		peer.Close()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

// A destination of the other family is refused, not sent somewhere else.
func TestSocketFamilies(t *testing.T) {
	s, err := Listen(net.IPv4(127, 0, 0, 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WriteTo([]byte("x"), netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Fatal("an IPv4 socket sent to an IPv6 address")
	}
	if err := s.WriteTo([]byte("x"), netip.MustParseAddrPort("[::ffff:127.0.0.1]:9")); err != nil {
		t.Fatalf("an IPv4-mapped destination: %v", err)
	}
}

// A socket closed while other goroutines read, write and poll it closes its
// descriptor only once they are out, and only once: no call on a number the
// kernel may have given another socket (run with -race).
func TestSocketCloseUnderUse(t *testing.T) {
	before := openFDs(t)
	discard := netip.MustParseAddrPort("127.0.0.1:9")
	for range 20 {
		s, err := Listen(net.IPv4(127, 0, 0, 1), 0)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // a media worker: polls and reads without waiting
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				err := s.SyscallConn().Read(func(fd uintptr) bool {
					_, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
					return true
				})
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("read: %v", err)
					}
					return
				}
			}
		}()
		go func() { // a pacer: writes
			defer wg.Done()
			for {
				if err := s.WriteTo([]byte("x"), discard); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		}()
		time.Sleep(2 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

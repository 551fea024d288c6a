//go:build linux

package sip

import (
	"errors"
	"net"
	"net/netip"
	"os"
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

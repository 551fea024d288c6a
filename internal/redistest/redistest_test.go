package redistest_test

import (
	"net"
	"testing"
	"time"

	"github.com/wagateway/wagateway/internal/redistest"
)

// TestStopRestart: the server answers, refuses connections once stopped,
// and answers again on the same address after Restart.
func TestStopRestart(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr()
	if err := redistest.Ping(addr); err != nil {
		t.Fatalf("started: %v", err)
	}
	s.Stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("stopped server still accepts connections")
	}
	s.Stop() // a second Stop does nothing
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if err := redistest.Ping(addr); err != nil {
		t.Fatalf("restarted: %v", err)
	}
}

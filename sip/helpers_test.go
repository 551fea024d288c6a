package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wagateway/wagateway/internal/testpeer"
)

// TestMain fails the package if goroutines started by this package or
// sipgo outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := waitGoroutines(5 * time.Second); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines leaked after tests:\n%s\n", strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// ourGoroutines lists the stacks of goroutines running code of this package
// or of sipgo, other than the caller's.
func ourGoroutines() []string {
	buf := make([]byte, 4<<20)
	n := runtime.Stack(buf, true)
	blocks := strings.Split(string(buf[:n]), "\n\n")
	var out []string
	for i, g := range blocks {
		if i == 0 { // the calling goroutine
			continue
		}
		if strings.Contains(g, "emiago/sipgo") || strings.Contains(g, "wagateway/sip.") {
			if strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "created by github.com") {
				continue // a test function itself (only in per-test checks)
			}
			out = append(out, g)
		}
	}
	return out
}

// waitGoroutines waits up to d for our goroutines to end and returns those left.
func waitGoroutines(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := ourGoroutines()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkLeaks registers a cleanup that fails the test if goroutines of ours
// are still running a few seconds after it (run it before starting peers,
// so that it runs after their cleanups).
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if left := waitGoroutines(5 * time.Second); len(left) > 0 {
			t.Errorf("%d goroutines leaked:\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

func testLogger(t *testing.T) *zap.Logger {
	if os.Getenv("SIP_TEST_LOG") != "" {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

// newTestUA starts a UA on 127.0.0.1 with a free port.
func newTestUA(t *testing.T, transport string) *UA {
	t.Helper()
	ua, err := NewUA(UAConfig{
		ListenAddr: "127.0.0.1:0", Transport: transport, RTPAddress: "127.0.0.1",
		RTPPortMin: 30000, RTPPortMax: 30999, Logger: testLogger(t).Named("ua"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return ua
}

// needSipp skips without sipp, except in CI where a missing peer is a failure.
func needSipp(t *testing.T) string {
	t.Helper()
	return testpeer.Require(t, "sipp", "sip-tester")
}

// freePort finds a port free for network ("udp" or "tcp") on 127.0.0.1.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sippPeer is sipp running one scenario in the foreground of its own process.
type sippPeer struct {
	port int
	dir  string
	done chan struct{}
	out  bytes.Buffer
	err  error
}

// startSipp runs sipp as a UAS with the scenario from testdata, one call,
// on 127.0.0.1. transport is "u1" (UDP) or "t1" (TCP).
func startSipp(t *testing.T, scenario, transport string, extra ...string) *sippPeer {
	t.Helper()
	network := "udp"
	if transport == "t1" {
		network = "tcp"
	}
	return startSippPort(t, freePort(t, network), scenario, transport, extra...)
}

// startSippPort is startSipp on a given port (a UAC scenario's trunk is
// configured with it before sipp sends anything); extra may end with the
// remote host:port a UAC scenario calls.
func startSippPort(t *testing.T, port int, scenario, transport string, extra ...string) *sippPeer {
	t.Helper()
	bin := needSipp(t)
	scn, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	network := "udp"
	if transport == "t1" {
		network = "tcp"
	}
	p := &sippPeer{port: port, dir: t.TempDir(), done: make(chan struct{})}
	args := []string{
		"-sf", scn, "-i", "127.0.0.1", "-p", fmt.Sprint(p.port), "-t", transport,
		"-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(p.dir, "errors.log"),
	}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = p.dir
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start sipp: %v", err)
	}
	go func() {
		defer close(p.done)
		defer cancel()
		p.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	// Wait until sipp has bound its port.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if portBound(network, p.port) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func portBound(network string, port int) bool {
	if network == "tcp" {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func (p *sippPeer) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// wait waits for sipp to end and fails the test unless it exited 0, the
// proof that the scenario saw every message it expected.
func (p *sippPeer) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("sipp still running after %s", d)
	}
	if p.err != nil {
		var ee *exec.ExitError
		code := -1
		if errors.As(p.err, &ee) {
			code = ee.ExitCode()
		}
		errLog, _ := os.ReadFile(filepath.Join(p.dir, "errors.log"))
		t.Fatalf("sipp exit code %d (%v)\nerrors.log:\n%s\noutput tail:\n%s", code, p.err, errLog, tail(p.out.String(), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

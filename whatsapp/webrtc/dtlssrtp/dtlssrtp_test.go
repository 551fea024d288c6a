package dtlssrtp

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// A certificate's own fingerprint, as written in SDP, checks its DER; any
// other certificate or a malformed or non-sha-256 fingerprint does not.
func TestFingerprint(t *testing.T) {
	a, err := NewCertificate("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCertificate("b")
	if err != nil {
		t.Fatal(err)
	}
	fp, err := ParseFingerprint(a.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckFingerprint(a.TLS.Certificate, fp); err != nil {
		t.Errorf("own certificate: %v", err)
	}
	if err := CheckFingerprint(b.TLS.Certificate, fp); err == nil {
		t.Error("another certificate passed")
	}
	if err := CheckFingerprint(nil, fp); err == nil {
		t.Error("no certificate passed")
	}
	for _, bad := range []string{"", "sha-1 AB:CD", "sha-256 zz", "sha-256 AB:CD", strings.Replace(a.Fingerprint, "sha-256", "sha-512", 1)} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("fingerprint %q parsed", bad)
		}
	}
	if _, err := ParseFingerprint(strings.ToLower(" " + a.Fingerprint + " ")); err != nil {
		t.Errorf("lower case with spaces: %v", err)
	}
}

// The pipe hands delivered records to ReadFrom (copied), honours a read
// deadline and a moved one, sends through its function, and fails after
// Close.
func TestPipe(t *testing.T) {
	remote := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	var sent [][]byte
	p := NewPipe(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8}, remote, func(b []byte) error {
		sent = append(sent, append([]byte(nil), b...))
		return nil
	})
	rec := []byte{22, 254, 253, 1}
	p.Deliver(rec)
	rec[3] = 9 // the pipe keeps its own copy
	buf := make([]byte, 16)
	n, from, err := p.ReadFrom(buf)
	if err != nil || n != 4 || buf[3] != 1 || from != remote {
		t.Fatalf("read %x from %v: %v", buf[:n], from, err)
	}
	_ = p.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	if _, _, err := p.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline took %v", d)
	}
	// A deadline moved while a read waits takes effect.
	_ = p.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error, 1)
	go func() { _, _, err := p.ReadFrom(buf); done <- err }()
	time.Sleep(10 * time.Millisecond)
	_ = p.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after the deadline moved: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a moved deadline did not end the read")
	}
	if _, err := p.WriteTo([]byte{1, 2}, remote); err != nil || len(sent) != 1 {
		t.Fatalf("write: %v, %d sent", err, len(sent))
	}
	_ = p.Close()
	if _, _, err := p.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := p.WriteTo([]byte{1}, remote); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

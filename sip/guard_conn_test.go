package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// startGuardedUA starts a UA on 127.0.0.1 over tr with the given trunks and
// request rate (0: the default), connection bounds perSource and total (0:
// the defaults).
func startGuardedUA(t *testing.T, tr string, trunks []*Trunk, rate float64, burst, perSource, total int) (*UA, *x509.CertPool) {
	t.Helper()
	cfg := UAConfig{ListenAddr: "127.0.0.1:0", Transport: tr, RTPAddress: "127.0.0.1", RTPPortMin: 30000, RTPPortMax: 30999,
		Trunks: trunks, RequestRate: rate, RequestBurst: burst, Logger: testLogger(t).Named("ua")}
	var pool *x509.CertPool
	if tr == "tls" {
		cfg.TLSCertFile, cfg.TLSKeyFile, pool = testCert(t)
	}
	ua, err := NewUA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if perSource > 0 {
		ua.conns = newConnGuard(perSource, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return ua, pool
}

// dialFrom opens a TCP connection from ip (any port) to addr.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer reports whether c is closed by the other end within d (a
// read ends with EOF or a reset, nothing read).
func closedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	return n == 0 && err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// stillOpen reports whether a read on c waits d for nothing (timeout).
func stillOpen(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// streamOptions is an out-of-dialog OPTIONS as a trunk sends it over a
// connection (transport TCP or TLS).
func streamOptions(c net.Conn, transport, to string) []byte {
	la := c.LocalAddr().String()
	return []byte("OPTIONS sip:gw@" + to + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + la + ";branch=z9hG4bK" + randHex(8) + "\r\n" +
		"From: <sip:pbx@" + la + ">;tag=" + randHex(4) + "\r\n" +
		"To: <sip:gw@" + to + ">\r\n" +
		"Call-ID: " + randHex(8) + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

// count200 reads c until nothing came for quiet (at most max in all) and
// counts the 200 responses.
func count200(c net.Conn, quiet, max time.Duration) int {
	var b strings.Builder
	buf := make([]byte, 65536)
	end := time.Now().Add(max)
	for time.Now().Before(end) {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return strings.Count(b.String(), "SIP/2.0 200 ")
}

// TestTCPStrangerClosedAtAccept: over TCP, with the only trunk at
// 127.0.0.2, a connection from 127.0.0.1 is closed at once and counted,
// while the trunk's connection stays open and its OPTIONS is answered.
func TestTCPStrangerClosedAtAccept(t *testing.T) {
	checkLeaks(t)
	ua, _ := startGuardedUA(t, "tcp", []*Trunk{{Name: "pbx", Address: "127.0.0.2:5060", Transport: "tcp"}}, 0, 0, 0, 0)
	stranger := dialFrom(t, "127.0.0.1", ua.Addr())
	if !closedByPeer(stranger, 2*time.Second) {
		t.Fatal("the stranger's connection was not closed")
	}
	trunk := dialFrom(t, "127.0.0.2", ua.Addr())
	if !stillOpen(trunk, 300*time.Millisecond) {
		t.Fatal("the trunk's connection was closed")
	}
	if _, err := trunk.Write(streamOptions(trunk, "TCP", ua.Addr())); err != nil {
		t.Fatal(err)
	}
	if n := count200(trunk, 500*time.Millisecond, 3*time.Second); n != 1 {
		t.Errorf("the trunk's OPTIONS got %d 200s, want 1", n)
	}
	st := ua.Stats()
	if st.ConnectionsNotFromTrunk != 1 || st.ConnectionsOverLimit != 0 || st.RequestsNotFromTrunk != 0 {
		t.Errorf("stats %+v, want one connection not from a trunk", st)
	}
}

// TestTLSStrangerClosedBeforeHandshake: over TLS, the stranger's handshake
// fails (the connection is closed before the server's hello), the trunk's
// succeeds and its OPTIONS is answered.
func TestTLSStrangerClosedBeforeHandshake(t *testing.T) {
	checkLeaks(t)
	ua, pool := startGuardedUA(t, "tls", []*Trunk{{Name: "pbx", Address: "127.0.0.2:5061", Transport: "tls"}}, 0, 0, 0, 0)
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1"}
	raw := dialFrom(t, "127.0.0.1", ua.Addr())
	stranger := tls.Client(raw, conf)
	raw.SetDeadline(time.Now().Add(2 * time.Second))
	err := stranger.Handshake()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stranger's handshake: %v, want the connection closed", err)
	}
	trunk := tls.Client(dialFrom(t, "127.0.0.2", ua.Addr()), conf)
	trunk.SetDeadline(time.Now().Add(2 * time.Second))
	if err := trunk.Handshake(); err != nil {
		t.Fatalf("the trunk's handshake: %v", err)
	}
	if _, err := trunk.Write(streamOptions(trunk, "TLS", ua.Addr())); err != nil {
		t.Fatal(err)
	}
	if n := count200(trunk, 500*time.Millisecond, 3*time.Second); n != 1 {
		t.Errorf("the trunk's OPTIONS got %d 200s, want 1", n)
	}
	if st := ua.Stats(); st.ConnectionsNotFromTrunk != 1 {
		t.Errorf("stats %+v, want one connection not from a trunk", st)
	}
}

// TestTCPConnectionBounds: with at most 3 connections per source and 5 in
// all, a trunk's 4th is closed at once; closing one makes room; a second
// trunk address gets the 2 left in all, its 3rd is closed.
func TestTCPConnectionBounds(t *testing.T) {
	checkLeaks(t)
	trunks := []*Trunk{{Name: "pbx", Address: "127.0.0.1:5060", Transport: "tcp"}, {Name: "pbx2", Address: "127.0.0.2:5060", Transport: "tcp"}}
	ua, _ := startGuardedUA(t, "tcp", trunks, 0, 0, 3, 5)
	var first []net.Conn
	for i := 0; i < 3; i++ {
		first = append(first, dialFrom(t, "127.0.0.1", ua.Addr()))
	}
	waitFor(t, 2*time.Second, func() bool { return ua.conns.openConns() == 3 })
	if c := dialFrom(t, "127.0.0.1", ua.Addr()); !closedByPeer(c, 2*time.Second) {
		t.Fatal("a 4th connection from one source was not closed")
	}
	for i, c := range first {
		if !stillOpen(c, 100*time.Millisecond) {
			t.Fatalf("connection %d within the bound was closed", i)
		}
	}
	first[0].Close()
	waitFor(t, 2*time.Second, func() bool { return ua.conns.openConns() == 2 })
	again := dialFrom(t, "127.0.0.1", ua.Addr())
	if !stillOpen(again, 200*time.Millisecond) {
		t.Fatal("no room made by closing a connection")
	}
	for i := 0; i < 2; i++ {
		dialFrom(t, "127.0.0.2", ua.Addr())
	}
	waitFor(t, 2*time.Second, func() bool { return ua.conns.openConns() == 5 })
	if c := dialFrom(t, "127.0.0.2", ua.Addr()); !closedByPeer(c, 2*time.Second) {
		t.Fatal("a connection over the total bound was not closed")
	}
	if st := ua.Stats(); st.ConnectionsOverLimit != 2 || st.ConnectionsNotFromTrunk != 0 {
		t.Errorf("stats %+v, want 2 connections over the bounds", st)
	}
}

// TestTCPRequestRateLimit: a trunk flooding OPTIONS over one TCP connection
// gets answers for its burst and then for its rate only; the rest are
// dropped and counted, and the connection goes on serving (the stream is
// not cut mid-message).
func TestTCPRequestRateLimit(t *testing.T) {
	checkLeaks(t)
	ua, _ := startGuardedUA(t, "tcp", []*Trunk{{Name: "pbx", Address: "127.0.0.1:5060", Transport: "tcp"}}, 5, 10, 0, 0)
	c := dialFrom(t, "127.0.0.1", ua.Addr())
	var flood []byte
	for i := 0; i < 100; i++ {
		flood = append(flood, streamOptions(c, "TCP", ua.Addr())...)
	}
	if _, err := c.Write(flood); err != nil {
		t.Fatal(err)
	}
	n := count200(c, time.Second, 5*time.Second)
	if n < 10 || n > 20 {
		t.Errorf("%d answers to 100 OPTIONS at once, want the burst of 10 and a few more", n)
	}
	if d := ua.Stats().RequestsRateLimited; d < 80 {
		t.Errorf("%d requests counted as rate-limited, want >= 80", d)
	}
	time.Sleep(400 * time.Millisecond) // a token or two
	if _, err := c.Write(streamOptions(c, "TCP", ua.Addr())); err != nil {
		t.Fatal(err)
	}
	if n := count200(c, 500*time.Millisecond, 3*time.Second); n != 1 {
		t.Errorf("an OPTIONS after the flood got %d 200s, want 1", n)
	}
}

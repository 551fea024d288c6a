package sip

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func startEcho(t *testing.T, cfg EchoConfig) *EchoServer {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.RTPPortMin == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 31000, 31999
	}
	cfg.Logger = testLogger(t).Named("echo")
	e, err := NewEchoServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func echoTrunk(e *EchoServer, codecs ...string) *Trunk {
	return &Trunk{Name: "echo", Address: e.Addr(), Codecs: codecs}
}

// roundTrip sends n RTP packets through the call and checks each comes back
// with the same payload, the echo's own SSRC and continuous sequence numbers.
func roundTrip(t *testing.T, c *Call, n int) {
	t.Helper()
	out := make([]byte, 1500)
	in := make([]byte, 1500)
	var echoSSRC uint32
	var lastSeq uint16
	for i := 0; i < n; i++ {
		p := rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: c.Codec().PayloadType, SequenceNumber: uint16(1000 + i), Timestamp: uint32(160 * i), SSRC: 0x11223344},
			Payload: bytes.Repeat([]byte{byte(i)}, 160),
		}
		m, err := p.MarshalTo(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WritePacket(out[:m]); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got := readWithin(t, c, in, 2*time.Second)
		var back rtp.Packet
		if err := back.Unmarshal(got); err != nil {
			t.Fatalf("echoed packet %d: %v", i, err)
		}
		if !bytes.Equal(back.Payload, p.Payload) {
			t.Fatalf("packet %d: payload changed", i)
		}
		if back.PayloadType != p.PayloadType {
			t.Fatalf("packet %d: PT %d, want %d", i, back.PayloadType, p.PayloadType)
		}
		if i == 0 {
			echoSSRC = back.SSRC
			if echoSSRC == p.SSRC {
				t.Errorf("echo kept the sender's SSRC")
			}
		} else {
			if back.SSRC != echoSSRC {
				t.Fatalf("packet %d: SSRC changed", i)
			}
			if back.SequenceNumber != lastSeq+1 {
				t.Fatalf("packet %d: seq %d after %d", i, back.SequenceNumber, lastSeq)
			}
		}
		lastSeq = back.SequenceNumber
	}
}

// readWithin reads one packet, failing the test after d.
func readWithin(t *testing.T, c *Call, b []byte, d time.Duration) []byte {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		n, err := c.ReadPacket(b)
		ch <- result{n, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		return b[:r.n]
	case <-time.After(d):
		c.Close() // unblocks the reader
		<-ch
		t.Fatalf("no RTP packet within %s", d)
	}
	return nil
}

func TestEchoServerCall(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{AnswerDelay: 50 * time.Millisecond})
	ua := newTestUA(t, "udp")

	var progress []int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{
		Trunk: echoTrunk(echo, "PCMA", "PCMU"), To: "echo", FromUser: "+15551234567",
		DisplayName: `Ana "the tester"`, LogRef: "t1",
		OnProgress: func(code int, _ string) { progress = append(progress, code) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Codec().Name != "PCMA" || c.Codec().PayloadType != 8 {
		t.Errorf("codec %+v, want PCMA/8 (first of our offer the echo supports)", c.Codec())
	}
	if c.DTMFPayloadType() != DefaultDTMFPayloadType {
		t.Errorf("dtmf PT %d, want %d", c.DTMFPayloadType(), DefaultDTMFPayloadType)
	}
	if !containsInt(progress, 180) {
		t.Errorf("progress %v lacks 180", progress)
	}
	if echo.ActiveCalls() != 1 || ua.ActiveCalls() != 1 {
		t.Errorf("active calls echo=%d ua=%d, want 1 and 1", echo.ActiveCalls(), ua.ActiveCalls())
	}
	roundTrip(t, c, 20)

	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Hangup")
	}
	if c.EndReason() != "local_bye" {
		t.Errorf("end reason %q", c.EndReason())
	}
	waitFor(t, time.Second, func() bool { return echo.ActiveCalls() == 0 })
	if _, err := c.ReadPacket(make([]byte, 100)); !errors.Is(err, netErrClosed) {
		t.Errorf("ReadPacket after Hangup: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The request's codecs replace the trunk's offer, in their order (the
// gateway puts the G.711 codec WhatsApp offered first): the echo, which
// takes the offer's first codec it knows, answers PCMA where the trunk's
// order would have given PCMU.
func TestInviteRequestCodecs(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{})
	ua := newTestUA(t, "udp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: echoTrunk(echo, "PCMU", "PCMA", "opus"), To: "echo", Codecs: []string{"PCMA", "PCMU", "opus"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec() != (Codec{Name: "PCMA", PayloadType: 8, ClockRate: 8000}) {
		t.Errorf("codec %+v, want PCMA (the request's first)", c.Codec())
	}
	roundTrip(t, c, 3)
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEchoServerHangsUp(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{HangupAfter: 300 * time.Millisecond})
	ua := newTestUA(t, "udp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: echoTrunk(echo, "opus", "PCMU"), To: "sip:echo@" + echo.Addr(), FromUser: "bsuid.ABC"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec() != (Codec{Name: "opus", PayloadType: 111, ClockRate: 48000}) {
		t.Errorf("codec %+v", c.Codec())
	}
	select {
	case <-c.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("no BYE from echo")
	}
	if c.EndReason() != "remote_bye" {
		t.Errorf("end reason %q", c.EndReason())
	}
	if ua.ActiveCalls() != 0 || echo.ActiveCalls() != 0 {
		t.Errorf("active calls ua=%d echo=%d", ua.ActiveCalls(), echo.ActiveCalls())
	}
	// Hangup after a remote BYE sends nothing and succeeds.
	if err := c.Hangup(ctx); err != nil {
		t.Errorf("hangup after remote BYE: %v", err)
	}
}

func TestEchoServerCancel(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{AnswerDelay: 10 * time.Second})
	ua := newTestUA(t, "udp")
	ctx, cancel := context.WithCancel(context.Background())
	rang := make(chan struct{})
	var once bool
	defer cancel()
	go func() {
		select {
		case <-rang:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err := ua.Invite(ctx, InviteRequest{Trunk: echoTrunk(echo), To: "echo", OnProgress: func(code int, _ string) {
		if code == 180 && !once {
			once = true
			close(rang)
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	waitFor(t, 3*time.Second, func() bool { return echo.ActiveCalls() == 0 })
}

// TestEchoNoAllocs checks the echo loop and the call's RTP path do not
// allocate per packet.
func TestRTPPathNoAllocs(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{})
	ua := newTestUA(t, "udp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: echoTrunk(echo), To: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Hangup(ctx)
	pkt := make([]byte, 172)
	pkt[0] = 0x80
	in := make([]byte, 1500)
	roundTrip(t, c, 1) // latch first
	allocs := testing.AllocsPerRun(200, func() {
		binary.BigEndian.PutUint16(pkt[2:], binary.BigEndian.Uint16(pkt[2:])+1)
		if err := c.WritePacket(pkt); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadPacket(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per packet round trip, want 0", allocs)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var netErrClosed = net.ErrClosed

// TestEchoOverTLSAndTCP: the UA and the echo talk SIP over TCP and over TLS
// (a certificate made for 127.0.0.1, trusted by the UA), then RTP.
func TestEchoOverTLSAndTCP(t *testing.T) {
	certFile, keyFile, pool := testCert(t)
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			checkLeaks(t)
			echo := startEcho(t, EchoConfig{Transport: tr, TLSCertFile: certFile, TLSKeyFile: keyFile})
			ua, err := NewUA(UAConfig{
				ListenAddr: "127.0.0.1:0", Transport: tr, TLSCertFile: certFile, TLSKeyFile: keyFile,
				RTPAddress: "127.0.0.1", RTPPortMin: 30000, RTPPortMax: 30999, Logger: testLogger(t).Named("ua"),
				tlsClient: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ua.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer ua.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := ua.Invite(ctx, InviteRequest{Trunk: &Trunk{Name: "echo", Address: echo.Addr(), Transport: tr}, To: "echo"})
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, 5)
			if err := c.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 2*time.Second, func() bool { return echo.ActiveCalls() == 0 })
		})
	}
}

// testCert writes a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestEchoConcurrentCalls runs calls in parallel through one UA and one echo.
func TestEchoConcurrentCalls(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{AnswerDelay: 20 * time.Millisecond})
	ua := newTestUA(t, "udp")
	const calls = 25
	errs := make(chan error, calls)
	var wg sync.WaitGroup
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := ua.Invite(ctx, InviteRequest{Trunk: echoTrunk(echo), To: "echo", FromUser: fmt.Sprint(1000 + i)})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			pkt := make([]byte, 172)
			buf := make([]byte, 1500)
			for j := 0; j < 10; j++ {
				pkt[0], pkt[3] = 0x80, byte(j)
				pkt[12] = byte(i)
				if err := c.WritePacket(pkt); err != nil {
					errs <- err
					return
				}
				n, err := c.ReadPacket(buf)
				if err != nil || n != len(pkt) || buf[12] != byte(i) {
					errs <- fmt.Errorf("call %d packet %d: n=%d err=%v", i, j, n, err)
					return
				}
			}
			if err := c.Hangup(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, 2*time.Second, func() bool { return echo.ActiveCalls() == 0 && ua.ActiveCalls() == 0 })
}

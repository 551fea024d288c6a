package sip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
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

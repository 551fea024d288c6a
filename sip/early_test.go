package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// earlyPeer is the PBX's media end in the early-media tests: the test sends
// RTP from it, marked by the payload's first byte, to the gateway's one
// RTP port.
type earlyPeer struct {
	conn *net.UDPConn
	to   *net.UDPAddr
	seq  uint16
}

func newEarlyPeer(t *testing.T, gwRTPPort int) *earlyPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &earlyPeer{conn: conn, to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: gwRTPPort}}
}

func (p *earlyPeer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// send sends n PCMU packets marked mark, 20 ms apart.
func (p *earlyPeer) send(t *testing.T, mark byte, n int) {
	pkt := make([]byte, 172)
	for i := 0; i < n; i++ {
		p.seq++
		pkt[0], pkt[1], pkt[2], pkt[3] = 0x80, 0, byte(p.seq>>8), byte(p.seq)
		pkt[8], pkt[9], pkt[10], pkt[11] = 0, 0, 0xbe, 0xef
		pkt[12] = mark
		if _, err := p.conn.WriteToUDP(pkt, p.to); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// uaWithOneRTPPort is a UA whose calls all use one known RTP port.
func uaWithOneRTPPort(t *testing.T) (*UA, int) {
	t.Helper()
	port := freePort(t, "udp") &^ 1
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1",
		RTPPortMin: port, RTPPortMax: port + 1, Logger: testLogger(t).Named("ua")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return ua, port
}

// readMarks reads packets for d and returns their marks in order.
func readMarks(t *testing.T, r interface{ ReadPacket([]byte) (int, error) }, conn *RTPConn, d time.Duration) string {
	t.Helper()
	_ = conn.sock.SetReadDeadline(time.Now().Add(d))
	defer conn.sock.SetReadDeadline(time.Time{})
	var marks strings.Builder
	buf := make([]byte, 1500)
	for {
		n, err := r.ReadPacket(buf)
		if err != nil {
			return marks.String()
		}
		if n > 12 {
			marks.WriteByte(buf[12])
		}
	}
}

// A PBX that plays early media without our asking for it: what it sent
// before its 200 OK is dropped at the socket, not queued and read as the
// answered call's first audio; what it sends after is read from its first
// packet.
func TestInviteDropsMediaBeforeTheAnswer(t *testing.T) {
	checkLeaks(t)
	ua, rtpPort := uaWithOneRTPPort(t)
	pbx := newEarlyPeer(t, rtpPort)
	p := startSipp(t, "uas_early_media.xml", "u1", "-key", "pbx_media", fmt.Sprint(pbx.port()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents", OnProgress: func(code int, _ string) {
		if code == 183 {
			wg.Add(1)
			go func() { defer wg.Done(); pbx.send(t, 'A', 15) }() // 300 ms of the early greeting, within the 600 ms before the 200 OK
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wg.Wait()
	pbx.send(t, 'B', 5) // the greeting after the answer
	if got := readMarks(t, c, c.rtp, 300*time.Millisecond); got != "BBBBB" {
		t.Errorf("the answered call read %q, want BBBBB: no early packet, every later one", got)
	}
	if n := c.rtp.discarded.Load(); n < 10 {
		t.Errorf("%d early packets dropped, want about 15", n)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
}

// With OnEarlyMedia the 183's media is the caller's at once, both ways,
// and goes on as the answered call's after the 200 OK.
func TestInviteEarlyMedia(t *testing.T) {
	checkLeaks(t)
	ua, rtpPort := uaWithOneRTPPort(t)
	pbx := newEarlyPeer(t, rtpPort)
	p := startSipp(t, "uas_early_media.xml", "u1", "-key", "pbx_media", fmt.Sprint(pbx.port()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		early      *EarlyMedia
		earlyMarks string
		heard      = make([]byte, 1500)
		heardN     int
	)
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents", OnEarlyMedia: func(m *EarlyMedia) {
		early = m
		go pbx.send(t, 'A', 5)
		earlyMarks = readMarks(t, m, m.rtp, 300*time.Millisecond)
		out := make([]byte, 172)
		out[0], out[12] = 0x80, 'C'
		if err := m.WritePacket(out); err != nil {
			t.Error(err)
		}
		_ = pbx.conn.SetReadDeadline(time.Now().Add(time.Second))
		heardN, _ = pbx.conn.Read(heard)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if early == nil {
		t.Fatal("OnEarlyMedia not called for a 183 with SDP")
	}
	if earlyMarks != "AAAAA" {
		t.Errorf("early media read %q before the answer, want AAAAA", earlyMarks)
	}
	if heardN != 172 || heard[12] != 'C' {
		t.Errorf("the PBX got %d bytes of our early audio, want our packet", heardN)
	}
	if early.Codec() != (Codec{"PCMU", 0, 8000}) || early.DTMFPayloadType() != 101 {
		t.Errorf("early codec %+v, dtmf %d", early.Codec(), early.DTMFPayloadType())
	}
	go pbx.send(t, 'B', 3)
	if got := readMarks(t, early, c.rtp, 200*time.Millisecond); got != "BBB" {
		t.Errorf("after the answer the early media read %q, want BBB", got)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
}

// An INVITE cancelled with a CancelCause sends its Reason in the CANCEL
// (RFC 3326); sipp checks it.
func TestInviteCancelReason(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_cancel_reason.xml", "u1", "-d", "0")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	why := Reason{Protocol: "Q.850", Cause: 19, Text: "no answer"}
	_, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents", OnProgress: func(code int, _ string) {
		if code == 180 {
			cancel(&CancelCause{Reason: why})
		}
	}})
	var cc *CancelCause
	if !errors.As(err, &cc) || cc.Reason != why {
		t.Fatalf("err %v, want the cancel cause", err)
	}
	p.wait(t, 10*time.Second)
}

func TestPeerReason(t *testing.T) {
	for _, tc := range []struct {
		headers []string
		want    Reason
	}{
		{[]string{`Q.850;cause=17;text="User busy"`}, Reason{"Q.850", 17, "User busy"}},
		{[]string{`SIP;cause=600;text="Busy Everywhere"`, `Q.850;cause=17`}, Reason{"Q.850", 17, ""}},
		{[]string{`SIP ; cause = 487`}, Reason{"SIP", 487, ""}},
		{[]string{"q.850;cause=16;text=\"a\x01b" + strings.Repeat("x", 100) + `"`}, Reason{"Q.850", 16, "ab" + strings.Repeat("x", 62)}},
		{[]string{`Q.850;cause=abc`, `X-Proto;cause=1`, `Q.850`}, Reason{}},
		{[]string{`Q.850;cause=0`, `Q.850;cause=700`}, Reason{}},
	} {
		res := sip.NewResponse(486, "Busy Here")
		for _, h := range tc.headers {
			res.AppendHeader(sip.NewHeader("Reason", h))
		}
		if got := peerReason(res); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.headers, got, tc.want)
		}
	}
}

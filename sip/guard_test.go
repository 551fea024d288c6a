package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStrangerRTPNeitherHeardNorAnswered: sipp answers as the PBX and
// echoes RTP; a stranger sends RTP to the call's port before the PBX's
// first packet and after it. ReadPacket returns only sipp's echoes, the
// stranger receives nothing, and the drops are counted.
func TestStrangerRTPNeitherHeardNorAnswered(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	mp := freePort(t, "udp") &^ 1
	p := startSipp(t, "uas_answer_echo.xml", "u1", "-rtp_echo", "-mi", "127.0.0.1", "-mp", fmt.Sprint(mp))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{
		Trunk: sippTrunk(p, "udp"), To: "sip:agents", FromUser: "+15551234567", DisplayName: `Ana "the tester"`,
		Headers: []Header{{"x-wa-meta-wacid", "wacid.ABC123"}}, // what the scenario checks
	})
	if err != nil {
		t.Fatal(err)
	}
	stranger := udpPeer(t)
	// Before the PBX's first packet (sipp only echoes what we send).
	for i := 0; i < 5; i++ {
		if _, err := stranger.WriteToUDP(rtpPkt(0, 0xBAD, 0xEE), c.LocalRTPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // queued on the socket ahead of the echoes
	echoPayloads(t, c, 5)             // each read must be sipp's echo of what we wrote
	if n := c.StrangerPackets(); n != 5 {
		t.Fatalf("stranger packets %d after the first echoes, want 5", n)
	}
	// After it.
	for i := 0; i < 5; i++ {
		stranger.WriteToUDP(rtpPkt(0, 0xBAD, 0xEE), c.LocalRTPAddr())
	}
	time.Sleep(50 * time.Millisecond)
	echoPayloads(t, c, 5)
	if n := c.StrangerPackets(); n != 10 {
		t.Errorf("stranger packets %d, want 10", n)
	}
	expectNothing(t, stranger, 300*time.Millisecond, "the stranger")
	if got := c.RemoteRTPAddr().String(); got != fmt.Sprintf("127.0.0.1:%d", mp) {
		t.Errorf("remote RTP %s, want sipp's media port %d", got, mp)
	}
	if n := ua.Stats().StrangerRTPPackets; n < 10 {
		t.Errorf("UA stranger RTP total %d, want >= 10", n)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	p.wait(t, 10*time.Second)
}

// TestSpoofedByeFromStranger: sipp answers as the PBX; a second sipp, from
// another port, sends a BYE with the dialog's Call-ID and tags. It gets no
// response and the call stays up; the real PBX's BYE then ends it. First
// the trunk filter stops it; then, with the stranger's address allowed for
// another trunk (a cluster node of it), the dialog's peer check does.
func TestSpoofedByeFromStranger(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed bool
	}{{"not a trunk", false}, {"another trunk", true}} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			ua := newTestUA(t, "udp")
			pbx := startSipp(t, "uas_bye_later.xml", "u1", "-d", "3000")
			trunk := sippTrunk(pbx, "udp")
			if err := ua.SetTrunks(context.Background(), []*Trunk{trunk}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := ua.Invite(ctx, InviteRequest{Trunk: trunk, To: "agents"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.allowed {
				other := &Trunk{Name: "other", Address: "127.0.0.1:1", AllowFrom: []string{"127.0.0.0/8"}}
				if err := ua.SetTrunks(context.Background(), []*Trunk{trunk, other}); err != nil {
					t.Fatal(err)
				}
			}
			attacker := startSipp(t, "uac_spoof_bye.xml", "u1", "-key", "dlg_callid", c.CallID(),
				"-key", "dlg_pbx_tag", c.d.remoteTag(), "-key", "dlg_gw_tag", c.d.localTag(), "-trace_msg", ua.Addr())
			attacker.wait(t, 10*time.Second)
			if got := sippReceived(t, attacker); got != 0 {
				t.Errorf("the attacker received %d messages", got)
			}
			select {
			case <-c.Done():
				t.Fatalf("the spoofed BYE ended the call (%s)", c.EndReason())
			default:
			}
			st := ua.Stats()
			if tc.allowed && st.RequestsNotFromDialogPeer < 1 || !tc.allowed && st.RequestsNotFromTrunk < 1 {
				t.Errorf("drops %+v", st)
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the PBX's own BYE did not end the call")
			}
			if c.EndReason() != "remote_bye" {
				t.Errorf("end reason %q", c.EndReason())
			}
			pbx.wait(t, 10*time.Second)
		})
	}
}

// sippReceived counts the messages a sipp run with -trace_msg received.
func sippReceived(t *testing.T, p *sippPeer) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(p.dir, "*_messages.log"))
	if len(files) == 0 {
		t.Fatal("sipp wrote no message trace")
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "message received")
	}
	return n
}

// countDatagrams counts what p receives within d.
func countDatagrams(p *net.UDPConn, d time.Duration) int {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	n := 0
	for {
		p.SetReadDeadline(deadline)
		if _, _, err := p.ReadFromUDP(buf); err != nil {
			return n
		}
		n++
	}
}

// rawRequest is an out-of-dialog request as a stranger would send it.
func rawRequest(method string, from *net.UDPConn, to string) []byte {
	la := from.LocalAddr().String()
	return []byte(method + " sip:gw@" + to + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + la + ";branch=z9hG4bK" + randHex(8) + "\r\n" +
		"From: <sip:stranger@" + la + ">;tag=" + randHex(4) + "\r\n" +
		"To: <sip:gw@" + to + ">\r\n" +
		"Call-ID: " + randHex(8) + "\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:stranger@" + la + ">\r\n" +
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

// TestUnsolicitedRequests: with trunks set, a stranger's INVITE and
// OPTIONS get no datagram back over 3 s, while the trunk's OPTIONS is
// answered; with no trunks set (no filter), an INVITE gets exactly one 403,
// not retransmitted.
func TestUnsolicitedRequests(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	trunk, stranger := udpPeer(t), udpPeer(t)
	if err := ua.SetTrunks(context.Background(), []*Trunk{{Name: "pbx", Address: trunk.LocalAddr().String()}}); err != nil {
		t.Fatal(err)
	}
	dst, err := net.ResolveUDPAddr("udp4", ua.Addr())
	if err != nil {
		t.Fatal(err)
	}
	stranger.WriteToUDP(rawRequest("INVITE", stranger, ua.Addr()), dst)
	stranger.WriteToUDP(rawRequest("OPTIONS", stranger, ua.Addr()), dst)
	trunk.WriteToUDP(rawRequest("OPTIONS", trunk, ua.Addr()), dst)
	if n := countDatagrams(trunk, 500*time.Millisecond); n != 1 {
		t.Errorf("the trunk's OPTIONS got %d responses, want 1", n)
	}
	if n := countDatagrams(stranger, 3*time.Second); n != 0 {
		t.Errorf("the stranger got %d datagrams back", n)
	}
	if n := ua.Stats().RequestsNotFromTrunk; n != 2 {
		t.Errorf("requests dropped as not from a trunk: %d, want 2", n)
	}

	if err := ua.SetTrunks(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	stranger.WriteToUDP(rawRequest("INVITE", stranger, ua.Addr()), dst)
	if n := countDatagrams(stranger, 3*time.Second); n != 1 {
		t.Errorf("an INVITE with no filter got %d datagrams back, want one 403", n)
	}
}

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(10, 20)
	now := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	for i := 0; i < 20; i++ {
		if !l.allow(a, now) {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if l.allow(a, now) {
		t.Fatal("21st request at once allowed")
	}
	if !l.allow(netip.MustParseAddr("192.0.2.2"), now) {
		t.Fatal("another source limited by the first")
	}
	if !l.allow(a, now.Add(100*time.Millisecond)) || l.allow(a, now.Add(100*time.Millisecond)) {
		t.Fatal("not one token per 100 ms at 10/s")
	}
	// The map stays bounded: idle sources are forgotten, and while it is
	// full of busy ones a new source is refused.
	for i := 0; i < 2*maxRateSources; i++ {
		// Each new source an hour after the last: the idle ones make room.
		if !l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now.Add(time.Duration(i)*time.Hour)) {
			t.Fatalf("source %d refused although the others were idle", i)
		}
	}
	if len(l.buckets) > maxRateSources {
		t.Fatalf("%d sources tracked", len(l.buckets))
	}
	busy := newRateLimiter(10, 20)
	for i := 0; i < maxRateSources; i++ {
		busy.allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now)
	}
	if busy.allow(a, now) || len(busy.buckets) > maxRateSources {
		t.Fatal("a new source admitted into a full map of busy ones")
	}
}

// TestRequestRateLimit: a trunk flooding OPTIONS gets answers for its burst
// and then for its rate only; the rest are dropped and counted.
func TestRequestRateLimit(t *testing.T) {
	checkLeaks(t)
	trunk := udpPeer(t)
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1", RequestRate: 5, RequestBurst: 10,
		Trunks: []*Trunk{{Name: "pbx", Address: trunk.LocalAddr().String()}}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ua.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	dst, _ := net.ResolveUDPAddr("udp4", ua.Addr())
	for i := 0; i < 100; i++ {
		trunk.WriteToUDP(rawRequest("OPTIONS", trunk, ua.Addr()), dst)
	}
	n := countDatagrams(trunk, time.Second)
	if n < 10 || n > 20 {
		t.Errorf("%d answers to 100 OPTIONS at once, want the burst of 10 and a few more", n)
	}
	if d := ua.Stats().RequestsRateLimited; d < 80 {
		t.Errorf("%d requests counted as rate-limited, want >= 80", d)
	}
}

// TestVanishedPBXEndsCall: sipp answers, answers two in-dialog OPTIONS,
// then answers nothing. Two unanswered probes end the call as
// pbx_unreachable within a bound, and a BYE with a Reason header goes out
// (sipp checks it).
func TestVanishedPBXEndsCall(t *testing.T) {
	checkLeaks(t)
	const interval = 300 * time.Millisecond
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1", KeepaliveInterval: interval, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ua.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	p := startSipp(t, "uas_keepalive_stop.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the call outlived its PBX")
	}
	// Two answered probes, two unanswered, each at most one interval.
	if d := time.Since(start); d < 4*interval || d > 4*interval+2*time.Second {
		t.Errorf("ended after %s, want about %s", d, 4*interval)
	}
	if c.EndReason() != "pbx_unreachable" {
		t.Errorf("end reason %q", c.EndReason())
	}
	p.wait(t, 10*time.Second)
}

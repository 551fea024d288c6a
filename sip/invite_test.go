package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func sippTrunk(p *sippPeer, transport string) *Trunk {
	return &Trunk{Name: "sipp", Address: p.addr(), Transport: transport, FromDomain: "pbx.example"}
}

// TestInviteAnswerEcho: sipp answers with PCMU and echoes our RTP; we send
// packets through the call and read them back, then hang up.
func TestInviteAnswerEcho(t *testing.T) {
	for _, tc := range []struct{ name, ua, sipp string }{{"udp", "udp", "u1"}, {"tcp", "tcp", "t1"}} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			ua := newTestUA(t, tc.ua)
			mp := freePort(t, "udp") &^ 1
			p := startSipp(t, "uas_answer_echo.xml", tc.sipp, "-rtp_echo", "-mi", "127.0.0.1", "-mp", fmt.Sprint(mp))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var codes []int
			c, err := ua.Invite(ctx, InviteRequest{
				Trunk: sippTrunk(p, tc.ua), To: "sip:agents", FromUser: "+15551234567",
				DisplayName: "Ana \"the tester\"\r\n", LogRef: "wacid.ABC123",
				Headers:    []Header{{"x-wa-meta-wacid", "wacid.ABC123"}},
				OnProgress: func(code int, _ string) { codes = append(codes, code) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.Codec() != (Codec{"PCMU", 0, 8000}) {
				t.Errorf("codec %+v, want PCMU (CN 13 in the answer must be ignored)", c.Codec())
			}
			if c.DTMFPayloadType() != 101 {
				t.Errorf("dtmf PT %d", c.DTMFPayloadType())
			}
			if got := c.RemoteRTPAddr().String(); got != fmt.Sprintf("127.0.0.1:%d", mp) {
				t.Errorf("remote RTP %s, want sipp's media port %d", got, mp)
			}
			if !containsInt(codes, 180) {
				t.Errorf("progress %v lacks 180", codes)
			}
			echoPayloads(t, c, 10)
			if err := c.Hangup(ctx); err != nil {
				t.Fatalf("hangup: %v", err)
			}
			if c.EndReason() != "local_bye" {
				t.Errorf("end reason %q", c.EndReason())
			}
			p.wait(t, 10*time.Second)
		})
	}
}

// echoPayloads writes RTP through the call and checks sipp sent each
// payload back (sipp reflects packets unchanged).
func echoPayloads(t *testing.T, c *Call, n int) {
	t.Helper()
	out := make([]byte, 172)
	in := make([]byte, 1500)
	for i := 0; i < n; i++ {
		out[0], out[1] = 0x80, 0
		out[2], out[3] = 0, byte(i)
		for j := 12; j < len(out); j++ {
			out[j] = byte(i*7 + j)
		}
		if err := c.WritePacket(out); err != nil {
			t.Fatal(err)
		}
		got := readWithin(t, c, in, 2*time.Second)
		if string(got[12:]) != string(out[12:]) {
			t.Fatalf("packet %d: payload not echoed", i)
		}
	}
}

func TestInviteRejected(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		code     int
		reason   string
	}{
		{"uas_busy.xml", 486, "Busy Here"},
		{"uas_unavailable.xml", 503, "Service Unavailable"},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			checkLeaks(t)
			ua := newTestUA(t, "udp")
			p := startSipp(t, tc.scenario, "u1")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, ""), To: "agents", FromUser: "1001"})
			var fe *FinalError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want *FinalError", err)
			}
			if fe.Code != tc.code || fe.Reason != tc.reason {
				t.Errorf("got %d %q", fe.Code, fe.Reason)
			}
			if want := fmt.Sprintf("sip: %d %s", tc.code, tc.reason); fe.Error() != want {
				t.Errorf("Error() %q, want %q", fe.Error(), want)
			}
			p.wait(t, 10*time.Second) // sipp saw our ACK
			if ua.ActiveCalls() != 0 {
				t.Errorf("active calls %d", ua.ActiveCalls())
			}
		})
	}
}

// TestInviteCancel: the PBX rings forever; cancelling ctx sends CANCEL, and
// sipp only exits 0 once it got the CANCEL and the ACK for its 487.
func TestInviteCancel(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_ring_cancel.xml", "u1", "-d", "0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	_, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents", OnProgress: func(code int, _ string) {
		if code == 180 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Invite returned %s after cancel", d)
	}
	p.wait(t, 10*time.Second)
}

// TestInviteCancelBeforeProvisional: ctx ends before the PBX sent any
// provisional response; Invite returns at once and the CANCEL goes out only
// after the 180 (RFC 3261 §9.1), which sipp checks.
func TestInviteCancelBeforeProvisional(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_ring_cancel.xml", "u1", "-d", "600")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Invite returned after %s", d)
	}
	p.wait(t, 10*time.Second)
}

// TestInviteDigestAuth: sipp challenges with 401 and verifies the digest of
// the re-sent INVITE; wrong credentials would fail the scenario.
func TestInviteDigestAuth(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_auth.xml", "u1")
	tr := sippTrunk(p, "udp")
	tr.Username, tr.Password = "gw", "s3cret"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: tr, To: "agents", FromUser: "1001"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Codec().Name != "PCMA" {
		t.Errorf("codec %+v, want PCMA (static PT 8 without rtpmap)", c.Codec())
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
}

// TestInviteDigestAuthRejected: a second challenge is final; the UA does
// not loop (sipp fails on a third INVITE) and the password stays out of errors.
func TestInviteDigestAuthRejected(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_auth_reject.xml", "u1")
	tr := sippTrunk(p, "udp")
	tr.Username, tr.Password = "gw", "wrong-pass"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ua.Invite(ctx, InviteRequest{Trunk: tr, To: "agents"})
	var fe *FinalError
	if !errors.As(err, &fe) || fe.Code != 407 {
		t.Fatalf("err %v, want FinalError 407", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("error leaks the password: %v", err)
	}
	p.wait(t, 10*time.Second)
}

// TestRemoteBye: the PBX hangs up; Done closes with reason remote_bye and
// sipp gets our 200.
func TestRemoteBye(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_bye_after.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the PBX's BYE")
	}
	if c.EndReason() != "remote_bye" {
		t.Errorf("end reason %q", c.EndReason())
	}
	// The BYE has a SIP and a Q.850 reason: the Q.850 one is kept.
	if got := c.PeerReason(); got != (Reason{Protocol: "Q.850", Cause: 16, Text: "Normal Clearing"}) {
		t.Errorf("peer reason %+v", got)
	}
	p.wait(t, 10*time.Second)
	if ua.ActiveCalls() != 0 {
		t.Errorf("active calls %d", ua.ActiveCalls())
	}
}

func TestInviteURI(t *testing.T) {
	tr := &Trunk{Address: "10.0.0.9:5080"}
	for in, want := range map[string]string{
		"agents":                    "sip:agents@10.0.0.9:5080",
		"sip:agents":                "sip:agents@10.0.0.9:5080",
		"sips:agents;transport=tls": "sips:agents@10.0.0.9:5080;transport=tls",
		"sip:":                      "",
		"sip:agents@127.0.0.1:5070": "sip:agents@127.0.0.1:5070",
		"<sip:queue@pbx.example>":   "sip:queue@pbx.example",
		"+1 555":                    "",
		"":                          "",
		"sip:a@b;transport=tcp":     "sip:a@b;transport=tcp",
		"sip:x@h\r\nVia: injected":  "",
		"queue#1":                   "sip:queue%231@10.0.0.9:5080",
	} {
		u, err := inviteURI(in, tr)
		if want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %s", in, u.String())
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if u.String() != want {
			t.Errorf("%q: %s, want %s", in, u.String(), want)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	good := []Header{{"x-wa-meta-wacid", "abc"}, {"X-Custom", ""}}
	bad := []Header{{"", "v"}, {"x bad", "v"}, {"x-a", "v\r\nVia: x"}, {"Call-ID", "x"}, {"Contact", "x"}, {"x:y", "v"}}
	for _, h := range good {
		if err := checkHeader(h); err != nil {
			t.Errorf("%+v: %v", h, err)
		}
	}
	for _, h := range bad {
		if err := checkHeader(h); err == nil {
			t.Errorf("%+v accepted", h)
		}
	}
}

func TestInviteRefusesBadInput(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	ctx := context.Background()
	for name, r := range map[string]InviteRequest{
		"no trunk":            {To: "a"},
		"bad trunk":           {Trunk: &Trunk{Address: "nohost"}, To: "a"},
		"bad to":              {Trunk: &Trunk{Address: "127.0.0.1:9"}, To: "a b"},
		"bad header":          {Trunk: &Trunk{Address: "127.0.0.1:9"}, To: "a", Headers: []Header{{"x", "a\nb"}}},
		"bad codec":           {Trunk: &Trunk{Address: "127.0.0.1:9", Codecs: []string{"G729"}}, To: "a"},
		"bad request codec":   {Trunk: &Trunk{Address: "127.0.0.1:9"}, To: "a", Codecs: []string{"PCMU", "G729"}},
		"request codec twice": {Trunk: &Trunk{Address: "127.0.0.1:9"}, To: "a", Codecs: []string{"PCMA", "alaw"}},
	} {
		if _, err := ua.Invite(ctx, r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	notStarted, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notStarted.Invite(ctx, InviteRequest{Trunk: &Trunk{Address: "127.0.0.1:9"}, To: "a"}); err == nil {
		t.Error("Invite on a UA not started")
	}
	notStarted.Close()
}

func TestDisplayNameAndUserEscaping(t *testing.T) {
	if got := quoteDisplayName("Ana \"x\" \\ y\r\nVia: z"); got != `Ana \"x\" \\ yVia: z` {
		t.Errorf("quoteDisplayName: %q", got)
	}
	if got := escapeUser("+1 555<>@x"); got != "+1%20555%3C%3E%40x" {
		t.Errorf("escapeUser: %q", got)
	}
	_ = sip.INVITE
}

// TestInDialogRequests: in-dialog OPTIONS, a hold re-INVITE answered with our
// SDP (version bumped, recvonly), a BYE for another dialog (481), then BYE.
func TestInDialogRequests(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_reinvite.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec().Name != "PCMA" {
		t.Errorf("codec %+v, want PCMA, the PBX's first", c.Codec())
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if c.EndReason() != "remote_bye" {
		t.Errorf("end reason %q", c.EndReason())
	}
	if got := c.RemoteRTPAddr().Port; got != 40002 {
		t.Errorf("remote RTP port %d after re-INVITE, want 40002", got)
	}
	p.wait(t, 10*time.Second)
}

// TestAnswerCrossesCancel: the PBX answers although we cancelled; the UA
// ACKs the 2xx and sends BYE in the background (sipp checks both).
func TestAnswerCrossesCancel(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_answer_crosses_cancel.xml", "u1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents", OnProgress: func(code int, _ string) {
		if code == 180 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	p.wait(t, 10*time.Second)
	if ua.ActiveCalls() != 0 {
		t.Errorf("active calls %d", ua.ActiveCalls())
	}
}

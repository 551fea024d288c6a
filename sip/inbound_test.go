package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// inboundPeer is sipp as a PBX dialling in through a trunk of the UA.
type inboundPeer struct {
	ua    *UA
	sipp  *sippPeer
	trunk *Trunk
	calls chan *InboundCall
}

// startInbound starts a UA that takes inbound calls (handed to the test on
// calls) and sipp running the UAC scenario against it from a port the UA
// has as the trunk "pbx". mod may change the UA's config and the trunk
// before anything starts.
func startInbound(t *testing.T, scenario, transport string, mod func(*UAConfig, *Trunk), extra ...string) *inboundPeer {
	t.Helper()
	needSipp(t)
	sippTr, network := "u1", "udp"
	if transport == "tcp" {
		sippTr, network = "t1", "tcp"
	}
	port := freePort(t, network)
	trunk := &Trunk{Name: "pbx", Address: fmt.Sprintf("127.0.0.1:%d", port), Transport: transport}
	in := &inboundPeer{trunk: trunk, calls: make(chan *InboundCall, 4)}
	cfg := UAConfig{
		ListenAddr: "127.0.0.1:0", Transport: transport, RTPAddress: "127.0.0.1",
		RTPPortMin: 30000, RTPPortMax: 30999, Logger: testLogger(t).Named("ua"),
		Trunks:   []*Trunk{trunk},
		OnInvite: func(c *InboundCall) { in.calls <- c },
	}
	if mod != nil {
		mod(&cfg, trunk)
	}
	ua, err := NewUA(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	in.ua = ua
	in.sipp = startSippPort(t, port, scenario, sippTr, append(extra, ua.Addr())...)
	return in
}

// next is the next inbound call handed to OnInvite.
func (in *inboundPeer) next(t *testing.T) *InboundCall {
	t.Helper()
	select {
	case c := <-in.calls:
		return c
	case <-in.sipp.done:
		in.sipp.wait(t, 0)
		t.Fatal("sipp ended before the call reached OnInvite")
	case <-time.After(10 * time.Second):
		t.Fatal("no inbound call")
	}
	return nil
}

// noCall fails if OnInvite got a call.
func (in *inboundPeer) noCall(t *testing.T) {
	t.Helper()
	select {
	case c := <-in.calls:
		t.Errorf("OnInvite got call %s", c.CallID())
		c.Close()
	default:
	}
}

// echoEarly writes RTP through the inbound call before its answer and
// checks sipp (-rtp_echo) sent each payload back.
func echoEarly(t *testing.T, c *InboundCall, n int) {
	t.Helper()
	out := make([]byte, 172)
	in := make([]byte, 1500)
	for i := 0; i < n; i++ {
		out[0], out[1], out[3] = 0x80, 0, byte(i)
		for j := 12; j < len(out); j++ {
			out[j] = byte(i*3 + j)
		}
		if err := c.WritePacket(out); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			n, err := c.ReadPacket(in)
			if err != nil {
				got <- nil
				return
			}
			got <- in[:n]
		}()
		select {
		case p := <-got:
			if p == nil || string(p[12:]) != string(out[12:]) {
				t.Fatalf("early packet %d: payload not echoed", i)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("early packet %d: no echo", i)
		}
	}
}

// TestInboundCall: sipp dials +14085551234 (escaped, user=phone) with PCMU
// and telephone-event; the gateway sees who and what, rings, exchanges
// early RTP with sipp's echo, answers (sipp checks our 180 and 200: same To
// tag, PCMU with PT 101, sendrecv), exchanges RTP again on the answered
// call, sends an INFO digit, and sipp's BYE ends the call.
func TestInboundCall(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			checkLeaks(t)
			mp := freePort(t, "udp") &^ 1
			in := startInbound(t, "uac_inbound_basic.xml", tr, nil, "-rtp_echo", "-mi", "127.0.0.1", "-mp", fmt.Sprint(mp))
			c := in.next(t)
			defer c.Close()
			if c.Trunk() != in.trunk {
				t.Errorf("trunk %v", c.Trunk())
			}
			if c.User() != "+14085551234" || c.FromUser() != "agent7" {
				t.Errorf("user %q from %q", c.User(), c.FromUser())
			}
			if got := c.Header("x-wa-phone-number-id"); got != "106540352242922" {
				t.Errorf("X-WA-Phone-Number-ID %q", got)
			}
			if c.Header("X-Nothing") != "" || c.CallID() == "" {
				t.Errorf("header or Call-ID wrong: %q", c.CallID())
			}
			if c.Codec() != (Codec{"PCMU", 0, 8000}) || c.DTMFPayloadType() != 101 {
				t.Errorf("codec %+v dtmf %d", c.Codec(), c.DTMFPayloadType())
			}
			if got := c.RemoteRTPAddr().String(); got != fmt.Sprintf("127.0.0.1:%d", mp) {
				t.Errorf("remote RTP %s, want sipp's %d", got, mp)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Ringing(ctx); err != nil {
				t.Fatal(err)
			}
			echoEarly(t, c, 5)
			if in.ua.PendingInvites() != 1 || in.ua.ActiveCalls() != 0 {
				t.Errorf("pending %d active %d", in.ua.PendingInvites(), in.ua.ActiveCalls())
			}
			call, err := c.Answer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if call.Codec() != (Codec{"PCMU", 0, 8000}) || call.DTMFPayloadType() != 101 || call.CallID() != c.CallID() {
				t.Errorf("call codec %+v dtmf %d", call.Codec(), call.DTMFPayloadType())
			}
			if in.ua.PendingInvites() != 0 || in.ua.ActiveCalls() != 1 {
				t.Errorf("after answer: pending %d active %d", in.ua.PendingInvites(), in.ua.ActiveCalls())
			}
			echoPayloads(t, call, 5)
			if err := c.Ringing(ctx); err == nil {
				t.Error("Ringing after the answer succeeded")
			}
			if _, err := c.Answer(ctx); err == nil {
				t.Error("a second Answer succeeded")
			}
			if err := call.SendInfoDigit(ctx, '5', 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			select {
			case <-call.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("sipp's BYE did not end the call")
			}
			if call.EndReason() != "remote_bye" || call.PeerReason() != (Reason{"Q.850", 16, "Normal Clearing"}) {
				t.Errorf("end %q peer reason %+v", call.EndReason(), call.PeerReason())
			}
			select {
			case <-c.Cancelled():
				t.Error("Cancelled closed for an answered call")
			default:
			}
			in.sipp.wait(t, 10*time.Second)
			if in.ua.ActiveCalls() != 0 {
				t.Errorf("active calls %d", in.ua.ActiveCalls())
			}
		})
	}
}

// TestInboundOurBye: behind two record-routing proxies; the gateway
// answers and hangs up with a Reason. sipp checks the 200's Record-Route
// and our BYE's Request-URI (the INVITE's Contact), Route set and Reason.
func TestInboundOurBye(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_our_bye.xml", "udp", nil)
	c := in.next(t)
	defer c.Close()
	if c.User() != "14085551234" || c.FromUser() != "agent7" || c.Codec() != (Codec{"PCMA", 8, 8000}) || c.DTMFPayloadType() != 0 {
		t.Errorf("user %q from %q codec %+v dtmf %d", c.User(), c.FromUser(), c.Codec(), c.DTMFPayloadType())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := c.Answer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.HangupWithReason(ctx, Reason{Protocol: "Q.850", Cause: 16, Text: "caller hung up"}); err != nil {
		t.Fatal(err)
	}
	if call.EndReason() != "local_bye" {
		t.Errorf("end reason %q", call.EndReason())
	}
	in.sipp.wait(t, 10*time.Second)
}

// TestInboundCancel: the agent hangs up while the gateway rings (180, then
// 183 with SDP): Cancelled closes, the CANCEL's Reason is kept, and Answer
// then fails with ErrCancelled; sipp checks the 200 and the 487.
func TestInboundCancel(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_cancel.xml", "udp", nil)
	c := in.next(t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ringing(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Progress(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Cancelled():
	case <-time.After(5 * time.Second):
		t.Fatal("Cancelled not closed after the PBX's CANCEL")
	}
	if got := c.PeerReason(); got != (Reason{"Q.850", 16, "agent hung up"}) {
		t.Errorf("peer reason %+v", got)
	}
	if _, err := c.Answer(ctx); !errors.Is(err, ErrCancelled) {
		t.Errorf("Answer after CANCEL: %v, want ErrCancelled", err)
	}
	if err := c.Ringing(ctx); !errors.Is(err, ErrCancelled) {
		t.Errorf("Ringing after CANCEL: %v", err)
	}
	if _, err := c.ReadPacket(make([]byte, 1500)); err == nil {
		t.Error("ReadPacket after CANCEL: no error (socket not released)")
	}
	in.sipp.wait(t, 10*time.Second)
	if in.ua.PendingInvites() != 0 || in.ua.ActiveCalls() != 0 {
		t.Errorf("pending %d active %d", in.ua.PendingInvites(), in.ua.ActiveCalls())
	}
}

// TestInboundReject: 486 with a Reason and a Warning, which sipp checks.
func TestInboundReject(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_reject.xml", "udp", nil)
	c := in.next(t)
	defer c.Close()
	if err := c.Reject(200, "OK", Reason{}, ""); err == nil {
		t.Error("Reject with 200 accepted")
	}
	if err := c.Reject(486, "", Reason{Protocol: "Q.850", Cause: 17, Text: "user busy"}, "WhatsApp user is \"on\" another call\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Cancelled():
	default:
		t.Error("Cancelled not closed after Reject")
	}
	if err := c.Reject(480, "", Reason{}, ""); !errors.Is(err, ErrCallEnded) {
		t.Errorf("second Reject: %v", err)
	}
	in.sipp.wait(t, 10*time.Second)
}

// TestInboundDigestAuth: the trunk has credentials; sipp answers our 401
// with them and the call goes through.
func TestInboundDigestAuth(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_auth.xml", "udp", func(_ *UAConfig, tr *Trunk) {
		tr.Username, tr.Password = "gw", "s3cret"
	}, "-au", "gw", "-ap", "s3cret")
	c := in.next(t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := c.Answer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("sipp's BYE did not end the call")
	}
	in.sipp.wait(t, 10*time.Second)
	if st := in.ua.Stats(); st.InvitesAuthFailed != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := in.ua.auth.outstanding(); n != 0 {
		t.Errorf("%d nonces left", n)
	}
}

// TestInboundDigestAuthWrongPassword: sipp answers our 401 with a wrong
// password and gets 403; OnInvite never runs.
func TestInboundDigestAuthWrongPassword(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_auth_wrong.xml", "udp", func(_ *UAConfig, tr *Trunk) {
		tr.Username, tr.Password = "gw", "s3cret"
	}, "-au", "gw", "-ap", "not-the-password")
	in.sipp.wait(t, 10*time.Second)
	in.noCall(t)
	if st := in.ua.Stats(); st.InvitesAuthFailed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestInboundStrangerRefused: an INVITE from a source that is no trunk's
// (another port than the trunk's) gets nothing back and no call.
func TestInboundStrangerRefused(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_stranger.xml", "udp", func(_ *UAConfig, tr *Trunk) {
		tr.Address = "127.0.0.1:9"
	}, "-trace_msg")
	in.sipp.wait(t, 10*time.Second)
	in.noCall(t)
	if got := sippReceived(t, in.sipp); got != 0 {
		t.Errorf("the stranger received %d messages", got)
	}
	if st := in.ua.Stats(); st.RequestsNotFromTrunk < 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestInboundNoCommonCodec: G.729 only gets 488 with a Warning naming what
// the trunk has (sipp checks it); OnInvite never runs.
func TestInboundNoCommonCodec(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_no_codec.xml", "udp", nil)
	in.sipp.wait(t, 10*time.Second)
	in.noCall(t)
	if in.ua.PendingInvites() != 0 {
		t.Errorf("pending %d", in.ua.PendingInvites())
	}
}

// TestInboundReinviteHold: the PBX holds and resumes an answered inbound
// call with re-INVITEs; we answer recvonly then sendrecv (sipp checks) and
// OnMediaChange hears both.
func TestInboundReinviteHold(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_reinvite.xml", "udp", nil)
	c := in.next(t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := c.Answer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan MediaChange, 4)
	call.SetOnMediaChange(func(m MediaChange) { changes <- m })
	if err := call.SendInfoDigit(ctx, '1', 0); err != nil { // tells sipp to go on
		t.Fatal(err)
	}
	for _, want := range []string{"sendonly", "sendrecv"} {
		select {
		case m := <-changes:
			if m.Direction != want || m.Codec != (Codec{"PCMA", 8, 8000}) {
				t.Errorf("change %v, want %s PCMA", m, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s change", want)
		}
	}
	select {
	case <-call.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("sipp's BYE did not end the call")
	}
	in.sipp.wait(t, 10*time.Second)
}

// TestInboundOfferless: an INVITE without SDP; our 200 offers, the ACK
// answers PCMA, and the answered call has it.
func TestInboundOfferless(t *testing.T) {
	checkLeaks(t)
	mp := freePort(t, "udp") &^ 1
	in := startInbound(t, "uac_inbound_offerless.xml", "udp", nil, "-mi", "127.0.0.1", "-mp", fmt.Sprint(mp))
	c := in.next(t)
	defer c.Close()
	if c.Codec() != (Codec{}) || c.RemoteRTPAddr() != nil || c.DTMFPayloadType() != 0 {
		t.Errorf("before the answer: codec %+v remote %v", c.Codec(), c.RemoteRTPAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Progress(ctx); err == nil {
		t.Error("183 with SDP accepted without an offer to answer")
	}
	if err := c.WritePacket(make([]byte, 20)); err != nil {
		t.Errorf("early write without an offer: %v (want a silent drop)", err)
	}
	call, err := c.Answer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if call.Codec() != (Codec{"PCMA", 8, 8000}) || call.DTMFPayloadType() != 101 {
		t.Errorf("codec %+v dtmf %d, want the ACK's PCMA and 101", call.Codec(), call.DTMFPayloadType())
	}
	if got := call.RemoteRTPAddr().String(); got != fmt.Sprintf("127.0.0.1:%d", mp) {
		t.Errorf("remote RTP %s, want the ACK's port %d", got, mp)
	}
	if err := call.SendInfoDigit(ctx, '2', 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("sipp's BYE did not end the call")
	}
	in.sipp.wait(t, 10*time.Second)
}

// TestInboundPendingLimit: with one pending INVITE allowed, sipp's second
// call gets 503 with Retry-After while the first rings; the first then
// ends with Close (480).
func TestInboundPendingLimit(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_limit.xml", "udp", func(cfg *UAConfig, _ *Trunk) {
		cfg.MaxPendingInvites = 1
	}, "-m", "2", "-r", "20")
	c := in.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ringing(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for in.ua.Stats().InvitesOverLimit < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the second INVITE was not refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Cancelled():
	default:
		t.Error("Cancelled not closed by Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	in.sipp.wait(t, 10*time.Second)
	in.noCall(t)
}

// TestInboundRingTimeout: the gateway rings and never answers; after
// MaxRingDuration the PBX gets 480 with Q.850 cause 19.
func TestInboundRingTimeout(t *testing.T) {
	checkLeaks(t)
	old := MaxRingDuration
	MaxRingDuration = 700 * time.Millisecond // before the UA starts: its goroutines read it
	in := startInbound(t, "uac_inbound_ring_timeout.xml", "udp", nil)
	t.Cleanup(func() { in.ua.Close(); MaxRingDuration = old })
	c := in.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ringing(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Cancelled():
	case <-time.After(5 * time.Second):
		t.Fatal("not ended after MaxRingDuration")
	}
	if _, err := c.Answer(ctx); !errors.Is(err, ErrCallEnded) {
		t.Errorf("Answer after the timeout: %v", err)
	}
	in.sipp.wait(t, 10*time.Second)
}

// TestInboundNoAck: the PBX never ACKs our 200; after Timer H (shortened
// here) Answer fails and the call is ended with BYE (sipp checks it).
func TestInboundNoAck(t *testing.T) {
	checkLeaks(t)
	ackWaitOverride = 1200 * time.Millisecond
	in := startInbound(t, "uac_inbound_no_ack.xml", "udp", nil)
	t.Cleanup(func() { in.ua.Close(); ackWaitOverride = 0 })
	c := in.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := c.Answer(ctx)
	if err == nil || call != nil {
		t.Fatalf("Answer without ACK: %v", err)
	}
	select {
	case <-c.Cancelled():
	default:
		t.Error("Cancelled not closed after a failed answer")
	}
	in.sipp.wait(t, 10*time.Second)
	if in.ua.ActiveCalls() != 0 {
		t.Errorf("active calls %d", in.ua.ActiveCalls())
	}
}

// TestInboundShutdown: the UA closes while an inbound call rings; the PBX
// gets 503 with Q.850 cause 41, Cancelled closes, Close returns at once.
func TestInboundShutdown(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_shutdown.xml", "udp", nil)
	c := in.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ringing(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := in.ua.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
	select {
	case <-c.Cancelled():
	default:
		t.Error("Cancelled not closed by the UA's Close")
	}
	if _, err := c.Answer(ctx); err == nil {
		t.Error("Answer after the UA closed succeeded")
	}
	in.sipp.wait(t, 10*time.Second)
}

// TestInboundDigestAuthSHA256: a PBX built on this package's own UAC side
// (sipgo's digest client) answers our SHA-256-first challenge
// (UAConfig.AuthSHA256, RFC 8760) with SHA-256; the call is answered, and
// the PBX's BYE ends it.
func TestInboundDigestAuthSHA256(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pbx, err := newStack(ctx, stackConfig{listenAddr: "127.0.0.1:0", transport: "udp", userAgent: "pbx", log: testLogger(t).Named("pbx")},
		func(srv *sipgo.Server) {
			srv.OnRequest(sip.BYE, func(req *sip.Request, tx sip.ServerTransaction) {
				respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), zap.NewNop())
			})
		})
	if err != nil {
		t.Fatal(err)
	}
	defer pbx.close()
	trunk := &Trunk{Name: "pbx", Address: pbx.addr, Username: "gw", Password: "s3cret"}
	calls := make(chan *InboundCall, 1)
	ua, err := NewUA(UAConfig{
		ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1", RTPPortMin: 30000, RTPPortMax: 30999,
		Logger: testLogger(t).Named("ua"), Trunks: []*Trunk{trunk}, AuthSHA256: true,
		OnInvite: func(c *InboundCall) { calls <- c },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ua.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ua.Close()

	var ruri sip.Uri
	if err := sip.ParseUri("sip:+14085551234@"+ua.Addr(), &ruri); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, ruri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "agent7", Host: "pbx.example"}, Params: sip.NewParams()}
	from.Params.Add("tag", randHex(8))
	cid := sip.CallIDHeader(randHex(16))
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: ruri})
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(pbx.contact.Clone())
	req.AppendHeader(&ct)
	req.SetBody(BuildSDP(SDPParams{SessionID: 1, Version: 1, Host: "127.0.0.1", Port: 40000, Codecs: []Codec{{"PCMA", 8, 8000}}}))
	req.SetDestination(ua.Addr())

	tx, err := pbx.client.TransactionRequest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	final := func(tx sip.ClientTransaction) *sip.Response {
		t.Helper()
		for {
			select {
			case res := <-tx.Responses():
				if !res.IsProvisional() {
					return res
				}
			case <-tx.Done():
				t.Fatalf("INVITE transaction ended: %v", tx.Err())
			case <-ctx.Done():
				t.Fatal("no final response")
			}
		}
	}
	res := final(tx)
	tx.Terminate()
	if res.StatusCode != 401 || len(res.GetHeaders("WWW-Authenticate")) != 2 {
		t.Fatalf("%d with %d challenges, want 401 with SHA-256 and MD5", res.StatusCode, len(res.GetHeaders("WWW-Authenticate")))
	}
	tx, err = answerChallenge(ctx, pbx, req, res, trunk)
	if err != nil {
		t.Fatal(err)
	}
	if h := req.GetHeader("Authorization"); h == nil || !strings.Contains(h.Value(), "algorithm=SHA-256") {
		t.Fatalf("the PBX did not answer with SHA-256: %v", h)
	}
	var c *InboundCall
	select {
	case c = <-calls:
	case <-ctx.Done():
		t.Fatal("no inbound call")
	}
	defer c.Close()
	answered := make(chan *Call, 1)
	go func() {
		call, err := c.Answer(ctx)
		if err != nil {
			t.Error(err)
		}
		answered <- call
	}()
	res = final(tx)
	if res.StatusCode != 200 {
		t.Fatalf("after auth: %d", res.StatusCode)
	}
	d, err := uacDialog(req, res, ua.Addr(), pbx.contact.Clone())
	if err != nil {
		t.Fatal(err)
	}
	if err := pbx.client.WriteRequest(d.request(sip.ACK, req.CSeq().SeqNo)); err != nil {
		t.Fatal(err)
	}
	tx.Terminate()
	call := <-answered
	if call == nil {
		t.FailNow()
	}
	if call.Codec() != (Codec{"PCMA", 8, 8000}) {
		t.Errorf("codec %+v", call.Codec())
	}
	if res, err := doRequest(ctx, pbx, d.request(sip.BYE, 0)); err != nil || res.StatusCode != 200 {
		t.Fatalf("BYE: %v %v", res, err)
	}
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("the PBX's BYE did not end the call")
	}
	if call.EndReason() != "remote_bye" || ua.Stats().InvitesAuthFailed != 0 {
		t.Errorf("end %q stats %+v", call.EndReason(), ua.Stats())
	}
}

// TestInboundEarlyBye: a BYE on the early dialog ends the pending call like
// a CANCEL (200, then 487 to the INVITE, which sipp checks).
func TestInboundEarlyBye(t *testing.T) {
	checkLeaks(t)
	in := startInbound(t, "uac_inbound_early_bye.xml", "udp", nil)
	c := in.next(t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ringing(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Cancelled():
	case <-time.After(5 * time.Second):
		t.Fatal("Cancelled not closed by the early BYE")
	}
	if got := c.PeerReason(); got != (Reason{Protocol: "Q.850", Cause: 31}) {
		t.Errorf("peer reason %+v", got)
	}
	if _, err := c.Answer(ctx); !errors.Is(err, ErrCancelled) {
		t.Errorf("Answer: %v, want ErrCancelled", err)
	}
	in.sipp.wait(t, 10*time.Second)
}

func TestRequestUser(t *testing.T) {
	for in, want := range map[string]struct {
		user string
		code int
	}{
		"sip:%2B14085551234@h;user=phone":          {"+14085551234", 0},
		"sip:+14085551234;npdi;rn=+1@h;user=phone": {"+14085551234", 0},
		"sip:+1408;x@h":                            {"+1408;x", 0},
		"sips:US.13491234567890@h":                 {"US.13491234567890", 0},
		"tel:+14085551234;phone-context=x":         {"+14085551234", 0},
		"sip:h":                                    {"", 0},
		"sip:%zz@h":                                {"", 400},
		"sip:a%0Db@h":                              {"", 400},
		"urn:service:sos":                          {"", 416},
	} {
		var u sip.Uri
		if err := sip.ParseUri(in, &u); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if user, code := requestUser(u); user != want.user || code != want.code {
			t.Errorf("%s: %q %d, want %q %d", in, user, code, want.user, want.code)
		}
	}
}

func TestWarningValue(t *testing.T) {
	if got := warningValue(399, "gw.example", "agent \"busy\"\r\n\\ now"); got != `399 gw.example "agent busy now"` {
		t.Errorf("got %s", got)
	}
	if got := warningValue(305, "h", strings.Repeat("é", 200)); len(got) > maxWarningText+10 || !strings.HasSuffix(got, `"`) {
		t.Errorf("long text: %q", got)
	}
}

func TestTrunkForMostSpecific(t *testing.T) {
	a := &Trunk{Name: "a", Address: "10.0.0.1:5060", AllowFrom: []string{"10.0.0.0/8"}}
	b := &Trunk{Name: "b", Address: "10.0.0.2:5080", AllowFrom: []string{"10.0.0.0/24"}}
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	if err := ua.SetTrunks(context.Background(), []*Trunk{a, b}); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]*Trunk{
		"10.0.0.1:5060":   a, // a's own address and port
		"10.0.0.2:5080":   b,
		"10.0.0.1:40000":  b, // /24 beats /8
		"10.9.0.1:5060":   a,
		"192.0.2.1:5060":  nil,
		"not an address":  nil,
		"[::1]:5060":      nil,
		"10.0.0.2:5060":   b,
		"10.200.0.2:5080": a,
	} {
		if got := ua.trunkFor(src); got != want {
			t.Errorf("%s: %v, want %v", src, got, want)
		}
	}
}

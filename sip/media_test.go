package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

type gotDigit struct {
	digit rune
	d     time.Duration
}

// TestInfoDTMF: sipp as the PBX sends INFO digits (dtmf-relay 1, 2, #, then
// application/dtmf 9) after an unsupported body (415) and a bad digit
// (400); we get exactly those, in order. Then we send 4 and 5, which sipp
// checks byte by byte, and a third digit it refuses with 501.
func TestInfoDTMF(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_info_dtmf.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Set after the call is up: digits that came before are kept for us.
	digits := make(chan gotDigit, 16)
	c.SetOnInfoDigit(func(r rune, d time.Duration) { digits <- gotDigit{r, d} })
	want := []gotDigit{{'1', 160 * time.Millisecond}, {'2', 160 * time.Millisecond}, {'#', 160 * time.Millisecond}, {'9', DefaultInfoDigitDuration}}
	for i, w := range want {
		select {
		case g := <-digits:
			if g != w {
				t.Errorf("digit %d: %q %s, want %q %s", i, g.digit, g.d, w.digit, w.d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("digit %d (%q) not delivered", i, w.digit)
		}
	}

	if err := c.SendInfoDigit(ctx, 'x', 0); err == nil {
		t.Error("digit x accepted")
	}
	for _, r := range "45" {
		if err := c.SendInfoDigit(ctx, r, 160*time.Millisecond); err != nil {
			t.Fatalf("send %q: %v", r, err)
		}
	}
	err = c.SendInfoDigit(ctx, 'a', 0)
	var fe *FinalError
	if !errors.As(err, &fe) || fe.Code != 501 {
		t.Errorf("refused INFO: err %v, want *FinalError 501", err)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.SendInfoDigit(ctx, '1', 0); !errors.Is(err, ErrCallEnded) {
		t.Errorf("INFO after hangup: %v, want ErrCallEnded", err)
	}
	p.wait(t, 10*time.Second)
	select {
	case g := <-digits:
		t.Errorf("extra digit %q", g.digit)
	default:
	}
}

// TestReinviteMedia: sipp as the PBX answers PCMU with telephone-event on
// its own PT 96, then changes the media: hold (sendonly: we answer
// recvonly), inactive, resume, a switch to PCMA with telephone-event 101, a
// refresh that changes nothing, an UPDATE with no common codec (488), an
// UPDATE moving its RTP port, and an offerless re-INVITE whose answer (in
// the ACK) goes back to PCMU. sipp checks our answers; we check each
// notification, and that RTP is sent only while the PBX receives.
func TestReinviteMedia(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	lo := net.IPv4(127, 0, 0, 1)
	var socks [2]*net.UDPConn
	for i := range socks {
		s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		socks[i] = s
	}
	port := func(i int) int { return socks[i].LocalAddr().(*net.UDPAddr).Port }
	p := startSipp(t, "uas_reinvite_media.xml", "u1", "-key", "mport", fmt.Sprint(port(0)), "-key", "mport2", fmt.Sprint(port(1)))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	// The callback hands each change to the test and waits (bounded) until
	// the test has written a packet under it: the next change cannot be
	// applied before, so what is sent under which state is deterministic.
	changes := make(chan MediaChange, 1)
	written := make(chan struct{})
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "agents", OnMediaChange: func(m MediaChange) {
		changes <- m
		select {
		case <-written:
		case <-time.After(5 * time.Second):
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec() != (Codec{"PCMU", 0, 8000}) || c.DTMFPayloadType() != 96 {
		t.Errorf("answer: codec %+v dtmf %d, want PCMU/0 and the PBX's PT 96", c.Codec(), c.DTMFPayloadType())
	}

	want := []struct {
		dir   string
		codec Codec
		dtmf  uint8
		sock  int
		sends bool
	}{
		{"sendonly", Codec{"PCMU", 0, 8000}, 96, 0, false},
		{"inactive", Codec{"PCMU", 0, 8000}, 96, 0, false},
		{"sendrecv", Codec{"PCMU", 0, 8000}, 96, 0, true},
		{"sendrecv", Codec{"PCMA", 8, 8000}, 101, 0, true},
		{"sendrecv", Codec{"PCMA", 8, 8000}, 101, 1, true}, // UPDATE: new port
		{"sendrecv", Codec{"PCMU", 0, 8000}, 101, 0, true}, // answer in the ACK
	}
	pkt := make([]byte, 13)
	in := make([]byte, 1500)
	for i, w := range want {
		var m MediaChange
		select {
		case m = <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d (%s %s) not notified", i, w.dir, w.codec.Name)
		}
		if m.Direction != w.dir || m.Codec != w.codec || m.DTMFPayloadType != w.dtmf || m.RemoteRTPAddr.Port != port(w.sock) {
			t.Errorf("change %d: %s, want %s %+v dtmf=%d port %d", i, m, w.dir, w.codec, w.dtmf, port(w.sock))
		}
		if c.Codec() != m.Codec || c.DTMFPayloadType() != m.DTMFPayloadType {
			t.Errorf("change %d: Codec() %+v DTMFPayloadType() %d disagree with %s", i, c.Codec(), c.DTMFPayloadType(), m)
		}
		pkt[0], pkt[1], pkt[12] = 0x80, m.Codec.PayloadType, byte(i)
		if err := c.WritePacket(pkt); err != nil {
			t.Errorf("change %d: write: %v", i, err)
		}
		if i == 0 {
			// On hold the socket stays open: what the PBX sends is read.
			if _, err := socks[0].WriteToUDP(pkt, c.LocalRTPAddr()); err != nil {
				t.Fatal(err)
			}
			if got := readWithin(t, c, in, 2*time.Second); got[12] != 0 {
				t.Errorf("read on hold: %x", got)
			}
		}
		written <- struct{}{}
	}
	p.wait(t, 10*time.Second) // sipp checked our answers and got our 200 to its BYE
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the PBX's BYE")
	}
	if c.EndReason() != "remote_bye" {
		t.Errorf("end reason %q", c.EndReason())
	}
	select {
	case m := <-changes:
		t.Errorf("extra change %s", m)
	default:
	}

	// What reached the PBX's RTP ports: only what was written while it
	// received.
	for s := range socks {
		var got []byte
		for {
			_ = socks[s].SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := socks[s].Read(in)
			if err != nil {
				break
			}
			if n == 13 {
				got = append(got, in[12])
			}
		}
		var exp []byte
		for i, w := range want {
			if w.sends && w.sock == s {
				exp = append(exp, byte(i))
			}
		}
		if string(got) != string(exp) {
			t.Errorf("port %d got packets %v, want %v", s, got, exp)
		}
	}
}

// TestOfferCodecsG722: a trunk preferring G722, then opus, then PCMU offers
// them in that order with their rtpmaps (sipp checks), and the PBX's G722
// answer gives G722 on PT 9 at clock 8000.
func TestOfferCodecsG722(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_answer_g722.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := sippTrunk(p, "udp")
	tr.Codecs = []string{"G722", "opus", "PCMU"}
	c, err := ua.Invite(ctx, InviteRequest{Trunk: tr, To: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec() != (Codec{"G722", 9, 8000}) {
		t.Errorf("codec %+v, want G722/9/8000", c.Codec())
	}
	if c.DTMFPayloadType() != 101 {
		t.Errorf("dtmf PT %d", c.DTMFPayloadType())
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
}

// TestAnswerOpusOtherPTs: the PBX answers opus and telephone-event on
// payload types other than ours; the call reports the PBX's.
func TestAnswerOpusOtherPTs(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_answer_opus.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := sippTrunk(p, "udp")
	tr.Codecs = []string{"opus", "PCMA"}
	c, err := ua.Invite(ctx, InviteRequest{Trunk: tr, To: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec() != (Codec{"opus", 96, 48000}) || c.DTMFPayloadType() != 100 {
		t.Errorf("codec %+v dtmf %d, want opus/96/48000 and 100", c.Codec(), c.DTMFPayloadType())
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
}

// testCall is a Call with an RTP socket and no dialog, for the offer/answer
// logic alone.
func testCall(t *testing.T, offered []Codec, cur Codec, dtmf uint8, remote *net.UDPAddr) *Call {
	t.Helper()
	rtp, err := ListenRTP(net.IPv4(127, 0, 0, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rtp.Close() })
	rtp.SetRemote(remote)
	c := &Call{st: &stack{host: "127.0.0.1"}, rtp: rtp, offered: offered, log: testLogger(t), sdpID: 7, sdpVer: 1,
		codec: cur, dtmfPT: dtmf, remoteDir: "sendrecv", remoteSDP: remote}
	c.sendOK.Store(true)
	return c
}

func TestAnswerOfferHoldAndRefusal(t *testing.T) {
	pcmu, pcma := Codec{"PCMU", 0, 8000}, Codec{"PCMA", 8, 8000}
	remote := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4000}
	c := testCall(t, []Codec{pcmu, pcma}, pcmu, 101, remote)
	offer := func(conn, dir, fmts string, extra ...string) []byte {
		l := []string{"v=0", "o=pbx 1 2 IN IP4 127.0.0.9", "s=-", "c=IN IP4 " + conn, "t=0 0", "m=audio 4000 RTP/AVP " + fmts}
		l = append(l, extra...)
		if dir != "" {
			l = append(l, "a="+dir)
		}
		return sdpLines(l...)
	}

	// RFC 2543 hold: c=0.0.0.0. We answer recvonly, stop sending, keep the
	// RTP destination.
	ans, mc, changed, err := c.answerOffer(offer("0.0.0.0", "", "0 101", "a=rtpmap:101 telephone-event/8000"))
	if err != nil || !changed {
		t.Fatalf("0.0.0.0 hold: %v changed=%v", err, changed)
	}
	if mc.Direction != "sendonly" || c.sendOK.Load() || mc.RemoteRTPAddr.String() != remote.String() {
		t.Errorf("0.0.0.0 hold: %s sendOK=%v", mc, c.sendOK.Load())
	}
	if !strings.Contains(string(ans), "a=recvonly\r\n") || !strings.Contains(string(ans), "o=wagateway 7 2 ") {
		t.Errorf("0.0.0.0 hold answer:\n%s", ans)
	}
	ans, mc, _, _ = c.answerOffer(offer("0.0.0.0", "recvonly", "0"))
	if mc.Direction != "inactive" || mc.DTMFPayloadType != 0 || !strings.Contains(string(ans), "a=inactive\r\n") {
		t.Errorf("0.0.0.0 + recvonly: %s\n%s", mc, ans)
	}
	if strings.Contains(string(ans), "telephone-event") {
		t.Errorf("answer to an offer without telephone-event has it:\n%s", ans)
	}

	// An offer without a trunk codec is refused and changes nothing.
	before := c.Codec()
	if _, _, _, err := c.answerOffer(offer("127.0.0.9", "sendrecv", "9 18")); !errors.Is(err, errNoCommonCodec) {
		t.Errorf("G722/G729 offer to a PCMU/PCMA trunk: %v", err)
	}
	if _, _, _, err := c.answerOffer([]byte("garbage")); err == nil {
		t.Error("garbage offer accepted")
	}
	if c.Codec() != before || c.sendOK.Load() {
		t.Errorf("refused offers changed the state: %+v sendOK=%v", c.Codec(), c.sendOK.Load())
	}

	// The PBX's first codec among the trunk's wins; resuming sends again.
	_, mc, _, err = c.answerOffer(offer("127.0.0.9", "sendrecv", "18 8 0"))
	if err != nil || mc.Codec != pcma || !c.sendOK.Load() || mc.Direction != "sendrecv" {
		t.Errorf("resume with PCMA: %s %v sendOK=%v", mc, err, c.sendOK.Load())
	}
	// recvonly from the PBX: we answer sendonly and may send.
	ans, mc, _, _ = c.answerOffer(offer("127.0.0.9", "recvonly", "8"))
	if mc.Direction != "recvonly" || !c.sendOK.Load() || !strings.Contains(string(ans), "a=sendonly\r\n") {
		t.Errorf("recvonly: %s sendOK=%v\n%s", mc, c.sendOK.Load(), ans)
	}
	// Held: WritePacket drops without error.
	c.answerOffer(offer("127.0.0.9", "inactive", "8"))
	if err := c.WritePacket(make([]byte, 12)); err != nil || c.sendOK.Load() {
		t.Errorf("write while inactive: %v", err)
	}
}

// TestOfferSDPAvoidsPTClash: our offer to an offerless re-INVITE lists the
// current codec first and keeps telephone-event off the codecs' PTs.
func TestOfferSDPAvoidsPTClash(t *testing.T) {
	remote := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4000}
	opus := Codec{"opus", 101, 48000} // the PBX answered opus on 101
	c := testCall(t, []Codec{{"PCMU", 0, 8000}, {"opus", 111, 48000}}, opus, 0, remote)
	b, codecs := c.offerSDP()
	if len(codecs) != 2 || codecs[0] != opus || codecs[1].Name != "PCMU" {
		t.Errorf("offered %+v", codecs)
	}
	if !strings.Contains(string(b), "m=audio ") || !strings.Contains(string(b), " RTP/AVP 101 0 96\r\n") || !strings.Contains(string(b), "a=rtpmap:96 telephone-event/8000") {
		t.Errorf("offer:\n%s", b)
	}
}

// TestEchoServerG722AndInfo: the echo (the demo's PBX) answers a G722-first
// offer with G722, reflects its RTP and takes our INFO digits.
func TestEchoServerG722AndInfo(t *testing.T) {
	checkLeaks(t)
	echo := startEcho(t, EchoConfig{})
	ua := newTestUA(t, "udp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: echoTrunk(echo, "G722", "PCMU"), To: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Codec() != (Codec{"G722", 9, 8000}) {
		t.Errorf("codec %+v, want G722/9/8000", c.Codec())
	}
	roundTrip(t, c, 5)
	for _, r := range "1#" {
		if err := c.SendInfoDigit(ctx, r, 100*time.Millisecond); err != nil {
			t.Errorf("INFO %q: %v", r, err)
		}
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}

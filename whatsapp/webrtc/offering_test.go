package webrtc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/stun/v4"
	pionwebrtc "github.com/pion/webrtc/v4"
)

// offerLeg makes an offered leg, closed when the test ends.
func offerLeg(t *testing.T, m *Media) *Leg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := m.Offer(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// testAnswer is an answer to our offer in Meta's shape (ICE-lite, host
// candidates, one fingerprint, Opus 111 and telephone-event 126, mid 0)
// with the given a=setup, or a full agent's when lite is false.
func testAnswer(lite bool, setup, ufrag, pwd string, cands ...netip.AddrPort) string {
	lines := []string{"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0"}
	if lite {
		lines = append(lines, "a=ice-lite")
	}
	lines = append(lines, "m=audio 9 UDP/TLS/RTP/SAVPF 111 126", "c=IN IP4 0.0.0.0")
	for i, c := range cands {
		lines = append(lines, fmt.Sprintf("a=candidate:%d 1 udp %d %s %d typ host", i+1, 2130706431-i, c.Addr(), c.Port()))
	}
	lines = append(lines,
		"a=ice-ufrag:"+ufrag, "a=ice-pwd:"+pwd,
		"a=fingerprint:sha-256 "+strings.Repeat("AB:", 31)+"AB",
		"a=setup:"+setup, "a=mid:0", "a=sendrecv", "a=rtcp-mux",
		"a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
		"a=rtpmap:126 telephone-event/8000",
		"a=ssrc:1493820744 cname:WhatsAppAudioStream1")
	return strings.Join(lines, "\r\n") + "\r\n"
}

// The offer is Meta-shaped (Meta's media rules, RFC 8829 §5.2): one audio
// m-line with Opus 111 (minptime=10;useinbandfec=1, ptime 20) and
// telephone-event 126, rtcp-mux, BUNDLE with its one mid, actpass, one
// sha-256 fingerprint (our certificate's), our ICE credentials and every
// host candidate (no trickle), one SSRC, sendrecv; it parses with
// pion/sdp and pion takes it as a remote offer and answers it.
func TestOfferSDP(t *testing.T) {
	m := newLoopbackMedia(t)
	leg := offerLeg(t, m)
	o := leg.OfferSDP()
	if leg.AnswerSDP() != "" {
		t.Errorf("an offered leg has an answer: %q", leg.AnswerSDP())
	}
	if !answerIsClean(o) {
		t.Fatalf("offer has control characters or lines without CRLF:\n%q", o)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(o); err != nil {
		t.Fatalf("pion/sdp: %v\n%s", err, o)
	}
	if len(sd.MediaDescriptions) != 1 {
		t.Fatalf("%d m-lines:\n%s", len(sd.MediaDescriptions), o)
	}
	md := sd.MediaDescriptions[0]
	if md.MediaName.Media != "audio" || strings.Join(md.MediaName.Protos, "/") != "UDP/TLS/RTP/SAVPF" ||
		strings.Join(md.MediaName.Formats, " ") != "111 126" || md.MediaName.Port.Value != int(m.sockets[0].local.Port()) {
		t.Errorf("m-line %q", md.MediaName.String())
	}
	if g, _ := sd.Attribute("group"); g != "BUNDLE 0" {
		t.Errorf("a=group:%s", g)
	}
	if _, lite := sd.Attribute("ice-lite"); lite {
		t.Error("the gateway offers as a full ICE agent, not lite")
	}
	want := map[string]string{
		"mid": "0", "setup": "actpass", "ptime": "20",
		"ice-ufrag": leg.ice.localUfrag, "ice-pwd": leg.ice.localPwd,
		"fingerprint": m.cert.Fingerprint,
	}
	for k, v := range want {
		if got, _ := md.Attribute(k); got != v {
			t.Errorf("a=%s:%s, want %s", k, got, v)
		}
	}
	for _, k := range []string{"rtcp-mux", "sendrecv", "end-of-candidates"} {
		if _, ok := md.Attribute(k); !ok {
			t.Errorf("no a=%s", k)
		}
	}
	for _, k := range []string{"ice-options", "sendonly", "recvonly", "inactive"} {
		if v, ok := md.Attribute(k); ok {
			t.Errorf("a=%s:%s", k, v)
		}
	}
	if !isICEChars(leg.ice.localUfrag, 4) || !isICEChars(leg.ice.localPwd, 22) {
		t.Errorf("our credentials %q %q are not RFC 8839 ice-chars", leg.ice.localUfrag, leg.ice.localPwd)
	}
	var rtpmaps, fmtps, fingerprints, cands, ssrcs []string
	for _, a := range md.Attributes {
		switch a.Key {
		case "rtpmap":
			rtpmaps = append(rtpmaps, a.Value)
		case "fmtp":
			fmtps = append(fmtps, a.Value)
		case "fingerprint":
			fingerprints = append(fingerprints, a.Value)
		case "candidate":
			cands = append(cands, a.Value)
		case "ssrc":
			ssrcs = append(ssrcs, a.Value)
		}
	}
	if strings.Join(rtpmaps, "|") != "111 opus/48000/2|126 telephone-event/8000" {
		t.Errorf("rtpmaps %q", rtpmaps)
	}
	if len(fmtps) == 0 || fmtps[0] != "111 minptime=10;useinbandfec=1" {
		t.Errorf("fmtps %q", fmtps)
	}
	if len(fingerprints) != 1 || !strings.HasPrefix(fingerprints[0], "sha-256 ") {
		t.Errorf("fingerprints %q, want exactly one sha-256", fingerprints)
	}
	wantCand := fmt.Sprintf("127.0.0.1 %d typ host", m.sockets[0].local.Port())
	if len(cands) != 1 || !strings.HasSuffix(cands[0], wantCand) {
		t.Errorf("candidates %q, want one host candidate ending %q", cands, wantCand)
	}
	s := strconv.FormatUint(uint64(leg.SSRC()), 10)
	for _, v := range ssrcs {
		if !strings.HasPrefix(v, s+" ") {
			t.Errorf("a=ssrc:%s is not the leg's SSRC %s", v, s)
		}
	}
	if len(ssrcs) == 0 || !strings.HasPrefix(ssrcs[0], s+" cname:") {
		t.Errorf("ssrcs %q, want the leg's with a cname", ssrcs)
	}
	// Before the answer the leg says what it offered, and is neither up
	// nor failed.
	if leg.OpusPayloadType() != 111 || leg.DTMFPayloadType() != 126 || leg.Err() != nil {
		t.Errorf("before the answer: opus %d, dtmf %d, err %v", leg.OpusPayloadType(), leg.DTMFPayloadType(), leg.Err())
	}
	select {
	case <-leg.Connected():
		t.Error("connected before the answer")
	case <-leg.Failed():
		t.Error("failed before the answer")
	default:
	}

	// pion takes it as a remote offer and answers with both codecs.
	pc, _ := pionCaller(t, false)
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeOffer, SDP: o}); err != nil {
		t.Fatalf("pion refuses our offer: %v\n%s", err, o)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatalf("pion cannot answer our offer: %v", err)
	}
	for _, s := range []string{"a=rtpmap:111 opus/48000/2", "a=rtpmap:126 telephone-event/8000", "a=mid:0"} {
		if !strings.Contains(ans.SDP, s) {
			t.Errorf("pion's answer lacks %q:\n%s", s, ans.SDP)
		}
	}
}

// pionAnswer gives pc our leg's offer, sets pion's answer (all candidates
// in: gathering waited for) on the leg and waits until the leg is
// connected.
func pionAnswer(t *testing.T, leg *Leg, pc *pionwebrtc.PeerConnection) string {
	t.Helper()
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeOffer, SDP: leg.OfferSDP()}); err != nil {
		t.Fatalf("pion takes our offer: %v\n%s", err, leg.OfferSDP())
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		t.Fatal("pion gathered no candidates in 5 s")
	}
	answer := pc.LocalDescription().SDP
	start := time.Now()
	if err := leg.SetAnswer(answer); err != nil {
		t.Fatalf("SetAnswer(pion's answer): %v\n%s", err, answer)
	}
	select {
	case <-leg.Connected():
		t.Logf("connected %v after the answer", time.Since(start).Round(time.Millisecond))
	case <-leg.Failed():
		t.Fatalf("leg failed: %v", leg.Err())
	case <-time.After(10 * time.Second):
		t.Fatal("leg not connected 10 s after the answer")
	}
	return answer
}

// Our offer answered by pion/webrtc: ICE-lite like Meta, answering
// a=setup:active (we are the DTLS server) and a=setup:passive (we are the
// client), and a full ICE agent like a browser. We control ICE in every
// case (RFC 8445 §6.1.1), the DTLS roles follow the answer (RFC 5763 §5),
// telephone-event 126 is negotiated, and media flows both ways: pion's
// Opus reaches ReadPacket, our Opus and telephone-event reach pion on our
// one SSRC.
func TestOfferWithPion(t *testing.T) {
	for _, c := range []struct {
		name string
		lite bool
		role pionwebrtc.DTLSRole // pion's as answerer; 0: its default
		want string              // the answer's a=setup
	}{
		{"ice-lite answerer, setup active (Meta-like)", true, pionwebrtc.DTLSRoleClient, "active"},
		{"ice-lite answerer, setup passive", true, pionwebrtc.DTLSRoleServer, "passive"},
		{"full ICE answerer (browser-like)", false, 0, "active"},
		{"full ICE answerer, setup passive", false, pionwebrtc.DTLSRoleServer, "passive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newLoopbackMedia(t)
			var tweaks []func(*pionwebrtc.SettingEngine)
			if c.role != 0 {
				tweaks = append(tweaks, func(se *pionwebrtc.SettingEngine) {
					if err := se.SetAnsweringDTLSRole(c.role); err != nil {
						t.Fatal(err)
					}
				})
			}
			pc, track := pionCallerPT(t, c.lite, metaOpusPT, metaDTMFPT, tweaks...)
			got := pionReceived(pc)
			leg := offerLeg(t, m)
			answer := pionAnswer(t, leg, pc)

			if !strings.Contains(answer, "a=setup:"+c.want+"\r\n") || strings.Contains(answer, "a=ice-lite") != c.lite {
				t.Fatalf("pion's answer is not setup:%s with ice-lite %v:\n%s", c.want, c.lite, answer)
			}
			if leg.dtlsClient != (c.want == "passive") {
				t.Errorf("DTLS client = %v against an answer with setup:%s", leg.dtlsClient, c.want)
			}
			if !leg.ice.isControlling() {
				t.Error("the offerer is not controlling")
			}
			if r := pc.SCTP().Transport().ICETransport().Role(); r != pionwebrtc.ICERoleControlled {
				t.Errorf("pion's ICE role %v, want controlled", r)
			}
			if leg.OpusPayloadType() != metaOpusPT || leg.DTMFPayloadType() != metaDTMFPT {
				t.Fatalf("negotiated opus %d, dtmf %d", leg.OpusPayloadType(), leg.DTMFPayloadType())
			}
			if leg.AnswerSDP() != "" {
				t.Error("an offered leg has an answer of its own")
			}
			mediaBothWays(t, leg, track, got)
			if err := leg.SetAnswer(answer); !errors.Is(err, ErrAnswerSet) {
				t.Errorf("a second SetAnswer: %v, want ErrAnswerSet", err)
			}
			select {
			case <-leg.Failed():
				t.Fatalf("leg failed: %v", leg.Err())
			default:
			}
			leg.Close()
			if _, err := leg.ReadPacket(make([]byte, 1500)); !errors.Is(err, ErrLegClosed) {
				t.Errorf("read after close: %v", err)
			}
		})
	}
}

// As DTLS server (the answer is active) the leg checks the client's
// certificate against the answer's fingerprint (RFC 8122 §5): pion's
// answer with another fingerprint fails the leg, never connects it.
func TestOfferDTLSServerChecksFingerprint(t *testing.T) {
	m := newLoopbackMedia(t)
	pc, _ := pionCallerPT(t, true, metaOpusPT, metaDTMFPT, func(se *pionwebrtc.SettingEngine) {
		if err := se.SetAnsweringDTLSRole(pionwebrtc.DTLSRoleClient); err != nil {
			t.Fatal(err)
		}
	})
	leg := offerLeg(t, m)
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeOffer, SDP: leg.OfferSDP()}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		t.Fatal("pion gathered no candidates in 5 s")
	}
	answer := pc.LocalDescription().SDP
	i := strings.Index(answer, "a=fingerprint:sha-256 ")
	if i < 0 || !strings.Contains(answer, "a=setup:active") {
		t.Fatalf("pion's answer:\n%s", answer)
	}
	i += len("a=fingerprint:sha-256 ")
	forged := answer[:i] + strings.Repeat("AB:", 31) + "AB" + answer[i+95:]
	if err := leg.SetAnswer(forged); err != nil {
		t.Fatalf("%v\n%s", err, forged)
	}
	select {
	case <-leg.Failed():
		if !strings.Contains(leg.Err().Error(), "fingerprint") {
			t.Errorf("failed with %v, want the fingerprint mismatch", leg.Err())
		}
	case <-leg.Connected():
		t.Fatal("connected to a peer whose certificate is not the answer's")
	case <-time.After(10 * time.Second):
		t.Fatal("leg neither failed nor connected in 10 s")
	}
}

// The offered leg sends nothing and answers no check before its answer (a
// full answerer's early checks are dropped; it retries them, RFC 8445
// §6.1.4.2); once the answer is set it controls and nominates (§8.1.1),
// answers the peer's checks, and takes the DTLS role the answer gives it:
// the client sends its ClientHello, the server waits for one.
func TestOfferSendsNothingBeforeAnswer(t *testing.T) {
	for _, setup := range []string{"passive", "active"} {
		t.Run("answer "+setup, func(t *testing.T) {
			m := newLoopbackMedia(t)
			peer := newICEPeer(t, nil)
			leg := offerLeg(t, m)
			local := m.sockets[0].local

			// A full answerer's check (controlled, RFC 8445 §6.1.1).
			tx := peer.checkRole(local, leg.ice.localUfrag, leg.ice.localPwd, false, 7, false)
			if resp, ok := peer.response(tx, 300*time.Millisecond); ok {
				t.Fatalf("a check before the answer was answered: %v", resp)
			}
			if n := peer.checks.Load(); n != 0 {
				t.Fatalf("the leg sent %d checks before its answer", n)
			}

			peer.autoAnswer.Store(true)
			if err := leg.SetAnswer(testAnswer(true, setup, peerUfrag, peerPwd, peer.addr)); err != nil {
				t.Fatal(err)
			}
			c, _ := peer.nextCheck(2 * time.Second)
			checkAttrs(t, c, leg, true)
			waitFor(t, 2*time.Second, "no pair selected", func() bool {
				r, ok := selectedRemote(leg)
				return ok && r == peer.addr
			})
			if peer.nominations.Load() == 0 {
				t.Error("the pair was selected without our nomination")
			}
			tx = peer.checkRole(local, leg.ice.localUfrag, leg.ice.localPwd, false, 7, false)
			if resp, ok := peer.response(tx, 2*time.Second); !ok || resp.Type != stun.BindingSuccess {
				t.Fatalf("the peer's check after the answer: %v (answered %v)", resp, ok)
			}
			if setup == "passive" {
				waitFor(t, 3*time.Second, "no ClientHello from the leg as DTLS client", func() bool { return peer.dtls.Load() > 0 })
			} else {
				time.Sleep(300 * time.Millisecond)
				if n := peer.dtls.Load(); n != 0 {
					t.Errorf("the leg as DTLS server sent %d records unasked", n)
				}
			}
		})
	}
}

// Answers that break the offer/answer rules or our offer are refused with
// an error that says why, and fail the leg with it; a good answer in
// other shapes is taken.
func TestSetAnswerRefusals(t *testing.T) {
	peerAddr := netip.MustParseAddrPort("127.0.0.1:9")
	good := testAnswer(true, "active", peerUfrag, peerPwd, peerAddr)
	cases := []struct {
		name, from, to, want string
	}{
		{"setup actpass", "a=setup:active", "a=setup:actpass", `a=setup:"actpass"`},
		{"setup holdconn", "a=setup:active", "a=setup:holdconn", "must choose active or passive"},
		{"no setup", "a=setup:active\r\n", "", "no a=setup"},
		{"no fingerprint", "a=fingerprint:", "a=x-fingerprint:", "no a=fingerprint"},
		{"sha-1 fingerprint", "a=fingerprint:sha-256", "a=fingerprint:sha-1", "not sha-256"},
		{"no opus", "opus/48000/2", "speex/16000", "without mapping it to opus"},
		{"opus on a payload type not offered", "m=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\n", "m=audio 9 UDP/TLS/RTP/SAVPF 109 126\r\n", `payload type "109"`},
		{"opus renumbered", ":111 ", ":109 ", "without mapping it to opus"},
		{"telephone-event not offered", "111 126\r\n", "111 101\r\n", `payload type "101"`},
		{"telephone-event renumbered", "111 126\r\n", "111 101\r\n", "not have"},
		{"an extra format", "111 126\r\n", "111 126 0\r\n", `payload type "0"`},
		{"offered telephone-event number as another codec", "a=rtpmap:126 telephone-event/8000", "a=rtpmap:126 G722/8000", "without mapping it to telephone-event"},
		{"no m-line", "m=audio", "m=audio", "no audio m-line"}, // cut below
		{"two m-lines", "a=ssrc:", "a=x:\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ssrc:", "2 m-lines"},
		{"two audio m-lines", "a=ssrc:", "a=x:\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:", "2 m-lines"},
		{"m-line rejected", "m=audio 9 ", "m=audio 0 ", "port 0"},
		{"another mid", "a=mid:0", "a=mid:1", "not the offer's"},
		{"plain RTP", "UDP/TLS/RTP/SAVPF", "RTP/AVP", "not DTLS-SRTP"},
		{"no ufrag", "a=ice-ufrag:", "a=x-ufrag:", "ICE credentials"},
		{"CR in ufrag", "a=ice-ufrag:" + peerUfrag, "a=ice-ufrag:peer\rUfrag", "ice-chars"},
		{"tab in pwd", "a=ice-pwd:" + peerPwd, "a=ice-pwd:peerPass\tword0123456789abc", "ice-chars"},
		{"short pwd", "a=ice-pwd:" + peerPwd, "a=ice-pwd:peerPassword", "ice-chars"},
		{"NUL in mid", "a=mid:0", "a=mid:\x000", "token"},
		{"control in proto", "UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SA\x0bVPF", "answer: sdp: invalid"}, // refused by pion/sdp
		{"no candidate", "a=candidate:", "a=x-candidate:", "no UDP candidate"},
		{"IPv6 candidate only", "127.0.0.1 9 typ", "::1 9 typ", "address family"},
		{"not SDP", good, "hello", "answer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := strings.Replace(good, c.from, c.to, 1)
			switch c.name {
			case "telephone-event renumbered":
				text = strings.Replace(text, ":126 ", ":101 ", 1)
			case "no m-line":
				text = good[:strings.Index(good, "m=audio")]
			}
			if text == good && c.name != "no m-line" {
				t.Fatalf("%q is not in the answer", c.from)
			}
			m := newLoopbackMedia(t)
			leg := offerLeg(t, m)
			err := leg.SetAnswer(text)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "webrtc: set answer: ") {
				t.Fatalf("SetAnswer: %v, want an error saying %q\n%s", err, c.want, text)
			}
			t.Log(err)
			select {
			case <-leg.Failed():
				if leg.Err() == nil || leg.Err().Error() != err.Error() {
					t.Errorf("failed with %v, want %v", leg.Err(), err)
				}
			default:
				t.Error("a refused answer left the leg waiting")
			}
			if m.mux.legByUfrag(leg.ice.localUfrag) != nil {
				t.Error("a refused answer made the leg reachable")
			}
			if err := leg.SetAnswer(good); !errors.Is(err, ErrAnswerSet) {
				t.Errorf("SetAnswer after a refused answer: %v, want ErrAnswerSet", err)
			}
		})
	}
}

// Good answers in other shapes: no telephone-event (DTMFPayloadType 0),
// telephone-event with its channel count (RFC 4733), an rtpmap of a format
// the m-line does not list (ignored), LF line ends and session-level
// credentials and fingerprint (Meta's SDP comes from JSON), no mid.
func TestSetAnswerAccepts(t *testing.T) {
	peerAddr := netip.MustParseAddrPort("127.0.0.1:9")
	good := testAnswer(true, "passive", peerUfrag, peerPwd, peerAddr)
	fp := "a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB\r\n"
	for _, c := range []struct {
		name   string
		text   string
		dtmfPT uint8
		lite   bool
	}{
		{"as is", good, 126, true},
		{"no telephone-event", strings.NewReplacer("111 126\r\n", "111\r\n", "a=rtpmap:126 telephone-event/8000\r\n", "").Replace(good), 0, true},
		{"telephone-event not listed", strings.Replace(good, "111 126\r\n", "111\r\n", 1), 0, true},
		{"telephone-event/8000/1", strings.Replace(good, "telephone-event/8000", "telephone-event/8000/1", 1), 126, true},
		{"LF line ends", strings.ReplaceAll(good, "\r\n", "\n"), 126, true},
		{"session-level fingerprint", strings.Replace(strings.Replace(good, fp, "", 1), "t=0 0\r\n", "t=0 0\r\n"+fp, 1), 126, true},
		{"no mid", strings.Replace(good, "a=mid:0\r\n", "", 1), 126, true},
		{"full ICE", testAnswer(false, "active", peerUfrag, peerPwd, peerAddr), 126, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newLoopbackMedia(t)
			leg := offerLeg(t, m)
			if err := leg.SetAnswer(c.text); err != nil {
				t.Fatalf("%v\n%s", err, c.text)
			}
			if leg.OpusPayloadType() != 111 || leg.DTMFPayloadType() != c.dtmfPT {
				t.Errorf("opus %d, dtmf %d; want 111, %d", leg.OpusPayloadType(), leg.DTMFPayloadType(), c.dtmfPT)
			}
			if !leg.ice.isControlling() || leg.remote.Load().lite != c.lite {
				t.Errorf("controlling %v against a lite=%v answer", leg.ice.isControlling(), c.lite)
			}
			if m.mux.legByUfrag(leg.ice.localUfrag) != leg {
				t.Error("the answered leg is not reachable by its ufrag")
			}
		})
	}
}

// SetAnswer is taken once: again it returns ErrAnswerSet; after Close
// ErrLegClosed; on a leg that answered an offer, an error.
func TestSetAnswerOnce(t *testing.T) {
	m := newLoopbackMedia(t)
	answer := testAnswer(true, "active", peerUfrag, peerPwd, netip.MustParseAddrPort("127.0.0.1:9"))

	leg := offerLeg(t, m)
	if err := leg.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	if err := leg.SetAnswer(answer); !errors.Is(err, ErrAnswerSet) {
		t.Errorf("second SetAnswer: %v", err)
	}
	leg.Close()
	if err := leg.SetAnswer(answer); err == nil {
		t.Error("SetAnswer after Close succeeded")
	}

	closed := offerLeg(t, m)
	closed.Close()
	if err := closed.SetAnswer(answer); !errors.Is(err, ErrLegClosed) {
		t.Errorf("SetAnswer after Close: %v, want ErrLegClosed", err)
	}
	if m.mux.legByUfrag(closed.ice.localUfrag) != nil {
		t.Error("a closed leg became reachable")
	}

	answering := answerOffer(t, m, testOffer(true, peerUfrag, peerPwd, netip.MustParseAddrPort("127.0.0.1:9")))
	if err := answering.SetAnswer(answer); err == nil || errors.Is(err, ErrAnswerSet) {
		t.Errorf("SetAnswer on an answering leg: %v", err)
	}
	if answering.OfferSDP() != "" {
		t.Error("an answering leg has an offer")
	}
}

// openFDs counts this process's open files (Linux).
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(entries)
}

// noLeaks fails the test unless the goroutines and open files are back to
// at most goroutines and fds within a few seconds.
func noLeaks(t *testing.T, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g <= goroutines && f <= fds {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("left behind: %d goroutines (was %d), %d open files (was %d)\n%s", g, goroutines, f, fds, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An offered leg closed unanswered, after a refused answer, or after its
// answer while ICE runs, leaves no goroutine, open file or table entry
// behind.
func TestOfferLegCloseNoLeaks(t *testing.T) {
	m := newLoopbackMedia(t)
	peer := newICEPeer(t, nil) // answers nothing: ICE keeps checking until Close
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	for _, c := range []struct {
		name   string
		answer string
	}{
		{"never answered", ""},
		{"refused answer", testAnswer(true, "actpass", peerUfrag, peerPwd, peer.addr)},
		{"answered, ICE running", testAnswer(true, "active", peerUfrag, peerPwd, peer.addr)},
	} {
		leg, err := m.Offer(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.answer != "" {
			err := leg.SetAnswer(c.answer)
			if (err == nil) != strings.Contains(c.answer, "a=setup:active") {
				t.Fatalf("%s: SetAnswer: %v", c.name, err)
			}
			if err == nil {
				peer.nextCheck(2 * time.Second) // ICE is running
				if runtime.NumGoroutine() <= goroutines {
					t.Fatalf("%s: no goroutine runs ICE", c.name)
				}
			}
		}
		if err := leg.Close(); err != nil {
			t.Fatalf("%s: close: %v", c.name, err)
		}
		select {
		case <-leg.Failed():
			if !errors.Is(leg.Err(), ErrLegClosed) && c.name != "refused answer" {
				t.Errorf("%s: failed with %v", c.name, leg.Err())
			}
		default:
			t.Errorf("%s: Failed not closed after Close", c.name)
		}
		if m.mux.legByUfrag(leg.ice.localUfrag) != nil {
			t.Errorf("%s: the ufrag still routes", c.name)
		}
		m.mux.mu.Lock()
		txs := len(m.mux.byTx)
		m.mux.mu.Unlock()
		if txs != 0 {
			t.Errorf("%s: %d transactions still route", c.name, txs)
		}
		noLeaks(t, goroutines, fds)
	}
}

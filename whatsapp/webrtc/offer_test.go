package webrtc

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

// Meta's offer as it comes (Meta, WhatsApp Cloud API Calling, the connect
// webhook's example): session-level
// ice-lite, a ufrag with '/', IPv4 and IPv6 host candidates.
func TestParseMetaOffer(t *testing.T) {
	b, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	for name, sdp := range map[string]string{"crlf": string(b), "lf": strings.ReplaceAll(string(b), "\r\n", "\n")} {
		o, err := parseOffer(sdp)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !o.lite || o.mid != "audio" || o.chosen.PayloadType != 111 || o.dtmfPT != 126 {
			t.Errorf("%s: lite %v mid %q opus %d dtmf %d", name, o.lite, o.mid, o.chosen.PayloadType, o.dtmfPT)
		}
		if !strings.Contains(o.ufrag, "/") || o.pwd == "" || len(o.fingerprint) != 32 {
			t.Errorf("%s: ufrag %q pwd %q fingerprint %d bytes", name, o.ufrag, o.pwd, len(o.fingerprint))
		}
		if len(o.candidates) != 2 || !o.candidates[0].Addr().Is6() { // IPv6 has the higher priority
			t.Errorf("%s: candidates %v, want IPv6 then IPv4", name, o.candidates)
		}
	}
}

// A browser's offer: full ICE, session-level fingerprint, other payload
// numbers, an mDNS and a TCP candidate (not usable), a second m-line.
func TestParseBrowserOffer(t *testing.T) {
	sdp := strings.Join([]string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
		"a=fingerprint:sha-256 " + strings.Repeat("AB:", 31) + "AB",
		"a=group:BUNDLE 0 1",
		"m=audio 9 UDP/TLS/RTP/SAVPF 109 9 101",
		"c=IN IP4 0.0.0.0",
		"a=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host",
		"a=candidate:2 1 udp 2122262783 1f2e.local 50001 typ host",
		"a=candidate:3 1 tcp 1518280447 192.0.2.7 9 typ host tcptype active",
		"a=candidate:4 2 udp 2122260222 192.0.2.7 50002 typ host",
		"a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijklmn",
		"a=setup:actpass", "a=mid:0", "a=rtcp-mux",
		"a=rtpmap:109 opus/48000/2", "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/8000",
		"m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=rtpmap:96 VP8/90000",
	}, "\r\n") + "\r\n"
	o, err := parseOffer(sdp)
	if err != nil {
		t.Fatal(err)
	}
	if o.lite || o.chosen.PayloadType != 109 || o.dtmfPT != 101 || o.mid != "0" {
		t.Errorf("lite %v opus %d dtmf %d mid %q", o.lite, o.chosen.PayloadType, o.dtmfPT, o.mid)
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:50000")}; len(o.candidates) != 1 || o.candidates[0] != want[0] {
		t.Errorf("candidates %v, want %v", o.candidates, want)
	}
	if len(o.others) != 1 || !strings.HasPrefix(o.others[0], "video 0 ") {
		t.Errorf("other m-lines %q", o.others)
	}
}

func TestParseOfferRefusals(t *testing.T) {
	b, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	meta := string(b)
	cases := map[string]struct{ from, to, want string }{
		"no audio":       {"m=audio", "m=video", "no audio m-line"},
		"plain RTP":      {"UDP/TLS/RTP/SAVPF", "RTP/AVP", "not DTLS-SRTP"},
		"no opus":        {"opus/48000/2", "speex/16000", "no opus"},
		"no ufrag":       {"a=ice-ufrag:", "a=x-ufrag:", "ICE credentials"},
		"no fingerprint": {"a=fingerprint:", "a=x-fingerprint:", "no a=fingerprint"},
		"sha-1":          {"a=fingerprint:sha-256", "a=fingerprint:sha-1", "not sha-256"},
		"setup active":   {"a=setup:actpass", "a=setup:active", "setup:active"},
		"no candidates":  {"a=candidate:", "a=x-candidate:", "no UDP candidate"},
	}
	for name, c := range cases {
		sdp := strings.ReplaceAll(meta, c.from, c.to)
		if name == "no candidates" {
			sdp = strings.ReplaceAll(sdp, "c=IN IP4 203.0.113.60", "c=IN IP4 0.0.0.0")
		}
		_, err := parseOffer(sdp)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to say %q", name, err, c.want)
		}
	}
}

// Found by fuzzing: a CR inside the offer's a=mid was copied into our
// answer ("a=group:BUNDLE \r\r\n"). Every offer token that reaches the
// answer or our STUN checks (mid, proto, the other m-lines, ICE
// credentials) must be an RFC 8866 token / RFC 8839 ice-chars, else the
// offer is refused.
func TestParseOfferRefusesControlCharsInTokens(t *testing.T) {
	b, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	meta := string(b)
	video := "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n"
	const last = "msid:WhatsAppMedia WhatsAppTrack1\r\n"
	cases := map[string]struct{ from, to string }{
		"CR in mid":          {"a=mid:audio", "a=mid:au\rdio"},
		"NUL in mid":         {"a=mid:audio", "a=mid:au\x00dio"},
		"blank in mid":       {"a=mid:audio", "a=mid:au dio"},
		"separator in mid":   {"a=mid:audio", "a=mid:au:dio"},
		"CR in ufrag":        {"a=ice-ufrag:6k2qP1R6kBfI/2", "a=ice-ufrag:6k2q\rP1R6kBfI/2"},
		"short ufrag":        {"a=ice-ufrag:6k2qP1R6kBfI/2", "a=ice-ufrag:6k2"},
		"tab in pwd":         {"a=ice-pwd:Xq3vJp9mKc0sLw7aT4dHe2Nb", "a=ice-pwd:Xq3vJp9mKc0s\tLw7aT4dHe2Nb"},
		"short pwd":          {"a=ice-pwd:Xq3vJp9mKc0sLw7aT4dHe2Nb", "a=ice-pwd:Xq3vJp9mKc"},
		"CR in proto":        {"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SA\x0bVPF"},
		"CR in other format": {last, last + strings.Replace(video, "96", "9\x016", 1)},
		"control in media":   {last, last + strings.Replace(video, "video", "vi\x7fdeo", 1)},
	}
	for name, c := range cases {
		sdp := strings.Replace(meta, c.from, c.to, 1)
		if sdp == meta {
			t.Fatalf("%s: %q not in the offer", name, c.from)
		}
		if o, err := parseOffer(sdp); err == nil {
			t.Errorf("%s: accepted (mid %q, ufrag %q, proto %q, others %q)", name, o.mid, o.ufrag, o.proto, o.others)
		}
	}
	// A clean second m-line is still accepted, and answered rejected.
	o, err := parseOffer(strings.Replace(meta, last, last+video, 1))
	if err != nil || len(o.others) != 1 {
		t.Fatalf("offer with a video m-line: %v", err)
	}
	m := newLoopbackMedia(t)
	if a := m.buildAnswer(o, "abcd", strings.Repeat("p", 22), 1); !answerIsClean(a) {
		t.Errorf("answer has control characters:\n%q", a)
	}
}

// answerIsClean reports whether every line of a ends with CRLF and no other
// control character is in it.
func answerIsClean(a string) bool {
	if !strings.HasSuffix(a, "\r\n") {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(a, "\r\n"), "\r\n") {
		for i := 0; i < len(l); i++ {
			if l[i] < 0x20 || l[i] == 0x7f {
				return false
			}
		}
	}
	return true
}

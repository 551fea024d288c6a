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
		if !o.lite || o.mid != "audio" || o.opusPT != 111 || o.dtmfPT != 126 {
			t.Errorf("%s: lite %v mid %q opus %d dtmf %d", name, o.lite, o.mid, o.opusPT, o.dtmfPT)
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
	if o.lite || o.opusPT != 109 || o.dtmfPT != 101 || o.mid != "0" {
		t.Errorf("lite %v opus %d dtmf %d mid %q", o.lite, o.opusPT, o.dtmfPT, o.mid)
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

package webrtc

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// buildAnswer writes the SDP answer (JSEP §5.3, RFC 8839, RFC 8842): one
// audio m-line with the offer's mid and payload numbers for Opus and
// telephone-event/8000, our ICE credentials and every host candidate (the
// Cloud API does not trickle, so a=end-of-candidates), a=setup:active (the
// gateway is the DTLS client, as Meta expects), one sha-256 fingerprint,
// rtcp-mux, BUNDLE, and the one SSRC we send with. The m/c lines carry the
// first candidate (RFC 8839 §4.2.1.2's default candidate).
func (m *Media) buildAnswer(o *offer, ufrag, pwd string, ssrc uint32) string {
	var b strings.Builder
	line := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
		b.WriteString("\r\n")
	}
	fam := func(ip string) string {
		if strings.Contains(ip, ":") {
			return "IP6"
		}
		return "IP4"
	}
	def := m.advertised[0].String()
	defPort := strconv.Itoa(int(m.sockets[0].local.Port()))
	pts := strconv.Itoa(int(o.opusPT))
	if o.dtmfPT != 0 {
		pts += " " + strconv.Itoa(int(o.dtmfPT))
	}
	line("v=0")
	line("o=- ", strconv.FormatUint(rand.Uint64N(1<<62), 10), " 2 IN IP4 127.0.0.1")
	line("s=-")
	line("t=0 0")
	if o.mid != "" {
		line("a=group:BUNDLE ", o.mid)
	}
	line("a=msid-semantic: WMS wagateway")
	line("m=audio ", defPort, " ", o.proto, " ", pts)
	line("c=IN ", fam(def), " ", def)
	line("a=rtcp:", defPort, " IN ", fam(def), " ", def)
	for i, ip := range m.advertised {
		// Host candidates (RFC 8445 §5.1.2.1, local preference by listing
		// order).
		prio := uint32(hostTypePreference)<<24 | uint32(65535-i)<<8 | 255
		line("a=candidate:", strconv.Itoa(i+1), " 1 udp ", strconv.FormatUint(uint64(prio), 10), " ",
			ip.String(), " ", strconv.Itoa(int(m.sockets[i].local.Port())), " typ host")
	}
	line("a=end-of-candidates")
	line("a=ice-ufrag:", ufrag)
	line("a=ice-pwd:", pwd)
	line("a=fingerprint:", m.cert.Fingerprint)
	line("a=setup:active")
	if o.mid != "" {
		line("a=mid:", o.mid)
	}
	line("a=sendrecv")
	line("a=rtcp-mux")
	line("a=rtpmap:", strconv.Itoa(int(o.opusPT)), " opus/48000/2")
	line("a=fmtp:", strconv.Itoa(int(o.opusPT)), " ", opusFmtp)
	if o.dtmfPT != 0 {
		line("a=rtpmap:", strconv.Itoa(int(o.dtmfPT)), " telephone-event/8000")
		line("a=fmtp:", strconv.Itoa(int(o.dtmfPT)), " 0-16")
	}
	s := strconv.FormatUint(uint64(ssrc), 10)
	line("a=ssrc:", s, " cname:wagateway")
	line("a=ssrc:", s, " msid:wagateway audio")
	for _, other := range o.others {
		line("m=", other) // not taken (RFC 3264 §6: port 0)
	}
	return b.String()
}

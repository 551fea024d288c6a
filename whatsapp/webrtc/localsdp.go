package webrtc

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// localDesc is what our SDP says, offer or answer alike: one audio m-line
// with Opus or G.711 (+ telephone-event), our ICE credentials and host
// candidates, our one fingerprint and SSRC.
type localDesc struct {
	mid        string // "" for none (an offer without one: no BUNDLE either)
	proto      string
	codecs     []Codec // the audio codecs, in our order of preference; an answer's one
	dtmfPT     uint8   // 0: no telephone-event
	ptime      int     // a=ptime in ms (RFC 8866 §6.4); 0: none written
	setup      string
	ufrag, pwd string
	ssrc       uint32
	rejected   []string // m-lines written after the audio one, as they are (an answer's port-0 ones)
}

// writeSDP writes d (JSEP §5.2-5.3, RFC 8839, RFC 8842): one audio m-line
// with d's codecs and telephone-event/8000, our ICE credentials and every host
// candidate (the Cloud API does not trickle, so a=end-of-candidates,
// RFC 8838 §8.2), d.setup, our one sha-256 fingerprint (RFC 8122),
// rtcp-mux, BUNDLE (RFC 8843), and the one SSRC we send with. The m/c
// lines carry the first candidate (RFC 8839 §4.2.1.2's default candidate).
// Every value written is ours or an RFC 8866 token the parser checked.
func (m *Media) writeSDP(d *localDesc) string {
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
	dtmf := strconv.Itoa(int(d.dtmfPT))
	pts := make([]string, 0, len(d.codecs)+1)
	for _, c := range d.codecs {
		pts = append(pts, strconv.Itoa(int(c.PayloadType)))
	}
	if d.dtmfPT != 0 {
		pts = append(pts, dtmf)
	}
	line("v=0")
	line("o=- ", strconv.FormatUint(rand.Uint64N(1<<62), 10), " 2 IN IP4 127.0.0.1")
	line("s=-")
	line("t=0 0")
	if d.mid != "" {
		line("a=group:BUNDLE ", d.mid)
	}
	line("a=msid-semantic: WMS wagateway")
	line("m=audio ", defPort, " ", d.proto, " ", strings.Join(pts, " "))
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
	line("a=ice-ufrag:", d.ufrag)
	line("a=ice-pwd:", d.pwd)
	line("a=fingerprint:", m.cert.Fingerprint)
	line("a=setup:", d.setup)
	if d.mid != "" {
		line("a=mid:", d.mid)
	}
	line("a=sendrecv")
	line("a=rtcp-mux")
	for i, c := range d.codecs {
		// Static G.711 numbers too: JSEP writes every rtpmap (RFC 8829
		// §5.2.1), and Meta's offers do.
		line("a=rtpmap:", pts[i], " ", c.rtpmap())
		if c.Name == CodecOpus {
			line("a=fmtp:", pts[i], " ", opusFmtp)
		}
	}
	if d.dtmfPT != 0 {
		line("a=rtpmap:", dtmf, " telephone-event/8000")
		line("a=fmtp:", dtmf, " 0-16") // DTMF 0-9, *, #, A-D and flash (RFC 4733 §3.2)
	}
	if d.ptime != 0 {
		line("a=ptime:", strconv.Itoa(d.ptime))
	}
	s := strconv.FormatUint(uint64(d.ssrc), 10)
	line("a=ssrc:", s, " cname:wagateway")
	line("a=ssrc:", s, " msid:wagateway audio")
	for _, other := range d.rejected {
		line("m=", other)
	}
	return b.String()
}

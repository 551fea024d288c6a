package webrtc

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/wagateway/wagateway/whatsapp/webrtc/dtlssrtp"
)

// remoteDesc is what the gateway needs of the peer's SDP: a caller's offer
// (Meta's: one audio m-line, ICE-lite, host candidates, DTLS actpass, Opus
// and telephone-event, PCMU and PCMA too when the number's settings ask
// for them; Meta, WhatsApp Cloud API Calling, SDP offer; or a browser's),
// or the answer to our own offer (offering.go). The payload types are the
// peer's own: an offer's are kept by our answer, an answer's must be among
// those we offered.
type remoteDesc struct {
	mid         string
	ufrag, pwd  string
	fingerprint []byte // sha-256 of the peer's DTLS certificate
	lite        bool   // a=ice-lite: the peer only answers checks, so we control (RFC 8445 §6.1.1)
	setup       string // a=setup of the audio m-line, else of the session; "" if none
	candidates  []netip.AddrPort
	port        int      // the audio m-line's port (0: rejected, RFC 3264 §6)
	formats     []string // the audio m-line's formats
	audio       []Codec  // its known audio codecs (codec.go), in its order
	dtmfPT      uint8    // telephone-event/8000; 0 if none
	// chosen is the audio codec the leg runs: the one our answer keeps
	// (Opus unless asked), or the one the answer to our offer picked.
	chosen Codec
	proto  string
	others []string // the m-lines after the audio one, answered rejected (port 0)
}

// parseOffer reads a caller's offer: a remote description with Opus (the
// codec every call can fall back to) whose a=setup lets us be the DTLS
// client.
func parseOffer(text string) (*remoteDesc, error) {
	o, err := parseRemote(text, "offer")
	if err != nil {
		return nil, err
	}
	opus, ok := pick(o.audio, CodecOpus)
	if !ok {
		return nil, errors.New("offer has no opus/48000/2")
	}
	o.chosen = opus // unless AnswerWith asks for another
	if o.setup == "active" {
		// The caller wants to be the DTLS client; Meta offers actpass and
		// expects the business to be the client.
		return nil, errors.New("offer: a=setup:active (the caller as DTLS client) is not supported")
	}
	return o, nil
}

// parseRemote reads the peer's SDP, an offer or an answer (kind, for the
// errors), with pion/sdp (the project's SDP parser). The first audio
// m-line is the call's; its attributes win over the session's. Every value
// that reaches our SDP or our STUN checks is checked to be a token.
func parseRemote(text, kind string) (*remoteDesc, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	o := &remoteDesc{}
	var md *sdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media == "audio" && md == nil {
			md = m
			continue
		}
		// Every other m-line is answered rejected (port 0), with its media,
		// proto and formats copied: each must be a token (RFC 8866 §9:
		// media, proto = token *("/" token), fmt = token).
		if !isToken(m.MediaName.Media) || !allTokens(m.MediaName.Protos) || !allTokens(m.MediaName.Formats) {
			return nil, fmt.Errorf("%s: an m-line's media, proto or formats are not RFC 8866 tokens: %q", kind, m.MediaName.String())
		}
		o.others = append(o.others, m.MediaName.Media+" 0 "+strings.Join(m.MediaName.Protos, "/")+" "+strings.Join(m.MediaName.Formats, " "))
	}
	if md == nil {
		return nil, fmt.Errorf("%s has no audio m-line", kind)
	}
	// attr is an attribute of the audio m-line, else of the session.
	attr := func(key string) (string, bool) {
		if v, ok := md.Attribute(key); ok {
			return v, true
		}
		return sd.Attribute(key)
	}
	if !allTokens(md.MediaName.Protos) {
		return nil, fmt.Errorf("%s: audio proto %q is not RFC 8866 tokens", kind, strings.Join(md.MediaName.Protos, "/"))
	}
	o.proto = strings.Join(md.MediaName.Protos, "/")
	if !strings.Contains(o.proto, "SAVP") {
		return nil, fmt.Errorf("%s: audio is %s, not DTLS-SRTP", kind, o.proto)
	}
	o.port = md.MediaName.Port.Value
	o.formats = md.MediaName.Formats
	o.setup, _ = attr("setup")
	_, o.lite = sd.Attribute("ice-lite")
	o.mid, _ = md.Attribute("mid")
	// The mid is copied into our answer (a=mid, a=group:BUNDLE): an
	// identification-tag is a token (RFC 5888 §4, RFC 8866 §9), so no
	// blank or control character reaches the answer.
	if o.mid != "" && !isToken(o.mid) {
		return nil, fmt.Errorf("%s: a=mid %q is not an RFC 8866 token", kind, o.mid)
	}
	o.ufrag, _ = attr("ice-ufrag")
	o.pwd, _ = attr("ice-pwd")
	if o.ufrag == "" || o.pwd == "" {
		return nil, fmt.Errorf("%s has no ICE credentials (a=ice-ufrag, a=ice-pwd)", kind)
	}
	// RFC 8839 §5.4: ufrag 4-256 and pwd 22-256 ice-chars (ALPHA / DIGIT /
	// "+" / "/"). They go into every STUN check's USERNAME and key.
	if !isICEChars(o.ufrag, 4) || !isICEChars(o.pwd, 22) {
		return nil, fmt.Errorf("%s: a=ice-ufrag or a=ice-pwd is not 4 or 22 to 256 ice-chars (RFC 8839 §5.4)", kind)
	}
	fp, _ := attr("fingerprint")
	if fp == "" {
		return nil, fmt.Errorf("%s has no a=fingerprint", kind)
	}
	var err error
	if o.fingerprint, err = dtlssrtp.ParseFingerprint(fp); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	var cands []candidate
	rtpmaps := map[uint8]string{}
	for _, a := range md.Attributes {
		switch a.Key {
		case "candidate":
			if c, ok := parseCandidate(a.Value); ok {
				cands = append(cands, c)
			}
		case "rtpmap":
			pt, enc, _ := strings.Cut(a.Value, " ")
			n, err := strconv.ParseUint(pt, 10, 8)
			if err != nil || n > 127 {
				continue
			}
			// <encoding name>/<clock rate>[/<channels>] (RFC 8866 §6.6):
			// matched by name and rate, the channel count optional where
			// its default is right (telephone-event/8000/1 is
			// telephone-event/8000; Opus is always /2, RFC 7587 §7).
			// Audio codecs: codecName, for the formats listed (audioCodecs).
			enc = strings.ToLower(enc)
			if _, dup := rtpmaps[uint8(n)]; !dup {
				rtpmaps[uint8(n)] = enc
			}
			name, rest, _ := strings.Cut(enc, "/")
			rate, channels, _ := strings.Cut(rest, "/")
			if name == "telephone-event" && rate == "8000" && (channels == "1" || channels == "") && o.dtmfPT == 0 {
				o.dtmfPT = uint8(n)
			}
		}
	}
	o.audio = audioCodecs(o.formats, rtpmaps) // an offer must have Opus, an answer one of ours: their parsers check
	// Highest priority first (RFC 8445 §6.1.2.6); the m/c-line address only
	// when there is no candidate at all.
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].priority > cands[j].priority })
	for _, c := range cands {
		o.candidates = append(o.candidates, c.addr)
	}
	if len(o.candidates) == 0 {
		if a, ok := defaultAddr(&sd, md); ok {
			o.candidates = append(o.candidates, a)
		}
	}
	if len(o.candidates) == 0 {
		return nil, fmt.Errorf("%s has no UDP candidate we can use", kind)
	}
	return o, nil
}

// defaultAddr is the m-line's port at its c-line's address (media level,
// else session level), when both are usable.
func defaultAddr(sd *sdp.SessionDescription, md *sdp.MediaDescription) (netip.AddrPort, bool) {
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	port := md.MediaName.Port.Value
	if ci == nil || ci.Address == nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil || ip.IsUnspecified() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

type candidate struct {
	addr     netip.AddrPort
	priority uint32
}

// parseCandidate reads "foundation component transport priority address
// port typ type …" (RFC 8839 §5.1). Only RTP-component UDP candidates with
// an IP literal are used (Meta sends host candidates; mDNS names and TCP
// are not).
func parseCandidate(v string) (candidate, bool) {
	f := strings.Fields(v)
	if len(f) < 8 || f[1] != "1" || !strings.EqualFold(f[2], "udp") {
		return candidate{}, false
	}
	prio, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return candidate{}, false
	}
	ip, err := netip.ParseAddr(f[4])
	if err != nil {
		return candidate{}, false
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil || port == 0 {
		return candidate{}, false
	}
	return candidate{addr: netip.AddrPortFrom(ip.Unmap(), uint16(port)), priority: uint32(prio)}, true
}

// isToken reports whether s is an RFC 8866 §9 token: one or more of
// %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
// (visible ASCII but for the separators; no blank, no control character).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0x21, c >= 0x23 && c <= 0x27, c == 0x2a, c == 0x2b, c == 0x2d, c == 0x2e,
			c >= 0x30 && c <= 0x39, c >= 0x41 && c <= 0x5a, c >= 0x5e && c <= 0x7e:
		default:
			return false
		}
	}
	return true
}

func allTokens(ss []string) bool {
	if len(ss) == 0 {
		return false
	}
	for _, s := range ss {
		if !isToken(s) {
			return false
		}
	}
	return true
}

// isICEChars reports whether s is min to 256 ice-chars (RFC 8839 §5.4:
// ALPHA / DIGIT / "+" / "/").
func isICEChars(s string, min int) bool {
	if len(s) < min || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

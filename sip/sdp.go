package sip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Codec is one negotiated RTP payload format.
type Codec struct {
	Name        string
	PayloadType uint8
	ClockRate   uint32
}

// DefaultDTMFPayloadType is the payload type we offer for telephone-event/8000
// (RFC 4733).
const DefaultDTMFPayloadType = 101

// knownCodecs are the audio codecs the gateway can handle, with the payload
// types we offer them on. G.722's RTP clock is 8000 although it samples at
// 16 kHz (RFC 3551 §4.5.2); Opus is always 48000/2 in SDP (RFC 7587 §7).
var knownCodecs = [...]Codec{
	{Name: "PCMU", PayloadType: 0, ClockRate: 8000},
	{Name: "PCMA", PayloadType: 8, ClockRate: 8000},
	{Name: "G722", PayloadType: 9, ClockRate: 8000},
	{Name: "opus", PayloadType: 111, ClockRate: 48000},
}

// staticPT maps the static payload types we support to their codec when an
// SDP omits a=rtpmap for them (RFC 3551 §6). PT 13 (CN) is deliberately
// absent: comfort noise is never an audio codec.
func staticPT(pt uint8) (Codec, bool) {
	switch pt {
	case 0, 8, 9:
		for _, c := range knownCodecs {
			if c.PayloadType == pt {
				return c, true
			}
		}
	}
	return Codec{}, false
}

// LookupCodec finds a supported codec by name, case-insensitively, with the
// payload type we would offer it on.
func LookupCodec(name string) (Codec, bool) {
	for _, c := range knownCodecs {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Codec{}, false
}

// SDPParams describe our side of a session for BuildSDP.
type SDPParams struct {
	SessionID uint64 // o= sess-id; keep it for the dialog's lifetime
	Version   uint64 // o= sess-version; bump it on every new offer or answer (RFC 3264 §8)
	Host      string // address for o= and c= (IP; IPv6 gets IP6)
	Port      int    // RTP port
	Codecs    []Codec
	// DTMFPayloadType adds telephone-event/8000 on this PT; 0 = none.
	DTMFPayloadType uint8
	Direction       string // sendrecv (default), sendonly, recvonly, inactive
	PTime           int    // a=ptime; 0 = 20
}

// BuildSDP writes an audio-only RTP/AVP session description. It is built by
// hand rather than with pion's JSEP helpers, which add a media-level
// c=IN IP4 0.0.0.0 that a SIP peer reads as "no media" (RFC 3264 §8.4).
func BuildSDP(p SDPParams) []byte {
	addrType := "IP4"
	if ip := net.ParseIP(p.Host); ip != nil && ip.To4() == nil {
		addrType = "IP6"
	}
	dir := p.Direction
	if dir == "" {
		dir = "sendrecv"
	}
	ptime := p.PTime
	if ptime <= 0 {
		ptime = 20
	}
	var b strings.Builder
	b.Grow(384)
	b.WriteString("v=0\r\n")
	fmt.Fprintf(&b, "o=wagateway %d %d IN %s %s\r\n", p.SessionID, p.Version, addrType, p.Host)
	b.WriteString("s=wagateway\r\n")
	fmt.Fprintf(&b, "c=IN %s %s\r\n", addrType, p.Host)
	b.WriteString("t=0 0\r\n")
	fmt.Fprintf(&b, "m=audio %d RTP/AVP", p.Port)
	for _, c := range p.Codecs {
		fmt.Fprintf(&b, " %d", c.PayloadType)
	}
	if p.DTMFPayloadType != 0 {
		fmt.Fprintf(&b, " %d", p.DTMFPayloadType)
	}
	b.WriteString("\r\n")
	for _, c := range p.Codecs {
		if strings.EqualFold(c.Name, "opus") {
			// RFC 7587 §7: always opus/48000/2, whatever is actually sent.
			fmt.Fprintf(&b, "a=rtpmap:%d opus/48000/2\r\n", c.PayloadType)
			fmt.Fprintf(&b, "a=fmtp:%d useinbandfec=1\r\n", c.PayloadType)
			continue
		}
		fmt.Fprintf(&b, "a=rtpmap:%d %s/%d\r\n", c.PayloadType, c.Name, c.ClockRate)
	}
	if p.DTMFPayloadType != 0 {
		fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\n", p.DTMFPayloadType)
		fmt.Fprintf(&b, "a=fmtp:%d 0-16\r\n", p.DTMFPayloadType)
	}
	fmt.Fprintf(&b, "a=ptime:%d\r\n", ptime)
	b.WriteString("a=" + dir + "\r\n")
	return []byte(b.String())
}

// MediaInfo is what we use of a peer's SDP: the first active audio stream.
type MediaInfo struct {
	// Addr is where the peer wants RTP (c= at media level, else session
	// level, and the m= port). Its IP may be private or unspecified
	// (0.0.0.0 = old-style hold, RFC 3264 §8.4): symmetric RTP corrects the
	// former once packets arrive.
	Addr *net.UDPAddr
	// Codecs are the audio codecs of the m= line in its order, with the
	// peer's payload types; comfort noise and telephone-event are left out,
	// as are formats we do not know.
	Codecs []Codec
	// DTMFPayloadType is the peer's telephone-event PT (clock 8000 preferred), 0 if none.
	DTMFPayloadType uint8
	// DTMFClockRate is that telephone-event's clock rate (RFC 4733 §7.1.1), 0 if none.
	DTMFClockRate uint32
	Direction     string // sendrecv, sendonly, recvonly or inactive
	SessionID     uint64 // o= sess-id
	Version       uint64 // o= sess-version
}

// ParseSDP reads a peer's session description (offer or answer) with
// pion/sdp and returns its first audio stream with a non-zero port.
func ParseSDP(body []byte) (*MediaInfo, error) {
	if len(body) == 0 {
		return nil, errors.New("sdp: empty body")
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("sdp: parse: %w", err)
	}
	var md *sdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m == nil || m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		md = m
		break
	}
	if md == nil {
		return nil, errors.New("sdp: no active audio stream")
	}
	proto := strings.Join(md.MediaName.Protos, "/")
	if proto != "RTP/AVP" && proto != "RTP/AVPF" {
		return nil, fmt.Errorf("sdp: audio transport %q is not RTP/AVP", proto)
	}
	port := md.MediaName.Port.Value
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("sdp: audio port %d out of range", port)
	}
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return nil, errors.New("sdp: no connection address (c=) for audio")
	}
	host := ci.Address.Address
	if i := strings.IndexByte(host, '/'); i >= 0 { // multicast TTL suffix
		host = host[:i]
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("sdp: connection address %q is not an IP address", host)
	}

	info := &MediaInfo{
		Addr:      &net.UDPAddr{IP: ip, Port: port},
		Direction: direction(sd.Attributes, md.Attributes),
		SessionID: sd.Origin.SessionID,
		Version:   sd.Origin.SessionVersion,
	}
	maps := rtpmaps(md.Attributes)
	for _, f := range md.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			continue // not an RTP payload type; ignore rather than fail
		}
		pt := uint8(n)
		m, ok := maps[pt]
		if !ok {
			if c, ok := staticPT(pt); ok {
				info.Codecs = append(info.Codecs, c)
			}
			continue
		}
		switch {
		case strings.EqualFold(m.name, "telephone-event"):
			// Prefer the 8000 Hz clock when several are offered.
			if info.DTMFPayloadType == 0 || (m.rate == 8000 && maps[info.DTMFPayloadType].rate != 8000) {
				info.DTMFPayloadType = pt
			}
		case strings.EqualFold(m.name, "CN"):
			// Comfort noise (RFC 3389) is never chosen as the audio codec.
		default:
			known, ok := LookupCodec(m.name)
			if !ok || known.ClockRate != m.rate {
				continue
			}
			info.Codecs = append(info.Codecs, Codec{Name: known.Name, PayloadType: pt, ClockRate: m.rate})
		}
	}
	if info.DTMFPayloadType != 0 {
		info.DTMFClockRate = maps[info.DTMFPayloadType].rate
	}
	return info, nil
}

type rtpmap struct {
	name string
	rate uint32
}

// rtpmaps reads "a=rtpmap:<pt> <name>/<rate>[/<channels>]" attributes.
func rtpmaps(attrs []sdp.Attribute) map[uint8]rtpmap {
	out := make(map[uint8]rtpmap, 4)
	for _, a := range attrs {
		if a.Key != "rtpmap" {
			continue
		}
		ptStr, enc, ok := strings.Cut(strings.TrimSpace(a.Value), " ")
		if !ok {
			continue
		}
		pt, err := strconv.ParseUint(ptStr, 10, 8)
		if err != nil || pt > 127 {
			continue
		}
		parts := strings.Split(strings.TrimSpace(enc), "/")
		if len(parts) < 2 || parts[0] == "" {
			continue
		}
		rate, err := strconv.ParseUint(parts[1], 10, 32)
		if err != nil {
			continue
		}
		out[uint8(pt)] = rtpmap{name: parts[0], rate: uint32(rate)}
	}
	return out
}

// direction returns the media direction: media level wins over session
// level, default sendrecv (RFC 4566 §6).
func direction(session, media []sdp.Attribute) string {
	find := func(attrs []sdp.Attribute) string {
		for _, a := range attrs {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				return a.Key
			}
		}
		return ""
	}
	if d := find(media); d != "" {
		return d
	}
	if d := find(session); d != "" {
		return d
	}
	return "sendrecv"
}

// NegotiateCodec picks the first codec of the peer's list (its preference
// order) that we also have, matched by name and clock rate. The result keeps
// the peer's payload type: that is the one to send with (RFC 3264 §6.1).
func NegotiateCodec(ours, theirs []Codec) (Codec, bool) {
	for _, t := range theirs {
		for _, o := range ours {
			if strings.EqualFold(o.Name, t.Name) && o.ClockRate == t.ClockRate {
				return t, true
			}
		}
	}
	return Codec{}, false
}

// SupportedCodecs returns every codec this package can negotiate.
func SupportedCodecs() []Codec {
	out := make([]Codec, len(knownCodecs))
	copy(out, knownCodecs[:])
	return out
}

// AnswerDirection is the direction to answer an offer's direction with
// (RFC 3264 §6.1).
func AnswerDirection(offered string) string {
	switch offered {
	case "sendonly":
		return "recvonly"
	case "recvonly":
		return "sendonly"
	case "inactive":
		return "inactive"
	}
	return "sendrecv"
}

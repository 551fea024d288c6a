package webrtc

import (
	"fmt"
	"strconv"
	"strings"
)

// The leg's audio codecs. Meta offers Opus and telephone-event, and PCMU
// and PCMA beside them when the business number's calling settings list
// them in audio.additional_codecs (Meta, Cloud API Calling, call
// settings). A leg runs one audio codec, Opus by default: the answer (or
// our offer) may pick G.711 instead, so a PBX that speaks it is bridged
// without transcoding.

// Codec is an audio codec of the leg's m-line: its SDP encoding name
// (CodecOpus, CodecPCMU or CodecPCMA), payload type and RTP clock rate.
type Codec struct {
	Name        string
	PayloadType uint8
	ClockRate   uint32
}

// The codec names, as SDP writes them (RFC 7587 §7, RFC 3551 §6).
const (
	CodecOpus = "opus"
	CodecPCMU = "PCMU"
	CodecPCMA = "PCMA"
)

// Static payload types of G.711 (RFC 3551 §6, Table 4).
const (
	staticPCMU = 0
	staticPCMA = 8
)

// IsG711 reports whether c is PCMU or PCMA.
func (c Codec) IsG711() bool { return c.Name == CodecPCMU || c.Name == CodecPCMA }

func (c Codec) String() string {
	return c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10) + " pt " + strconv.Itoa(int(c.PayloadType))
}

// rtpmap is the codec's a=rtpmap value after the payload type.
func (c Codec) rtpmap() string {
	if c.Name == CodecOpus {
		return "opus/48000/2" // always two channels (RFC 7587 §7)
	}
	return c.Name + "/8000"
}

// codecName is the name of a known audio codec for an a=rtpmap encoding
// (name/rate[/channels], lower-cased), "" for any other: matched by name
// and rate, the channel count optional where its default is right
// (RFC 8866 §6.6; Opus is always /2, RFC 7587 §7).
func codecName(enc string) string {
	name, rest, _ := strings.Cut(enc, "/")
	rate, channels, _ := strings.Cut(rest, "/")
	switch {
	case name == "opus" && rate == "48000" && (channels == "2" || channels == ""):
		return CodecOpus
	case name == "pcmu" && rate == "8000" && (channels == "1" || channels == ""):
		return CodecPCMU
	case name == "pcma" && rate == "8000" && (channels == "1" || channels == ""):
		return CodecPCMA
	}
	return ""
}

// audioCodecs lists the known audio codecs of an m-line's formats in their
// order (the offerer's preference, RFC 3264 §5.1), from its rtpmaps (pt →
// encoding, lower-cased) or, without one, G.711's static numbers (RFC
// 3551 §6). An rtpmap of a format not listed says nothing (RFC 8866 §6.6).
func audioCodecs(formats []string, rtpmaps map[uint8]string) []Codec {
	var out []Codec
	for _, f := range formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			continue
		}
		pt := uint8(n)
		name := ""
		if enc, ok := rtpmaps[pt]; ok {
			name = codecName(enc)
		} else if pt == staticPCMU {
			name = CodecPCMU
		} else if pt == staticPCMA {
			name = CodecPCMA
		}
		if name == "" {
			continue
		}
		c := Codec{Name: name, PayloadType: pt, ClockRate: 8000}
		if name == CodecOpus {
			c.ClockRate = 48000
		}
		out = append(out, c)
	}
	return out
}

// pick is the first codec of cs named name ("" for none).
func pick(cs []Codec, name string) (Codec, bool) {
	for _, c := range cs {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Codec{}, false
}

// OfferedCodecs reads a caller's offer (as Answer would) and returns its
// audio codecs the leg can run, in the offer's order: Opus, and PCMU or
// PCMA when Meta offers them.
func OfferedCodecs(offerSDP string) ([]Codec, error) {
	o, err := parseOffer(offerSDP)
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	return append([]Codec(nil), o.audio...), nil
}

package rtpbridge

import (
	"fmt"
	"strings"

	"github.com/gotranspile/g722"

	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// sipCodec is a SIP-side codec the bridge transcodes to and from Opus, or
// passes through untouched: Opus to an Opus WhatsApp leg, G.711 to a
// WhatsApp leg of the same law (whatsappcodec.go).
//
// G.711 is stateless. G.722 is ADPCM with state on each side: every
// sipCodec value has its own encoder (used only by the WhatsApp reader,
// toward the PBX) and decoder (used only by the SIP reader), so one value
// serves both directions without sharing state between goroutines.
type sipCodec struct {
	name        string // lower case, for the chain: "pcmu"
	pt          uint8  // as negotiated
	clock       uint32 // RTP clock rate
	pcmRate     int    // rate of the PCM it carries; Opus runs at it (no resampler); 0 for Opus
	passthrough bool   // the WhatsApp leg's codec too (newSetup): no codec work, headers only
	encode      func(pcm []int16, out []byte)
	decode      func(in []byte, pcm []int16)
	reset       func() // forget the decoder's state (a new stream from the PBX); nil if stateless
	perBytes    int    // samples per payload byte (1 for G.711, 2 for G.722)
}

// isOpus reports whether the PBX speaks Opus.
func (c *sipCodec) isOpus() bool { return c.name == "opus" }

// samplesIn is how many PCM samples a payload of n bytes decodes to.
func (c *sipCodec) samplesIn(n int) int { return n * c.perBytes }

// bytesFor is the payload size of n PCM samples.
func (c *sipCodec) bytesFor(n int) int { return n / c.perBytes }

// tsUnits is how many RTP timestamp units n PCM samples last. G.722 is the
// odd one: 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2).
func (c *sipCodec) tsUnits(n int) uint32 { return uint32(int64(n) * int64(c.clock) / int64(c.pcmRate)) }

// Payload types with a fixed meaning on the SIP side.
const (
	ptComfortNoise = 13 // RFC 3389, static
)

// supportedCodecs lists what New accepts, for its error message.
const supportedCodecs = "PCMU, PCMA, G722, opus"

// g722Rate is G.722's bit rate: 64 kbit/s, the only one RTP carries
// (RFC 3551 §4.5.2), 4 bits per 16 kHz sample.
const g722Rate = g722.Rate64000

func lookupCodec(c Codec) (*sipCodec, error) {
	if c.PayloadType > 127 {
		return nil, fmt.Errorf("rtpbridge: SIP codec %s: payload type %d is not within 0-127", c.Name, c.PayloadType)
	}
	var sc sipCodec
	switch strings.ToUpper(c.Name) {
	case "PCMU":
		sc = sipCodec{name: "pcmu", encode: g711.EncodeUlaw, decode: g711.DecodeUlaw, clock: 8000, pcmRate: 8000, perBytes: 1}
	case "PCMA":
		sc = sipCodec{name: "pcma", encode: g711.EncodeAlaw, decode: g711.DecodeAlaw, clock: 8000, pcmRate: 8000, perBytes: 1}
	case "G722":
		enc := g722.NewEncoder(g722Rate, 0)
		dec := g722.NewDecoder(g722Rate, 0)
		fresh := *dec
		sc = sipCodec{
			name:     "g722",
			encode:   func(pcm []int16, out []byte) { enc.Encode(out, pcm) },
			decode:   func(in []byte, pcm []int16) { dec.Decode(pcm, in) },
			reset:    func() { *dec = fresh },
			clock:    8000, // RFC 3551 §4.5.2: the clock says 8000 although the audio is 16 kHz
			pcmRate:  16000,
			perBytes: 2,
		}
	case "OPUS":
		sc = sipCodec{name: "opus", clock: opusClock}
	default:
		return nil, fmt.Errorf("rtpbridge: SIP codec %q is not supported (supported: %s)", c.Name, supportedCodecs)
	}
	sc.pt = c.PayloadType
	if c.ClockRate != 0 && c.ClockRate != sc.clock {
		return nil, fmt.Errorf("rtpbridge: SIP codec %s at %d Hz: only %d Hz is supported", c.Name, c.ClockRate, sc.clock)
	}
	return &sc, nil
}

package rtpbridge

import (
	"fmt"
	"strings"

	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// sipCodec is a SIP-side codec the bridge transcodes to and from Opus.
type sipCodec struct {
	name     string // lower case, for the chain: "pcmu"
	pt       uint8  // as negotiated
	clock    uint32 // RTP clock rate
	pcmRate  int    // rate of the PCM it carries; Opus runs at it (no resampler)
	encode   func(pcm []int16, out []byte)
	decode   func(in []byte, pcm []int16)
	perBytes int // samples per payload byte (1 for G.711)
}

// samplesIn is how many PCM samples a payload of n bytes decodes to.
func (c *sipCodec) samplesIn(n int) int { return n * c.perBytes }

// bytesFor is the payload size of n PCM samples.
func (c *sipCodec) bytesFor(n int) int { return n / c.perBytes }

// Payload types with a fixed meaning on the SIP side.
const (
	ptComfortNoise = 13 // RFC 3389, static
)

// supportedCodecs lists what New accepts, for its error message.
const supportedCodecs = "PCMU, PCMA"

func lookupCodec(c Codec) (*sipCodec, error) {
	if c.PayloadType > 127 {
		return nil, fmt.Errorf("rtpbridge: SIP codec %s: payload type %d is not within 0-127", c.Name, c.PayloadType)
	}
	var sc sipCodec
	switch strings.ToUpper(c.Name) {
	case "PCMU":
		sc = sipCodec{name: "pcmu", encode: g711.EncodeUlaw, decode: g711.DecodeUlaw}
	case "PCMA":
		sc = sipCodec{name: "pcma", encode: g711.EncodeAlaw, decode: g711.DecodeAlaw}
	default:
		return nil, fmt.Errorf("rtpbridge: SIP codec %q is not supported (supported: %s)", c.Name, supportedCodecs)
	}
	sc.pt, sc.clock, sc.pcmRate, sc.perBytes = c.PayloadType, 8000, 8000, 1
	if c.ClockRate != 0 && c.ClockRate != sc.clock {
		return nil, fmt.Errorf("rtpbridge: SIP codec %s at %d Hz: only %d Hz is supported", c.Name, c.ClockRate, sc.clock)
	}
	return &sc, nil
}

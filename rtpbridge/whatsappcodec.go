package rtpbridge

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// The WhatsApp leg's audio codec. Meta offers Opus, and PCMU and PCMA
// beside it when the business number's calling settings list them in
// audio.additional_codecs (Meta, Cloud API Calling, call settings). Opus
// is transcoded to the PBX's codec, or passed through to an Opus PBX; a
// G.711 leg is only ever passed through, to a PBX that negotiated the same
// codec: no codec work at all, and its RTP clock is 8 kHz (RFC 3551
// §4.5.14) where Opus's is 48 kHz (RFC 7587 §4.1).

// waCodec is the WhatsApp leg's codec as the bridge runs it.
type waCodec struct {
	name    string // lower case, as sipCodec names it: "opus", "pcmu", "pcma"
	pt      uint8
	clock   uint32 // RTP clock rate
	silence []byte // one 20 ms frame of silence: what the pacer sends while the PBX sends nothing
}

// G.711's silence bytes: the codes of linear 0 (ITU-T G.711; A-law with
// its even bits inverted).
const (
	ulawSilence = 0xFF
	alawSilence = 0xD5
)

// g711Frame20 is the bytes of 20 ms of G.711: one a sample at 8 kHz.
const g711Frame20 = 8000 * 20 / 1000

// newWACodec checks the WhatsApp leg's codec c (zero: Opus on opusPT) and
// its telephone-event payload type.
func newWACodec(c Codec, opusPT, dtmfPT uint8) (*waCodec, error) {
	switch name := strings.ToUpper(c.Name); name {
	case "", "OPUS":
		pt := opusPT
		if name != "" {
			pt = c.PayloadType
		}
		if err := checkWhatsAppPTs(pt, dtmfPT); err != nil {
			return nil, err
		}
		silence, err := opusSilence()
		if err != nil {
			return nil, err
		}
		return &waCodec{name: "opus", pt: pt, clock: opusClock, silence: silence}, nil
	case "PCMU", "PCMA":
		if c.ClockRate != 0 && c.ClockRate != 8000 {
			return nil, fmt.Errorf("rtpbridge: WhatsApp codec %s at %d Hz: G.711 runs at 8000 Hz", c.Name, c.ClockRate)
		}
		if opusPT != 0 {
			return nil, fmt.Errorf("rtpbridge: WhatsApp codec %s with WhatsAppOpusPT %d: the leg negotiated one audio codec", c.Name, opusPT)
		}
		if err := checkG711PTs(c.PayloadType, dtmfPT); err != nil {
			return nil, err
		}
		w := &waCodec{name: strings.ToLower(name), pt: c.PayloadType, clock: 8000}
		fill := byte(ulawSilence)
		if name == "PCMA" {
			fill = alawSilence
		}
		w.silence = bytes.Repeat([]byte{fill}, g711Frame20)
		return w, nil
	}
	return nil, fmt.Errorf("rtpbridge: WhatsApp codec %q is not opus, PCMU or PCMA", c.Name)
}

// checkG711PTs checks a G.711 leg's payload types: its own static one (0,
// 8) or a dynamic one its SDP mapped (RFC 3551 §3), and another for
// telephone-event.
func checkG711PTs(pt, dtmfPT uint8) error {
	switch {
	case pt > maxDynamicPT || pt != 0 && pt != 8 && pt < minDynamicPT:
		return fmt.Errorf("rtpbridge: WhatsApp G.711 payload type %d is neither static (0, 8) nor dynamic (%d-%d)", pt, minDynamicPT, maxDynamicPT)
	case dtmfPT != 0 && (dtmfPT < minDynamicPT || dtmfPT > maxDynamicPT):
		return fmt.Errorf("rtpbridge: WhatsApp telephone-event payload type %d is not dynamic (%d-%d)", dtmfPT, minDynamicPT, maxDynamicPT)
	case dtmfPT != 0 && dtmfPT == pt:
		return errors.New("rtpbridge: WhatsApp G.711 and telephone-event share a payload type")
	}
	return nil
}

// isOpus reports whether the leg runs Opus.
func (w *waCodec) isOpus() bool { return w.name == "opus" }

// units is how long payload lasts in w's clock units; ok is false for a
// payload that is empty or that no packet of w can be.
func (w *waCodec) units(payload []byte) (uint32, bool) { return payloadUnits(w.isOpus(), payload) }

// payloadUnits is how long a packet's payload lasts on its RTP clock: an
// Opus packet's samples at 48 kHz (its TOC says, RFC 6716 §3.1), or a
// G.711 payload's bytes (one per 8 kHz sample), up to maxOpusMs either way.
func payloadUnits(isOpus bool, payload []byte) (uint32, bool) {
	if len(payload) == 0 {
		return 0, false
	}
	if !isOpus {
		return uint32(len(payload)), len(payload) <= 8000*maxOpusMs/1000
	}
	n, err := opus.PacketSamples(payload, opusClock)
	if err != nil || n <= 0 || n > opusClock*maxOpusMs/1000 {
		return 0, false
	}
	return uint32(n), true
}

// passthroughWith reports whether the PBX's codec c is passed through to
// a WhatsApp leg of w: Opus to Opus, or the same G.711 law.
func (w *waCodec) passthroughWith(c *sipCodec) bool { return c.name == w.name }

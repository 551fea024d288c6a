package gateway

import (
	"fmt"

	"github.com/wagateway/wagateway/rtpbridge"
)

// dtmfPolicy is how digits cross to a trunk: its dtmf mode, and what caller
// digits do when the mode is rfc4733 but the PBX's answer has no
// telephone-event (RFC 4733 §2.5.1.1: no payload type, no events to send).
type dtmfPolicy struct {
	mode     rtpbridge.DTMFMode
	fallback rtpbridge.DTMFMode
	drop     bool // dtmf_fallback: none
}

func parseDTMFPolicy(mode, fallback string) (dtmfPolicy, error) {
	m, err := rtpbridge.ParseDTMFMode(mode)
	if err != nil {
		return dtmfPolicy{}, fmt.Errorf("dtmf: %w", err)
	}
	p := dtmfPolicy{mode: m}
	if fallback == "none" {
		p.drop = true
		return p, nil
	}
	if fallback == "" {
		fallback = "info"
	}
	if p.fallback, err = rtpbridge.ParseDTMFMode(fallback); err != nil || p.fallback == rtpbridge.DTMFModeRFC4733 {
		return dtmfPolicy{}, fmt.Errorf("dtmf_fallback: %q is not info, inband or none", fallback)
	}
	return p, nil
}

// forPBX is the mode a call uses once the PBX's SDP gave pbxDTMFPT (0:
// none), and whether it fell back.
func (p dtmfPolicy) forPBX(pbxDTMFPT uint8) (mode rtpbridge.DTMFMode, fellBack bool) {
	if p.mode != rtpbridge.DTMFModeRFC4733 || pbxDTMFPT != 0 || p.drop {
		return p.mode, false
	}
	return p.fallback, true
}

package rtpbridge

import (
	"fmt"
	"strings"
)

// DTMFMode says how digits cross to the PBX (Config.DTMFMode). The zero
// value is DTMFModeRFC4733.
type DTMFMode uint8

const (
	// DTMFModeRFC4733 sends WhatsApp's digits as RFC 4733 telephone-events
	// if the PBX negotiated telephone-event, else only reports them through
	// OnDigit.
	DTMFModeRFC4733 DTMFMode = iota
	// DTMFModeInfo only reports WhatsApp's digits through OnDigit: the
	// gateway sends SIP INFO, and hands the PBX's INFO digits to
	// SendDigitToWhatsApp.
	DTMFModeInfo
	// DTMFModeInband plays WhatsApp's digits as tone pairs in the audio;
	// the PBX's audio is searched for tones, which go to WhatsApp as
	// events.
	DTMFModeInband
)

var dtmfModeNames = [...]string{DTMFModeRFC4733: "rfc4733", DTMFModeInfo: "info", DTMFModeInband: "inband"}

// String is the mode's configuration name: "rfc4733", "info" or "inband".
func (m DTMFMode) String() string {
	if int(m) < len(dtmfModeNames) {
		return dtmfModeNames[m]
	}
	return fmt.Sprintf("DTMFMode(%d)", uint8(m))
}

// valid reports whether m is one of the modes.
func (m DTMFMode) valid() bool { return int(m) < len(dtmfModeNames) }

// ParseDTMFMode reads a mode by its name (case-insensitive); "" is the
// default, DTMFModeRFC4733.
func ParseDTMFMode(s string) (DTMFMode, error) {
	if s == "" {
		return DTMFModeRFC4733, nil
	}
	for m, name := range dtmfModeNames {
		if strings.EqualFold(s, name) {
			return DTMFMode(m), nil
		}
	}
	return 0, fmt.Errorf("rtpbridge: DTMF mode %q is not one of %s", s, strings.Join(dtmfModeNames[:], ", "))
}

// MarshalText writes the mode's name (JSON, YAML and the like).
func (m DTMFMode) MarshalText() ([]byte, error) {
	if !m.valid() {
		return nil, fmt.Errorf("rtpbridge: %v is not a DTMF mode", m)
	}
	return []byte(m.String()), nil
}

// UnmarshalText reads a mode as ParseDTMFMode does.
func (m *DTMFMode) UnmarshalText(b []byte) error {
	v, err := ParseDTMFMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

package wasim

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// DTMF as WhatsApp sends it (Meta, WhatsApp Cloud API Calling): RFC 4733
// telephone-event on PT 126 in the same SSRC and sequence space as Opus, the
// event timestamp on the 48 kHz audio clock, durations in 8 kHz units.
const (
	dtmfEventFrames = 5  // event updates (100 ms at 20 ms frames)
	dtmfEndRepeats  = 3  // RFC 4733 §2.5.1.4: the end packet is sent three times
	dtmfGapFrames   = 3  // 60 ms of audio between digits
	dtmfVolume      = 10 // -10 dBm0
)

const dtmfDigits = "0123456789*#ABCD"

// dtmfEvent maps a digit to its RFC 4733 event code.
func dtmfEvent(d byte) (byte, bool) {
	i := strings.IndexByte(dtmfDigits, d)
	return byte(i), i >= 0
}

// validateDigits checks the digits a caller is asked to press.
func validateDigits(s string) error {
	for i := 0; i < len(s); i++ {
		if _, ok := dtmfEvent(s[i]); !ok {
			return fmt.Errorf("wasim: %q is not a DTMF digit (0-9 * # A-D)", s[i])
		}
	}
	return nil
}

// dtmfPlan says, frame by frame, whether the caller sends a DTMF packet in
// place of audio and which.
type dtmfPlan struct {
	digits  string
	start   int // frame number (1-based) of the first digit's first packet
	perTone int // frames one digit takes, with the gap after it
	units   int // one frame in 8 kHz duration units
}

func newDTMFPlan(digits string, after time.Duration, frame time.Duration) *dtmfPlan {
	if digits == "" {
		return nil
	}
	return &dtmfPlan{digits: digits, start: int(after/frame) + 1, perTone: dtmfEventFrames + dtmfEndRepeats + dtmfGapFrames,
		units: int(frame / (time.Second / 8000))}
}

// packet fills payload with the DTMF packet for frame n, if there is one,
// and says which frame of the event it is (0 = the first, with the marker).
func (p *dtmfPlan) packet(n int, payload []byte) (k int, ok bool) {
	if p == nil || n < p.start {
		return 0, false
	}
	i, k := (n-p.start)/p.perTone, (n-p.start)%p.perTone
	if i >= len(p.digits) || k >= dtmfEventFrames+dtmfEndRepeats {
		return 0, false
	}
	ev, _ := dtmfEvent(p.digits[i])
	dur := (k + 1) * p.units
	flags := byte(dtmfVolume)
	if k >= dtmfEventFrames {
		dur = dtmfEventFrames * p.units
		flags |= 0x80 // E bit
	}
	payload[0], payload[1] = ev, flags
	binary.BigEndian.PutUint16(payload[2:4], uint16(dur))
	return k, true
}

// dtmfReceiver turns received telephone-event packets into digits: a new
// event is a new event timestamp, whatever became of its first packets
// (RFC 4733: every packet of an event carries the event's timestamp, while
// the marker bit is on its first packet only, which may be lost).
type dtmfReceiver struct {
	seen   bool
	lastTS uint32
	digits []byte
}

func (r *dtmfReceiver) add(ts uint32, payload []byte) {
	if len(payload) < 4 || payload[0] >= byte(len(dtmfDigits)) {
		return
	}
	if r.seen && ts == r.lastTS {
		return
	}
	r.seen, r.lastTS = true, ts
	r.digits = append(r.digits, dtmfDigits[payload[0]])
}

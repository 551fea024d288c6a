package gateway

import (
	"sync/atomic"
	"time"
)

// pbxRTPWatch notices a PBX that stopped sending RTP: dead (killed,
// unplugged) or silent without saying so. A PBX that holds the call
// (a=sendonly, recvonly or inactive in its SDP, RFC 3264 §8.4) may send
// nothing, so the watch pauses while it holds. The call's goroutine asks
// silent() every few seconds with the bridge's count of the PBX's packets.
type pbxRTPWatch struct {
	timeout  time.Duration // 0: off
	held     atomic.Bool   // set from the SIP side on a re-INVITE
	lastSeen uint64        // packets from the PBX at the last progress
	since    time.Time     // the last progress, or the end of a hold
}

func newPBXRTPWatch(timeout time.Duration) *pbxRTPWatch {
	return &pbxRTPWatch{timeout: timeout}
}

// start begins the watch (the call is bridged).
func (w *pbxRTPWatch) start(now time.Time) { w.since = now }

// silent says whether the PBX sent nothing for the timeout, given how many
// packets it has sent so far.
func (w *pbxRTPWatch) silent(packetsIn uint64, now time.Time) bool {
	if w.timeout <= 0 {
		return false
	}
	if packetsIn != w.lastSeen || w.held.Load() {
		w.lastSeen, w.since = packetsIn, now
		return false
	}
	return now.Sub(w.since) >= w.timeout
}

// setHeld follows the PBX's direction: anything but sendrecv is a hold.
func (w *pbxRTPWatch) setHeld(direction string) {
	w.held.Store(direction != "" && direction != "sendrecv")
}

package rtpbridge

import (
	"math"
	"sync/atomic"
	"time"
)

// interarrivalJitter estimates the interarrival jitter of one input's audio
// packets (RFC 3550 §6.4.1, computed as in its appendix A.8, in floating
// point): for two packets i-1, i with RTP timestamps S and arrival times R,
// D = (R_i − R_{i−1}) − (S_i − S_{i−1}) in timestamp units, and
// J += (|D| − J)/16. Packets are taken in arrival order, before any
// reordering. One goroutine (the input's reader) calls observe; the
// estimate is published to an atomic for Stats.
type interarrivalJitter struct {
	clock       float64 // RTP clock rate of the audio measured, Hz
	have        bool    // a previous packet of this source is known
	ssrc        uint32
	lastTS      uint32
	lastArrival int64   // ns, the bridge's monotonic clock
	j           float64 // the estimate, RTP timestamp units

	out *atomic.Int64 // the estimate in ns
}

// jitterRestart is how far D may go (in seconds) before the packet is taken
// for a restart of the sender's timestamps rather than jitter.
const jitterRestart = 10

func newInterarrivalJitter(clock uint32, out *atomic.Int64) interarrivalJitter {
	return interarrivalJitter{clock: float64(clock), out: out}
}

// observe takes one audio packet stamped ts from ssrc, arrived at arrival
// (ns).
func (e *interarrivalJitter) observe(ts, ssrc uint32, arrival int64) {
	if !e.have || ssrc != e.ssrc {
		if e.have {
			// A new source: RFC 3550 keeps jitter per source, so the
			// estimate starts afresh (§6.4.1, A.8).
			e.j = 0
			e.publish()
		}
		e.have, e.ssrc, e.lastTS, e.lastArrival = true, ssrc, ts, arrival
		return
	}
	transit := float64(arrival-e.lastArrival) * e.clock / float64(time.Second)
	d := math.Abs(transit - float64(int32(ts-e.lastTS)))
	e.lastTS, e.lastArrival = ts, arrival
	if d > jitterRestart*e.clock {
		return // the sender restarted its timestamps: not jitter
	}
	e.j += (d - e.j) / 16
	e.publish()
}

// setClock follows a codec change (a re-INVITE): the next packet is the
// first of the new timestamps; the estimate, a time, carries over.
func (e *interarrivalJitter) setClock(clock uint32) {
	if c := float64(clock); c != e.clock {
		e.j = e.j * c / e.clock
		e.clock = c
	}
	e.have = false
}

func (e *interarrivalJitter) publish() {
	e.out.Store(int64(e.j / e.clock * float64(time.Second)))
}

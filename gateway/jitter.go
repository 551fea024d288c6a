package gateway

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"time"

	"github.com/wagateway/wagateway/rtpbridge"
)

// jitterMeter wraps a leg's packet reader and measures the interarrival
// jitter of its audio packets (RFC 3550 §6.4.1, A.8) as the bridge reads
// them. One goroutine reads; Jitter may be called from any. Per packet it
// costs a header parse and a clock read, and allocates nothing.
type jitterMeter struct {
	r     rtpbridge.PacketReader
	pt    uint8   // audio payload type measured; others (telephone-event, CN) are passed by
	clock float64 // RTP clock rate, Hz

	// A codec switch mid-call (retarget) hands the reader a new payload
	// type and clock; it takes them at its next packet.
	next    atomic.Uint64 // pt<<32 | clock rate
	changed atomic.Bool

	// reader goroutine only
	have        bool
	ssrc        uint32
	lastTS      uint32
	lastArrival time.Time
	j           float64 // RTP timestamp units

	jitterBits atomic.Uint64 // seconds, as float64 bits
}

func newJitterMeter(r rtpbridge.PacketReader, pt uint8, clockRate uint32) *jitterMeter {
	if clockRate == 0 {
		clockRate = 8000
	}
	return &jitterMeter{r: r, pt: pt, clock: float64(clockRate)}
}

// ReadPacket implements rtpbridge.PacketReader.
func (m *jitterMeter) ReadPacket(b []byte) (int, error) {
	n, err := m.r.ReadPacket(b)
	if m.changed.Load() && m.changed.CompareAndSwap(true, false) {
		v := m.next.Load()
		m.pt, m.clock, m.have = uint8(v>>32), float64(uint32(v)), false
	}
	if err == nil && n >= 12 && b[0]>>6 == 2 && b[1]&0x7f == m.pt {
		m.observe(binary.BigEndian.Uint32(b[4:8]), binary.BigEndian.Uint32(b[8:12]), time.Now())
	}
	return n, err
}

func (m *jitterMeter) observe(ts, ssrc uint32, now time.Time) {
	if !m.have || ssrc != m.ssrc {
		m.have, m.ssrc, m.lastTS, m.lastArrival = true, ssrc, ts, now
		return
	}
	arrival := now.Sub(m.lastArrival).Seconds() * m.clock
	d := math.Abs(arrival - float64(int32(ts-m.lastTS)))
	if d > 10*m.clock { // a stream restart, not jitter
		d = m.j
	}
	m.j += (d - m.j) / 16
	m.lastTS, m.lastArrival = ts, now
	m.jitterBits.Store(math.Float64bits(m.j / m.clock))
}

// Jitter is the current estimate.
func (m *jitterMeter) Jitter() time.Duration {
	if m == nil {
		return 0
	}
	return time.Duration(math.Float64frombits(m.jitterBits.Load()) * float64(time.Second))
}

// retarget makes the meter follow a new codec (payload type and clock).
func (m *jitterMeter) retarget(pt uint8, clockRate uint32) {
	if clockRate == 0 {
		clockRate = 8000
	}
	m.next.Store(uint64(pt)<<32 | uint64(clockRate))
	m.changed.Store(true)
}

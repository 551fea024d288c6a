package webrtc

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// RTCP toward WhatsApp: a sender report with one reception report block
// (RFC 3550 §6.4.1), built in place and sent by the writer every
// rtcpEvery packets (about 5 s, RFC 3550 §6.2's minimum interval), the
// first one half a second in.
const (
	rtcpFirst = 25
	rtcpEvery = 250
	srLen     = 28
	rrBlock   = 24
)

// ntpEpochOffset is the seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// rtcpSender keeps what a report says. The sending half is the writer's;
// the receiving half is written by the reader and read through atomics.
type rtcpSender struct {
	ssrc  uint32
	buf   [srLen + rrBlock]byte
	count int

	// The writer's.
	packets, octets uint32
	lastTS          uint32
	prevExpected    uint32
	prevReceived    uint32

	// The reader's: the sender's SSRC, the first and the extended highest
	// sequence number, packets received.
	rSSRC    uint32
	baseSeq  uint32
	extMax   uint32
	started  bool
	rxSSRC   atomic.Uint32
	rxBase   atomic.Uint32
	rxExtMax atomic.Uint32
	rxCount  atomic.Uint32
}

func (r *rtcpSender) init(ssrc uint32) { r.ssrc = ssrc }

// received notes one packet from WhatsApp (the reader).
func (r *rtcpSender) received(ssrc uint32, seq uint16) {
	if !r.started || ssrc != r.rSSRC {
		r.started, r.rSSRC = true, ssrc
		r.baseSeq, r.extMax = uint32(seq), uint32(seq)
		r.rxSSRC.Store(ssrc)
		r.rxBase.Store(r.baseSeq)
		r.rxExtMax.Store(r.extMax)
		r.rxCount.Store(0)
	}
	// The extended highest sequence number moves on with every packet
	// ahead of it, across wraps (RFC 3550 A.1).
	if d := seq - uint16(r.extMax); d != 0 && d < 0x8000 {
		r.extMax += uint32(d)
		r.rxExtMax.Store(r.extMax)
	}
	r.rxCount.Add(1)
}

// sent notes one packet sent; it says when a report is due.
func (r *rtcpSender) sent(h *rtp.Header, payload int) bool {
	r.packets++
	r.octets += uint32(payload)
	r.lastTS = h.Timestamp
	r.count++
	return r.count == rtcpFirst || r.count%rtcpEvery == 0
}

// report builds the sender report into the sender's buffer.
func (r *rtcpSender) report(now time.Time) []byte {
	b := r.buf[:]
	rc := 0
	ssrc := r.rxSSRC.Load()
	if ssrc != 0 {
		rc = 1
	}
	n := srLen + rc*rrBlock
	b[0] = 0x80 | byte(rc) // V=2, no padding
	b[1] = 200             // SR
	binary.BigEndian.PutUint16(b[2:], uint16(n/4-1))
	binary.BigEndian.PutUint32(b[4:], r.ssrc)
	sec := uint64(now.Unix()) + ntpEpochOffset
	frac := uint64(now.Nanosecond()) << 32 / 1e9
	binary.BigEndian.PutUint64(b[8:], sec<<32|frac)
	binary.BigEndian.PutUint32(b[16:], r.lastTS)
	binary.BigEndian.PutUint32(b[20:], r.packets)
	binary.BigEndian.PutUint32(b[24:], r.octets)
	if rc == 1 {
		ext, recv := r.rxExtMax.Load(), r.rxCount.Load()
		expected := ext - r.rxBase.Load() + 1
		lost := int64(expected) - int64(recv)
		lost = min(max(lost, -0x800000), 0x7fffff) // 24-bit signed
		ei, ri := expected-r.prevExpected, recv-r.prevReceived
		r.prevExpected, r.prevReceived = expected, recv
		var fraction byte
		if ei > 0 && ei > ri {
			fraction = byte((ei - ri) << 8 / ei)
		}
		rb := b[srLen:]
		binary.BigEndian.PutUint32(rb[0:], ssrc)
		binary.BigEndian.PutUint32(rb[4:], uint32(fraction)<<24|uint32(lost)&0xffffff)
		binary.BigEndian.PutUint32(rb[8:], ext)
		clear(rb[12:rrBlock]) // jitter, LSR, DLSR: not kept
	}
	return b[:n]
}

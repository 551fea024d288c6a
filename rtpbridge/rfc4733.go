package rtpbridge

import "encoding/binary"

// RFC 4733 telephone-events: the payload format, digits, and the receive
// side's bookkeeping of which event a packet belongs to.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// All packets of one event carry the event's start as their RTP timestamp;
// duration grows with each update; the last packet has the E bit and is
// sent three times (§2.5.1.4). A sender may leave the marker bit off, and
// the first packets may be lost (Chromium's insertDTMF may even deliver
// only the end packets), so an event is recognised by its timestamp.

const (
	eventPayloadLen = 4
	// dtmfVolume is the volume field of events the bridge makes: -10 dBm0,
	// the usual DTMF power per tone.
	dtmfVolume = 10
	// endRepeats is how many times an event's end packet is sent.
	endRepeats = 3
	// maxEventDur is the longest event duration one packet can state, in
	// 8 kHz units (a little over 8 s); longer events are cut there.
	maxEventDur = 0xffff
)

// eventPacket is one telephone-event payload.
type eventPacket struct {
	code   uint8 // 0-9, 10 = *, 11 = #, 12-15 = A-D (§3.2)
	end    bool
	volume uint8  // -dBm0, 0-63
	dur    uint16 // in the telephone-event clock's units
}

// parseEvent reads the first event of a payload (a sender may append
// redundant ones, which the bridge does not need).
func parseEvent(p []byte) (ev eventPacket, ok bool) {
	if len(p) < eventPayloadLen {
		return ev, false
	}
	return eventPacket{code: p[0], end: p[1]&0x80 != 0, volume: p[1] & 0x3f, dur: binary.BigEndian.Uint16(p[2:])}, true
}

// putEvent writes ev as a 4-byte payload into b.
func putEvent(b []byte, ev eventPacket) int {
	_ = b[eventPayloadLen-1]
	b[0] = ev.code
	b[1] = ev.volume & 0x3f
	if ev.end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], ev.dur)
	return eventPayloadLen
}

// digitCode maps a DTMF digit to its event code; ok is false for anything
// else.
func digitCode(r rune) (code uint8, ok bool) {
	switch {
	case r >= '0' && r <= '9':
		return uint8(r - '0'), true
	case r == '*':
		return 10, true
	case r == '#':
		return 11, true
	case r >= 'A' && r <= 'D':
		return uint8(r-'A') + 12, true
	case r >= 'a' && r <= 'd':
		return uint8(r-'a') + 12, true
	}
	return 0, false
}

// codeDigit is the digit of an event code, or 0 for codes that are not
// DTMF (flash and the other RFC 4734 events).
func codeDigit(code uint8) rune {
	switch {
	case code <= 9:
		return rune('0' + code)
	case code == 10:
		return '*'
	case code == 11:
		return '#'
	case code <= 15:
		return rune('A' + code - 12)
	}
	return 0
}

// eventNote says what a received event packet means.
type eventNote uint8

const (
	evIgnore eventNote = iota // a retransmitted end, a reordered update, or an older event's packet
	evBegin                   // the first packet seen of a new event (it may already be an end)
	evUpdate                  // the event goes on, longer
	evEnd                     // the first end packet of the current event
)

// eventTrack follows the events of one incoming stream: which one is
// current, how long it has lasted, whether it ended. A new event is told by
// its RTP timestamp (or a new code at the same timestamp), never by the
// marker bit.
type eventTrack struct {
	have  bool   // an event has been seen
	ts    uint32 // the current (or last) event's timestamp
	code  uint8
	dur   uint16 // the longest duration seen, telephone-event clock units
	ended bool
}

// open reports whether the current event began and has not ended.
func (t *eventTrack) open() bool { return t.have && !t.ended }

// isNew reports whether a packet stamped ts for code starts another event
// than the current one (older events' packets are not new).
func (t *eventTrack) isNew(ts uint32, code uint8) bool {
	if !t.have {
		return true
	}
	if ts == t.ts {
		return code != t.code
	}
	return int32(ts-t.ts) > 0
}

// note takes one packet of the stream, stamped ts.
func (t *eventTrack) note(ts uint32, ev eventPacket) eventNote {
	if t.isNew(ts, ev.code) {
		*t = eventTrack{have: true, ts: ts, code: ev.code, dur: ev.dur, ended: ev.end}
		return evBegin
	}
	if ts != t.ts || ev.code != t.code || t.ended {
		return evIgnore
	}
	if ev.end {
		t.dur = max(t.dur, ev.dur)
		t.ended = true
		return evEnd
	}
	if ev.dur <= t.dur {
		return evIgnore
	}
	t.dur = ev.dur
	return evUpdate
}

// close marks the current event ended without its end packet (lost, or
// the sender went on to something else).
func (t *eventTrack) close() { t.ended = true }

package rtpbridge

import "encoding/binary"

// RTP framing (RFC 3550 §5.1). The bridge parses and builds the fixed header
// itself: it is twelve bytes, and a parser of its own never allocates, not
// even on garbage (pion/rtp builds an error with fmt for each bad packet).
// The tests check both functions against pion/rtp.

const (
	rtpHeaderLen = 12
	rtpVersion   = 2
	maxPacket    = 1500 // one Ethernet MTU: the read buffers and send buffers
)

// rtpHeader is the part of an RTP header the bridge uses.
type rtpHeader struct {
	marker bool
	pt     uint8
	seq    uint16
	ts     uint32
	ssrc   uint32
}

// parseRTP reads the header of b and returns it with the payload (padding,
// CSRCs and header extensions skipped). ok is false for anything that is not
// a whole RTP version 2 packet.
func parseRTP(b []byte) (h rtpHeader, payload []byte, ok bool) {
	if len(b) < rtpHeaderLen || b[0]>>6 != rtpVersion {
		return h, nil, false
	}
	start := rtpHeaderLen + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // header extension: 16-bit profile, 16-bit length in words
		if len(b) < start+4 {
			return h, nil, false
		}
		start += 4 + 4*int(binary.BigEndian.Uint16(b[start+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding: the last byte counts the padding bytes, itself included
		pad := int(b[end-1])
		if pad == 0 {
			return h, nil, false
		}
		end -= pad
	}
	if start > end {
		return h, nil, false
	}
	h.marker = b[1]&0x80 != 0
	h.pt = b[1] & 0x7f
	h.seq = binary.BigEndian.Uint16(b[2:])
	h.ts = binary.BigEndian.Uint32(b[4:])
	h.ssrc = binary.BigEndian.Uint32(b[8:])
	return h, b[start:end], true
}

// putRTP writes a fixed 12-byte header (no CSRC, no extension, no padding).
func putRTP(b []byte, h rtpHeader) {
	_ = b[rtpHeaderLen-1]
	b[0] = rtpVersion << 6
	b[1] = h.pt & 0x7f
	if h.marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], h.seq)
	binary.BigEndian.PutUint32(b[4:], h.ts)
	binary.BigEndian.PutUint32(b[8:], h.ssrc)
}

// rtpSender owns one outgoing RTP stream: its SSRC, sequence number and
// timestamp, and the buffer packets are built in. Every packet of the stream
// goes through it, so whatever it carries (audio now, telephone-events
// later) shares one sequence space. One goroutine uses it.
type rtpSender struct {
	name    string // the leg, for the chain
	w       PacketWriter
	ssrc    uint32
	seq     uint16
	ts      uint32
	marker  bool // set the marker bit on the next packet
	buf     [maxPacket]byte
	counter *dirCounters
}

func newRTPSender(name string, w PacketWriter, ssrc uint32, seq uint16, ts uint32, c *dirCounters) *rtpSender {
	return &rtpSender{name: name, w: w, ssrc: ssrc, seq: seq, ts: ts, marker: true, counter: c}
}

func (s *rtpSender) String() string { return s.name }

// payload is where the next packet's payload is to be written.
func (s *rtpSender) payload() []byte { return s.buf[rtpHeaderLen:] }

// send writes the packet whose n payload bytes are in payload(), with the
// current timestamp, then moves the timestamp on by tsStep.
func (s *rtpSender) send(pt uint8, n int, tsStep uint32) {
	putRTP(s.buf[:], rtpHeader{marker: s.marker, pt: pt, seq: s.seq, ts: s.ts, ssrc: s.ssrc})
	s.marker = false
	s.seq++
	s.ts += tsStep
	pkt := s.buf[:rtpHeaderLen+n]
	if err := s.w.WritePacket(pkt); err != nil {
		s.counter.writeErrors.Add(1)
		return
	}
	s.counter.packetsOut.Add(1)
	s.counter.bytesOut.Add(uint64(len(pkt)))
}

// sendAt writes the packet whose n payload bytes are in payload() with
// timestamp ts and the given marker bit, leaving the stream's own timestamp
// and pending marker alone: telephone-events, stamped with their event's
// start, in the stream's sequence.
func (s *rtpSender) sendAt(pt uint8, n int, ts uint32, marker bool) {
	saved, savedMarker := s.ts, s.marker
	s.ts, s.marker = ts, marker
	s.send(pt, n, 0)
	s.ts, s.marker = saved, savedMarker
}

// skip moves the timestamp on without sending: a pause in the stream.
func (s *rtpSender) skip(ts uint32) { s.ts += ts }

// skipSeq moves the sequence number on without sending, so the receiver
// sees packets as lost (Opus passthrough: the PBX's FEC and PLC need to
// know).
func (s *rtpSender) skipSeq(n uint16) { s.seq += n }

// setTS sets the next packet's timestamp.
func (s *rtpSender) setTS(ts uint32) { s.ts = ts }

// mark sets the marker bit on the next packet (a new talkspurt or stream).
func (s *rtpSender) mark() { s.marker = true }

package rtpbridge

// opusHasFEC reports whether an Opus packet carries in-band FEC (SILK LBRR
// data) for the frame before it, so that a lost frame can be rebuilt from it
// rather than concealed. libopus 1.3 has no call for this (1.5 added
// opus_packet_has_lbrr), so it is read from the packet:
//
//   - The TOC byte (RFC 6716 §3.1) gives the mode: configurations 0-11 are
//     SILK-only, 12-15 hybrid, 16-31 CELT-only (which has no LBRR). It also
//     gives the frame duration, hence the number of SILK frames per Opus frame
//     (one for 10 and 20 ms, two for 40, three for 60), the stereo flag, and
//     the code that says how frames are laid out in the packet.
//   - The first Opus frame starts with the SILK header flags (§4.2.3): per
//     channel, one VAD flag per SILK frame, then one LBRR flag. Each is coded
//     with probability 1/2, and at the start of the range coder such symbols
//     are exactly the leading bits of the frame's first byte, MSB first.
//
// libopus's FEC decoding uses the first frame of the packet, so that is the
// one read.
func opusHasFEC(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	toc := p[0]
	config := toc >> 3
	if config >= 16 {
		return false // CELT-only
	}
	silkFrames := 1
	if config < 12 {
		switch config & 3 { // 10, 20, 40, 60 ms
		case 2:
			silkFrames = 2
		case 3:
			silkFrames = 3
		}
	}
	first, ok := opusFirstFrame(p)
	if !ok || len(first) == 0 {
		return false
	}
	// Bit positions of the LBRR flags: after the mid channel's VAD flags,
	// and for stereo after the side channel's VAD flags too.
	b := first[0]
	if b&(0x80>>silkFrames) != 0 {
		return true
	}
	if toc&0x04 != 0 { // stereo
		side := 2*silkFrames + 1
		if side < 8 && b&(0x80>>side) != 0 {
			return true
		}
	}
	return false
}

// opusFirstFrame returns the first compressed frame of an Opus packet
// (RFC 6716 §3.2), or ok=false if the packet is malformed.
func opusFirstFrame(p []byte) (frame []byte, ok bool) {
	switch p[0] & 3 {
	case 0: // one frame
		return p[1:], true
	case 1: // two frames of equal size
		if (len(p)-1)%2 != 0 {
			return nil, false
		}
		return p[1 : 1+(len(p)-1)/2], true
	case 2: // two frames, the first one's size coded
		n, off, ok := opusFrameLen(p, 1)
		if !ok || off+n > len(p) {
			return nil, false
		}
		return p[off : off+n], true
	}
	// Code 3: a frame count byte, optional padding length, optional sizes.
	if len(p) < 2 {
		return nil, false
	}
	count := int(p[1] & 0x3f)
	vbr, padded := p[1]&0x80 != 0, p[1]&0x40 != 0
	if count == 0 {
		return nil, false
	}
	off, pad := 2, 0
	if padded {
		for {
			if off >= len(p) {
				return nil, false
			}
			v := int(p[off])
			off++
			if v == 255 {
				pad += 254
				continue
			}
			pad += v
			break
		}
	}
	end := len(p) - pad
	if end < off {
		return nil, false
	}
	if vbr && count > 1 {
		n, next, ok := opusFrameLen(p[:end], off)
		if !ok {
			return nil, false
		}
		// The other sizes follow; the first frame starts after all of them.
		start := next
		for i := 2; i < count; i++ {
			var ok bool
			if _, start, ok = opusFrameLen(p[:end], start); !ok {
				return nil, false
			}
		}
		if start+n > end {
			return nil, false
		}
		return p[start : start+n], true
	}
	if (end-off)%count != 0 {
		return nil, false
	}
	return p[off : off+(end-off)/count], true
}

// opusFrameLen reads a frame size coded at p[off] in one or two bytes
// (RFC 6716 §3.2.1) and returns it with the offset after it.
func opusFrameLen(p []byte, off int) (n, next int, ok bool) {
	if off >= len(p) {
		return 0, 0, false
	}
	if p[off] < 252 {
		return int(p[off]), off + 1, true
	}
	if off+1 >= len(p) {
		return 0, 0, false
	}
	return int(p[off]) + 4*int(p[off+1]), off + 2, true
}

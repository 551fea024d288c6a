package whatsapp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

const (
	oggHeaderLen = 27
	oggBOS       = 0x02 // header_type: beginning of stream
	opusRate     = 48000
)

// OggOpusDuration walks the OGG pages of b (RFC 3533): the first must begin
// an Opus stream (an OpusHead, RFC 7845 §5.1); the duration is that stream's
// last granule position less the pre-skip, in 48 kHz samples (RFC 7845 §4).
// It refuses what is not OGG pages throughout, and a stream without audio.
func OggOpusDuration(b []byte) (time.Duration, error) {
	var (
		serial  uint32
		preSkip int64
		last    int64 = -1
		pages   int
	)
	for off := 0; off < len(b); pages++ {
		if len(b)-off < oggHeaderLen || string(b[off:off+4]) != "OggS" {
			if pages == 0 {
				return 0, errors.New("not an OGG file (no OggS page at its start)")
			}
			return 0, fmt.Errorf("OGG page %d at byte %d is truncated or corrupt", pages, off)
		}
		if b[off+4] != 0 {
			return 0, fmt.Errorf("OGG page %d: version %d, want 0", pages, b[off+4])
		}
		headerType := b[off+5]
		granule := int64(binary.LittleEndian.Uint64(b[off+6:]))
		ser := binary.LittleEndian.Uint32(b[off+14:])
		nseg := int(b[off+26])
		if len(b)-off < oggHeaderLen+nseg {
			return 0, fmt.Errorf("OGG page %d at byte %d is truncated", pages, off)
		}
		body := 0
		for _, l := range b[off+oggHeaderLen : off+oggHeaderLen+nseg] {
			body += int(l)
		}
		start := off + oggHeaderLen + nseg
		end := start + body
		if end > len(b) {
			return 0, fmt.Errorf("OGG page %d at byte %d is truncated", pages, off)
		}
		payload := b[start:end]
		switch {
		case pages == 0:
			if headerType&oggBOS == 0 {
				return 0, errors.New("the first OGG page does not begin a stream")
			}
			if len(payload) < 19 || string(payload[:8]) != "OpusHead" {
				return 0, errors.New("not Opus: the first OGG page has no OpusHead (encode with opusenc or ffmpeg -c:a libopus)")
			}
			if payload[8]>>4 != 0 {
				return 0, fmt.Errorf("OpusHead version %d is not supported", payload[8])
			}
			serial = ser
			preSkip = int64(binary.LittleEndian.Uint16(payload[10:]))
		case ser == serial && granule >= 0: // -1: no packet ends on this page
			last = granule
		}
		off = end
	}
	if last < 0 {
		return 0, errors.New("the Opus stream has no audio pages")
	}
	samples := last - preSkip
	if samples <= 0 {
		return 0, errors.New("the Opus stream has no audio")
	}
	return time.Duration(samples) * time.Second / opusRate, nil
}

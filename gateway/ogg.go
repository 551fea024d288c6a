package gateway

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// A voicemail announcement (R3): an OGG file carrying one Opus stream,
// under 60 s. The duration is the last page's granule position (48 kHz
// samples for Opus, RFC 7845) less the header's pre-skip.

// maxAnnouncementBytes bounds what is read: a minute of Opus is far less;
// 16 MB is Meta's largest audio media.
const maxAnnouncementBytes = 16 << 20

// announcement is a voicemail prompt read from its file.
type announcement struct {
	path     string
	data     []byte
	sha256   string // hex
	duration time.Duration
}

// readAnnouncement reads and checks a voicemail announcement file.
func readAnnouncement(path string) (*announcement, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAnnouncementBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxAnnouncementBytes {
		return nil, fmt.Errorf("%s is larger than %d MB", path, maxAnnouncementBytes>>20)
	}
	d, err := oggOpusDuration(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d >= maxAnnouncementLength {
		return nil, fmt.Errorf("%s lasts %.1f s: Meta takes announcements under %v", path, d.Seconds(), maxAnnouncementLength)
	}
	sum := sha256.Sum256(data)
	return &announcement{path: path, data: data, sha256: hex.EncodeToString(sum[:]), duration: d}, nil
}

const (
	oggHeaderLen = 27
	oggBOS       = 0x02 // header_type: beginning of stream
	opusRate     = 48000
)

// oggOpusDuration walks the OGG pages of b: the first must begin an Opus
// stream (OpusHead); the duration is that stream's last granule position
// less the pre-skip, over 48 kHz.
func oggOpusDuration(b []byte) (time.Duration, error) {
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
	samples := max(last-preSkip, 0)
	return time.Duration(samples) * time.Second / opusRate, nil
}

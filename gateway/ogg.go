package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
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
	d, err := whatsapp.OggOpusDuration(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d >= maxAnnouncementLength {
		return nil, fmt.Errorf("%s lasts %.1f s: Meta takes announcements under %v", path, d.Seconds(), maxAnnouncementLength)
	}
	sum := sha256.Sum256(data)
	return &announcement{path: path, data: data, sha256: hex.EncodeToString(sum[:]), duration: d}, nil
}

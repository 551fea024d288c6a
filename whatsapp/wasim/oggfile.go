package wasim

import (
	"bytes"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// OggOpusSilence is an OGG/Opus file of d of silence in 20 ms frames, as
// pion's oggwriter writes it (mono, pre-skip 3840): the voicemail a caller
// leaves (SendVoicemail), an announcement to upload.
func OggOpusSilence(d time.Duration) []byte {
	var buf bytes.Buffer
	w, err := oggwriter.NewWith(&buf, 48000, 1)
	if err != nil {
		panic(err) // writing to memory cannot fail
	}
	for i := 0; i < int(d/(20*time.Millisecond)); i++ {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 1},
			Payload: []byte{0xf8, 0xff, 0xfe}} // TOC: CELT fullband 20 ms, one frame: silence
		if err := w.WriteRTP(p); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

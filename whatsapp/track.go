package whatsapp

import (
	"strings"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// audioTrack is the one local track toward WhatsApp. Unlike pion's
// TrackLocalStaticRTP it leaves each packet's payload type alone, so Opus
// (PT 111) and telephone-event (PT 126) share one SSRC and one sequence space
// (media-stack.md, traps).
type audioTrack struct {
	id, streamID string
	writer       atomic.Pointer[boundWriter]
}

type boundWriter struct {
	w    webrtc.TrackLocalWriter
	ssrc uint32
}

func newAudioTrack(id, streamID string) *audioTrack {
	return &audioTrack{id: id, streamID: streamID}
}

// Bind is called by pion when the sender starts; it picks Opus from what was
// negotiated.
func (t *audioTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
			t.writer.Store(&boundWriter{w: ctx.WriteStream(), ssrc: uint32(ctx.SSRC())})
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *audioTrack) Unbind(webrtc.TrackLocalContext) error {
	t.writer.Store(nil)
	return nil
}

func (t *audioTrack) ID() string                { return t.id }
func (t *audioTrack) RID() string               { return "" }
func (t *audioTrack) StreamID() string          { return t.streamID }
func (t *audioTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

// write sends one RTP packet whose header is already parsed into h. Before
// the DTLS transport is up there is nowhere to send and pion drops the packet
// (it writes 0 bytes): the caller keeps its cadence regardless.
func (t *audioTrack) write(h *rtp.Header, payload []byte) (sent bool, err error) {
	bw := t.writer.Load()
	if bw == nil {
		return false, nil
	}
	n, err := bw.w.WriteRTP(h, payload)
	return err == nil && n > 0, err
}

// Package rtptrack is a pion local audio track that sends RTP packets with
// their own payload type, so Opus and telephone-event packets share one SSRC
// and one sequence space. pion's TrackLocalStaticRTP rewrites every packet's
// payload type to the negotiated codec's, which breaks RFC 4733 DTMF beside
// Opus (the events would go out as Opus).
package rtptrack

import (
	"strings"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Track is one local audio track bound to Opus, or to G.711 when the
// answer took PCMU or PCMA instead (Meta offers them beside Opus when the
// number's audio.additional_codecs lists them).
type Track struct {
	id, streamID string
	writer       atomic.Pointer[boundWriter]
}

type boundWriter struct {
	w    webrtc.TrackLocalWriter
	ssrc uint32
}

// New makes a track with the given track and stream ids.
func New(id, streamID string) *Track {
	return &Track{id: id, streamID: streamID}
}

// Bind is called by pion when the sender starts; it picks Opus from what was
// negotiated, else PCMU or PCMA.
func (t *Track) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, mime := range []string{webrtc.MimeTypeOpus, webrtc.MimeTypePCMU, webrtc.MimeTypePCMA} {
		for _, c := range ctx.CodecParameters() {
			if strings.EqualFold(c.MimeType, mime) {
				t.writer.Store(&boundWriter{w: ctx.WriteStream(), ssrc: uint32(ctx.SSRC())})
				return c, nil
			}
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *Track) Unbind(webrtc.TrackLocalContext) error {
	t.writer.Store(nil)
	return nil
}

func (t *Track) ID() string                { return t.id }
func (t *Track) RID() string               { return "" }
func (t *Track) StreamID() string          { return t.streamID }
func (t *Track) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

// WriteRTP sends one RTP packet whose header is already parsed into h. Before
// the DTLS transport is up there is nowhere to send and pion drops the packet
// (it writes 0 bytes): the caller keeps its cadence regardless.
func (t *Track) WriteRTP(h *rtp.Header, payload []byte) (sent bool, err error) {
	bw := t.writer.Load()
	if bw == nil {
		return false, nil
	}
	n, err := bw.w.WriteRTP(h, payload)
	return err == nil && n > 0, err
}

// SSRC is the SSRC packets must carry (0 until pion binds the track).
func (t *Track) SSRC() uint32 {
	if bw := t.writer.Load(); bw != nil {
		return bw.ssrc
	}
	return 0
}

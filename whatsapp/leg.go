package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp/rtptrack"
)

// ErrLegClosed is returned by reads and writes on a closed Leg.
var ErrLegClosed = errors.New("whatsapp leg closed")

// Leg is one call's WebRTC media leg toward WhatsApp: the answer to Meta's
// offer, the remote Opus stream in, and one SSRC out.
type Leg struct {
	pc        *webrtc.PeerConnection
	track     *rtptrack.Track
	ssrc      uint32
	answer    string
	log       *zap.Logger
	remote    chan *webrtc.TrackRemote
	connected chan struct{}
	failed    chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	connOnce  sync.Once
	failOnce  sync.Once

	// Read side: owned by the one reader goroutine.
	in *webrtc.TrackRemote
	// Write side: owned by the one writer (the bridge's pacer).
	hdr rtp.Header

	sent, dropped atomic.Uint64
}

// Answer answers Meta's offer: Opus/48000 + telephone-event/8000, DTLS client,
// full ICE agent (pion takes the controlling role against an ICE-lite offer),
// and every candidate inside the answer (no trickle in the Cloud API). It
// returns once ICE gathering is complete or ctx ends.
func (m *Media) Answer(ctx context.Context, offerSDP string, log *zap.Logger) (*Leg, error) {
	if log == nil {
		log = m.log
	}
	if !strings.Contains(offerSDP, "m=audio") {
		return nil, errors.New("webrtc: offer has no audio m-line")
	}
	pc, err := m.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("webrtc: new peer connection: %w", err)
	}
	l := &Leg{
		pc:        pc,
		track:     rtptrack.New("audio", "wagateway"),
		log:       log,
		remote:    make(chan *webrtc.TrackRemote, 1),
		connected: make(chan struct{}),
		failed:    make(chan struct{}),
		closed:    make(chan struct{}),
	}
	fail := func(err error) (*Leg, error) {
		_ = pc.Close()
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: normalizeSDP(offerSDP)}); err != nil {
		return fail(fmt.Errorf("webrtc: offer: %w", err))
	}
	// AddTrack after the offer reuses the offer's audio transceiver and makes
	// it sendrecv (JSEP §5.10).
	sender, err := pc.AddTrack(l.track)
	if err != nil {
		return fail(fmt.Errorf("webrtc: attach track: %w", err))
	}
	if enc := sender.GetParameters().Encodings; len(enc) > 0 {
		l.ssrc = uint32(enc[0].SSRC)
	}

	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if t.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		select {
		case l.remote <- t:
		default: // one audio stream per call; a second one is ignored
			log.Warn("webrtc: ignoring extra remote track", zap.Uint32("ssrc", uint32(t.SSRC())))
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		log.Debug("webrtc state", zap.String("state", s.String()))
		switch s {
		case webrtc.PeerConnectionStateConnected:
			l.connOnce.Do(func() { close(l.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			l.failOnce.Do(func() { close(l.failed) })
		}
	})

	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("webrtc: create answer: %w", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(fmt.Errorf("webrtc: set answer: %w", err))
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(fmt.Errorf("webrtc: gathering candidates: %w", ctx.Err()))
	}
	l.answer = pc.LocalDescription().SDP

	// RTCP from WhatsApp must be read for the report interceptors to run.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	return l, nil
}

// AnswerSDP is the SDP answer sent in both pre_accept and accept (Meta rejects
// an accept whose SDP differs).
func (l *Leg) AnswerSDP() string { return l.answer }

// SSRC is the one SSRC of every packet toward WhatsApp.
func (l *Leg) SSRC() uint32 { return l.ssrc }

// Connected is closed once ICE and DTLS are up.
func (l *Leg) Connected() <-chan struct{} { return l.connected }

// Failed is closed when the connection fails or closes.
func (l *Leg) Failed() <-chan struct{} { return l.failed }

// ReadPacket returns the next decrypted RTP packet from WhatsApp. It waits for
// the remote track to appear; it fails once the leg is closed.
func (l *Leg) ReadPacket(b []byte) (int, error) {
	if l.in == nil {
		select {
		case t := <-l.remote:
			l.in = t
		case <-l.closed:
			return 0, ErrLegClosed
		}
	}
	n, _, err := l.in.Read(b)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, ErrLegClosed
		}
		return 0, err
	}
	return n, nil
}

// WritePacket sends one RTP packet (header as built by the bridge, with this
// leg's SSRC) toward WhatsApp. Before DTLS is up the packet is dropped.
func (l *Leg) WritePacket(b []byte) error {
	select {
	case <-l.closed:
		return ErrLegClosed
	default:
	}
	hl, err := l.hdr.Unmarshal(b)
	if err != nil {
		return fmt.Errorf("whatsapp leg: bad rtp packet: %w", err)
	}
	ok, err := l.track.WriteRTP(&l.hdr, b[hl:])
	if ok {
		l.sent.Add(1)
	} else {
		l.dropped.Add(1)
	}
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	return nil
}

// Sent and Dropped count packets handed to SRTP and packets dropped before
// the transport was up.
func (l *Leg) Sent() uint64    { return l.sent.Load() }
func (l *Leg) Dropped() uint64 { return l.dropped.Load() }

// Close tears the peer connection down; reads and writes fail after it.
func (l *Leg) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.pc.Close()
	})
	return err
}

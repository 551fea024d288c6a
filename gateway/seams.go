package gateway

import (
	"context"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// The call machine's view of what it drives. gateway.go wires the real
// legs; call_test.go drives the machine with fakes.

// webrtcAnswerer answers Meta's SDP offer with a new WebRTC media leg
// running codec (webrtc.CodecOpus, or a G.711 codec the offer has).
type webrtcAnswerer interface {
	Answer(ctx context.Context, offerSDP, codec string, log *zap.Logger) (waLeg, error)
}

// waLeg is one call's WebRTC media leg toward WhatsApp.
type waLeg interface {
	rtpbridge.PacketReader
	rtpbridge.PacketWriter
	AnswerSDP() string
	SSRC() uint32
	// Codec is the audio codec the leg runs (Opus, or G.711 on a g711
	// trunk), on the payload type the offer gave it. OpusPayloadType is
	// that type when it is Opus (else 0), DTMFPayloadType telephone-event's
	// (0: none); the answer and every packet keep them.
	Codec() webrtc.Codec
	OpusPayloadType() uint8
	DTMFPayloadType() uint8
	// Connected is closed once ICE and DTLS-SRTP are up.
	Connected() <-chan struct{}
	// Failed is closed when the leg's media can no longer flow (ICE
	// consent lost, DTLS failed or closed); Err says why.
	Failed() <-chan struct{}
	Err() error
	Close() error
}

// graphActions are the Cloud API call actions the machine sends.
type graphActions interface {
	PreAccept(ctx context.Context, phoneNumberID, callID, sdpAnswer string) error
	Accept(ctx context.Context, phoneNumberID, callID, sdpAnswer, bizOpaque string) error
	Reject(ctx context.Context, phoneNumberID, callID string) error
	Terminate(ctx context.Context, phoneNumberID, callID string) error
	// Connect places a business-initiated call and returns its id.
	Connect(ctx context.Context, phoneNumberID string, r whatsapp.ConnectRequest) (string, error)
}

// webrtcOfferer makes WebRTC legs that offer (business-initiated calls),
// with g711 (webrtc.CodecPCMU or CodecPCMA; "" for none) first.
type webrtcOfferer interface {
	Offer(ctx context.Context, g711 string, log *zap.Logger) (waOfferLeg, error)
}

// waOfferLeg is a WebRTC leg that made the offer; Meta's answer arrives
// later, in a connect webhook.
type waOfferLeg interface {
	waLeg
	OfferSDP() string
	// SetAnswer applies Meta's answer and starts ICE and DTLS.
	SetAnswer(sdp string) error
}

// agentCall is an agent's INVITE to a WhatsApp user (a business-initiated
// call) until it is answered: its media can be bridged before the 200 OK.
type agentCall interface {
	pbxMedia
	CallID() string
	Trunk() *sip.Trunk
	User() string     // the Request-URI user: the number or BSUID dialled
	FromUser() string // the agent's extension
	Header(name string) string
	Ringing(ctx context.Context) error
	// Answer sends the 200 OK and returns the established dialog once ACKed.
	Answer(ctx context.Context) (pbxCall, error)
	Reject(code int, phrase string, why sip.Reason, warning string) error
	// Cancelled is closed when the PBX CANCELs (487 already sent).
	Cancelled() <-chan struct{}
	Close() error
}

// pbxDialer places an INVITE; it returns once the PBX answered (a call) or
// gave a final error (*sip.FinalError), or ctx ended it (CANCEL; the
// ctx's cause may be a *sip.CancelCause giving its Reason). onEarly, if
// not nil, is told of the PBX's early media (a 183 with SDP) on the
// INVITE's goroutine.
type pbxDialer interface {
	Invite(ctx context.Context, r sip.InviteRequest, onEarly func(pbxMedia)) (pbxCall, error)
}

// pbxMedia is the PBX's RTP stream as the bridge takes it: an answered
// call's, or before its answer the early media of its 183 (which becomes
// the answered call's).
type pbxMedia interface {
	rtpbridge.PacketReader
	rtpbridge.PacketWriter
	Codec() sip.Codec
	DTMFPayloadType() uint8
	RemoteRTPAddr() *net.UDPAddr
}

// pbxCall is an answered SIP dialog with its RTP socket.
type pbxCall interface {
	pbxMedia
	CallID() string
	// Done is closed when the dialog ends from the PBX's side (BYE).
	Done() <-chan struct{}
	EndReason() string
	// PeerReason is the Reason header of the PBX's BYE (zero if none).
	PeerReason() sip.Reason
	Hangup(ctx context.Context) error // BYE
	// HangupWithReason is Hangup with a Reason header (RFC 3326).
	HangupWithReason(ctx context.Context, why sip.Reason) error
	Close() error // releases the RTP socket
	SendInfoDigit(ctx context.Context, digit rune, d time.Duration) error
	SetOnInfoDigit(f func(digit rune, d time.Duration))
	SetOnMediaChange(f func(sip.MediaChange))
	// DialogState is what another instance needs to send the BYE (cluster).
	DialogState() sip.DialogState
}

// mediaAnswerer adapts webrtc.Media.
type mediaAnswerer struct{ m *webrtc.Media }

func (a mediaAnswerer) Answer(ctx context.Context, offer, codec string, log *zap.Logger) (waLeg, error) {
	leg, err := a.m.AnswerWith(ctx, offer, codec, log)
	if err != nil {
		return nil, err
	}
	return leg, nil
}

// mediaOfferer adapts webrtc.Media.
type mediaOfferer struct{ m *webrtc.Media }

func (o mediaOfferer) Offer(ctx context.Context, g711 string, log *zap.Logger) (waOfferLeg, error) {
	leg, err := o.m.OfferWith(ctx, g711, log)
	if err != nil {
		return nil, err
	}
	return leg, nil
}

// inboundAgent adapts sip.InboundCall.
type inboundAgent struct{ *sip.InboundCall }

func (a inboundAgent) Answer(ctx context.Context) (pbxCall, error) {
	c, err := a.InboundCall.Answer(ctx)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// uaDialer adapts sip.UA.
type uaDialer struct{ ua *sip.UA }

func (d uaDialer) Invite(ctx context.Context, r sip.InviteRequest, onEarly func(pbxMedia)) (pbxCall, error) {
	if onEarly != nil {
		r.OnEarlyMedia = func(m *sip.EarlyMedia) { onEarly(m) }
	}
	c, err := d.ua.Invite(ctx, r)
	if err != nil {
		return nil, err
	}
	return c, nil
}

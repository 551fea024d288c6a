package sip

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// MediaChange is a call's media after the PBX changed it: a new offer in a
// re-INVITE or UPDATE (hold, resume, another codec or address), or its answer
// (in the ACK) to the offer we put in the 2xx to an offerless re-INVITE.
type MediaChange struct {
	// Direction is the PBX's view of the stream: "sendonly" (it holds us:
	// it may play music on hold and receives nothing), "inactive",
	// "recvonly" or "sendrecv" (resumed). A hold the old way, c=0.0.0.0
	// (RFC 3264 §8.4), reads as sendonly, or inactive if the PBX's SDP
	// also said recvonly or inactive.
	Direction string
	// Codec is the codec now in use, with the PBX's payload type.
	Codec Codec
	// DTMFPayloadType is the PBX's telephone-event payload type, 0 if none.
	DTMFPayloadType uint8
	// RemoteRTPAddr is where RTP goes now (Call.RemoteRTPAddr).
	RemoteRTPAddr *net.UDPAddr
}

// SetOnMediaChange sets the function told about media changes the PBX
// makes. It runs on the SIP goroutine once our answer (the 200 OK) is sent,
// one change at a time and in order, and must return quickly; it must not
// call SetOnMediaChange itself. It is not called for a refresh that changes
// nothing (session timers re-INVITE with the same SDP). A change made while
// no function was set is passed to f (the latest one only) before
// SetOnMediaChange returns. nil stops the notifications.
func (c *Call) SetOnMediaChange(f func(MediaChange)) {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	c.mu.Lock()
	c.onMedia = f
	var pending *MediaChange
	if f != nil {
		pending, c.media = c.media, nil
	}
	c.mu.Unlock()
	if pending != nil {
		f(*pending)
	}
}

// notifyMedia reports a change; the caller holds mediaMu.
func (c *Call) notifyMedia(mc MediaChange) {
	c.log.Info("sip media changed", zap.String("pbx_direction", mc.Direction), zap.String("codec", mc.Codec.Name),
		zap.Uint8("pt", mc.Codec.PayloadType), zap.Uint8("dtmf_pt", mc.DTMFPayloadType), zap.Stringer("rtp_remote", mc.RemoteRTPAddr))
	c.mu.Lock()
	f := c.onMedia
	if f == nil {
		c.media = &mc
	}
	c.mu.Unlock()
	if f != nil {
		f(mc)
	}
}

// remoteDirection is the PBX's direction with an RFC 2543 hold (c=0.0.0.0:
// "do not send to me") folded in.
func remoteDirection(info *MediaInfo) string {
	if !info.Addr.IP.IsUnspecified() {
		return info.Direction
	}
	switch info.Direction {
	case "sendrecv", "sendonly":
		return "sendonly"
	}
	return "inactive"
}

// streamPTs are the payload types the PBX may send: the codec's,
// telephone-event's (RFC 4733) and comfort noise's (PT 13, RFC 3389).
func streamPTs(codec Codec, dtmfPT uint8) []uint8 {
	pts := []uint8{codec.PayloadType, 13}
	if dtmfPT != 0 {
		pts = append(pts, dtmfPT)
	}
	return pts
}

// peerReceives reports whether we may send RTP to a peer with direction dir.
func peerReceives(dir string) bool { return dir == "sendrecv" || dir == "recvonly" }

// applyRemote makes the PBX's SDP (offer or answer) the call's media state
// and reports whether anything changed. The RTP destination moves only when
// the SDP's address does, so that a refresh keeps a latched source.
func (c *Call) applyRemote(info *MediaInfo, codec Codec) (MediaChange, bool) {
	dir := remoteDirection(info)
	var addr *net.UDPAddr
	if !info.Addr.IP.IsUnspecified() {
		addr = info.Addr
	}
	c.mu.Lock()
	moved := addr != nil && !sameUDPAddr(addr, c.remoteSDP)
	changed := moved || c.codec != codec || c.dtmfPT != info.DTMFPayloadType || c.remoteDir != dir
	c.codec, c.dtmfPT, c.remoteDir = codec, info.DTMFPayloadType, dir
	if moved {
		c.remoteSDP = addr
	}
	c.mu.Unlock()
	c.rtp.SetPayloadTypes(streamPTs(codec, info.DTMFPayloadType)...)
	if moved {
		c.rtp.SetRemote(addr)
	}
	c.sendOK.Store(peerReceives(dir))
	return MediaChange{Direction: dir, Codec: codec, DTMFPayloadType: info.DTMFPayloadType, RemoteRTPAddr: c.rtp.Remote()}, changed
}

var errNoCommonCodec = errors.New("sdp: offer holds none of the trunk's codecs")

// answerOffer applies a new offer from the PBX and returns our answer: the
// PBX's first codec among the trunk's (it may differ from the current one),
// its telephone-event PT if it offered one, the mirrored direction
// (RFC 3264 §6.1) and the version bumped (§8). On error nothing changed.
// The caller holds mediaMu.
func (c *Call) answerOffer(body []byte) ([]byte, MediaChange, bool, error) {
	info, err := ParseSDP(body)
	if err != nil {
		return nil, MediaChange{}, false, err
	}
	codec, ok := NegotiateCodec(c.offered, info.Codecs)
	if !ok {
		return nil, MediaChange{}, false, errNoCommonCodec
	}
	mc, changed := c.applyRemote(info, codec)
	return BuildSDP(SDPParams{
		SessionID: c.sdpID, Version: c.nextSDPVersion(), Host: c.st.host, Port: c.rtp.Port(),
		Codecs: []Codec{codec}, DTMFPayloadType: info.DTMFPayloadType, Direction: AnswerDirection(mc.Direction),
	}), mc, changed, nil
}

// offerSDP is our offer for the 2xx to an offerless re-INVITE (RFC 3261
// §14.2): the current codec first, then the trunk's others, telephone-event,
// sendrecv (we never hold). It returns the codecs offered, which the ACK's
// answer must pick from. The caller holds mediaMu.
func (c *Call) offerSDP() ([]byte, []Codec) {
	c.mu.Lock()
	cur, dtmf := c.codec, c.dtmfPT
	c.mu.Unlock()
	codecs := make([]Codec, 0, len(c.offered))
	codecs = append(codecs, cur)
	used := map[uint8]bool{cur.PayloadType: true}
	for _, o := range c.offered {
		if strings.EqualFold(o.Name, cur.Name) || used[o.PayloadType] {
			continue
		}
		codecs = append(codecs, o)
		used[o.PayloadType] = true
	}
	if dtmf == 0 {
		dtmf = DefaultDTMFPayloadType
	}
	for pt := uint8(96); used[dtmf] && pt < 128; pt++ {
		dtmf = pt
	}
	return BuildSDP(SDPParams{
		SessionID: c.sdpID, Version: c.nextSDPVersion(), Host: c.st.host, Port: c.rtp.Port(),
		Codecs: codecs, DTMFPayloadType: dtmf, Direction: "sendrecv",
	}), codecs
}

func (c *Call) nextSDPVersion() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sdpVer++
	return c.sdpVer
}

// onReinvite answers a re-INVITE: an offer gets our answer (488 if it holds
// none of the trunk's codecs), no SDP gets our offer, whose answer comes in
// the ACK. The 2xx is retransmitted over UDP until the ACK; OnMediaChange
// runs once the first copy is sent.
func (c *Call) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	c.mediaMu.Lock()
	locked := true
	release := func() {
		if locked {
			locked = false
			c.mediaMu.Unlock()
		}
	}
	defer release()

	c.mu.Lock()
	pending := c.reAck != nil
	c.mu.Unlock()
	if pending {
		// Our 2xx to an earlier INVITE still waits for its ACK: that
		// transaction is in progress (RFC 3261 §14.2).
		respond(tx, sip.NewResponseFromRequest(req, 491, "Request Pending", nil), c.log)
		return
	}

	var (
		body    []byte
		offer   []Codec
		mc      MediaChange
		changed bool
	)
	switch b := req.Body(); {
	case len(b) == 0:
		body, offer = c.offerSDP()
	case !isSDPRequest(req):
		res := sip.NewResponseFromRequest(req, 415, "Unsupported Media Type", nil)
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
		respond(tx, res, c.log)
		return
	default:
		var err error
		if body, mc, changed, err = c.answerOffer(b); err != nil {
			c.log.Info("sip re-INVITE refused", zap.Error(err))
			respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil), c.log)
			return
		}
	}
	res := c.sdpResponse(req, body)
	acked := make(chan struct{})
	c.mu.Lock()
	c.reAck, c.reAckSeq, c.reOffer = acked, req.CSeq().SeqNo, offer
	c.mu.Unlock()
	ack, err := respond2xxUntilAck(tx, res, c.st.transport != "udp", acked, c.done, func() {
		if changed {
			c.notifyMedia(mc)
		}
		release()
	})
	// Whatever happened, this 2xx no longer waits: forget it unless the
	// ACK came as its own request (onAck took it then).
	c.mu.Lock()
	if c.reAck == acked {
		c.reAck = nil
		if ack == nil {
			offer = nil
		}
		c.reOffer = nil
	} else {
		offer = nil
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Debug("sip re-INVITE", zap.Error(err))
		return
	}
	if ack != nil && offer != nil {
		// An ACK that reused the INVITE's branch reached the transaction,
		// not onAck: its answer is taken here.
		c.applyAckAnswer(ack.Body(), offer)
	}
}

// applyAckAnswer takes the PBX's answer (in its ACK) to the offer we sent
// in the 2xx to an offerless re-INVITE. An ACK cannot be refused: an answer
// we cannot use leaves the media as it was.
func (c *Call) applyAckAnswer(body []byte, offer []Codec) {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	if len(body) == 0 {
		c.log.Warn("sip ACK without the answer to our offer; media unchanged")
		return
	}
	info, err := ParseSDP(body)
	if err == nil {
		codec, ok := NegotiateCodec(offer, info.Codecs)
		if !ok {
			err = errors.New("sdp: answer holds none of the offered codecs")
		} else if mc, changed := c.applyRemote(info, codec); changed {
			c.notifyMedia(mc)
		}
	}
	if err != nil {
		c.log.Warn("sip unusable answer in ACK; media unchanged", zap.Error(err))
	}
}

// onUpdate answers an UPDATE (RFC 3311) like a re-INVITE with an offer; an
// UPDATE without SDP (a session refresh) just gets 200.
func (c *Call) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	b := req.Body()
	if len(b) == 0 {
		respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
		return
	}
	if !isSDPRequest(req) {
		res := sip.NewResponseFromRequest(req, 415, "Unsupported Media Type", nil)
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
		respond(tx, res, c.log)
		return
	}
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	body, mc, changed, err := c.answerOffer(b)
	if err != nil {
		c.log.Info("sip UPDATE refused", zap.Error(err))
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil), c.log)
		return
	}
	respond(tx, c.sdpResponse(req, body), c.log)
	if changed {
		c.notifyMedia(mc)
	}
}

// isSDPRequest reports whether a request's body is SDP: Content-Type
// application/sdp, or no Content-Type and a body that starts with v=.
func isSDPRequest(req *sip.Request) bool {
	if ct := req.ContentType(); ct != nil {
		return mediaType(ct.Value()) == "application/sdp"
	}
	return isSDP(req.Body())
}

// mediaType is a Content-Type's type/subtype, lower case, without parameters.
func mediaType(v string) string {
	v, _, _ = strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(v))
}

// String describes the change for logs and test failures.
func (m MediaChange) String() string {
	return fmt.Sprintf("%s %s/%d/%d dtmf=%d rtp=%v", m.Direction, m.Codec.Name, m.Codec.PayloadType, m.Codec.ClockRate, m.DTMFPayloadType, m.RemoteRTPAddr)
}

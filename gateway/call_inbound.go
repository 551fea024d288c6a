package gateway

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// User-initiated calls: a WhatsApp user calls the business. The machine's
// path (state.go):
//
//	connect webhook → answering (the WebRTC answer) → pre_accepting →
//	ringing (INVITE to the PBX) → awaiting_media (200 OK, or a 183 on a
//	route with early_media: answer) → accepting (Graph accept) → bridged
//
// On a g711 trunk, when Meta offers G.711 the trunk takes, Meta's answer
// waits for the PBX's codec (whatsappcodec.go):
//
//	connect webhook → ringing (INVITE, G.711 first) → answering (the
//	WebRTC answer in the PBX's codec if Meta offered it, else Opus) →
//	pre_accepting → awaiting_media → accepting → bridged

// begin routes the call and admits it, or ends it; then answers the offer.
func (c *call) begin() {
	router, trunks, media := c.g.routing()
	route, err := router.RouteFor(c.ev.PhoneNumberID, c.ev.CTAPayload, c.ev.DeeplinkPayload)
	if err == nil && trunks[route.Trunk] == nil {
		err = errors.New("route " + quote(route.Name) + " names trunk " + quote(route.Trunk) + ", which is not configured")
	}
	if err != nil {
		c.end(endCause{kind: endNoRoute, detail: err.Error()})
		return
	}
	tm := media[route.Trunk]
	c.route, c.trunk, c.dtmf, c.g711Trunk = route, trunks[route.Trunk], tm.dtmf, tm.g711
	c.log = c.log.With(zap.String("route", route.Name), zap.String("trunk", route.Trunk))
	if route.AfterHours {
		c.log.Info("route closed now: the call goes to its after-hours destination", zap.String("destination", route.Destination))
	}
	c.ops.setRoute(route)
	if refused, ok := c.g.admit(route); !ok {
		c.end(refused) // draining, or the trunk is down: at once, no ringing into nothing
		return
	}
	if refused, ok := c.g.admitLimits(c, c.ev.PhoneNumberID); !ok {
		c.end(refused)
		return
	}
	if c.g711Trunk && c.planG711() {
		c.invite() // Meta is answered once the PBX's codec is known
		return
	}
	if !c.move(stateAnswering) {
		return
	}
	c.answer(webrtc.CodecOpus)
}

// planG711 decides, on a g711 trunk, whether the call INVITEs first with
// the G.711 Meta offered (true), or runs Opus as on any trunk.
func (c *call) planG711() bool {
	switch g711 := g711ToOffer(c.ev.SDP, trunkCodecs(c.trunk)); {
	case c.route.AnswerEarly:
		// Early media bridges the call on the 183, before the INVITE's
		// answer: Meta must have been answered by then.
		logCodecChoice(c.log, webrtc.CodecOpus, "the route answers on early media, which needs meta's answer before the pbx's")
	case len(g711) == 0:
		logCodecChoice(c.log, webrtc.CodecOpus, "meta offered no G.711 the trunk takes (the number's audio.additional_codecs)")
	default:
		c.g711 = g711
		return true
	}
	return false
}

// answer makes the WebRTC answer to Meta's offer, running codec.
func (c *call) answer(codec string) {
	offer := c.ev.SDP
	c.start(evAnswered, func(ctx context.Context, log *zap.Logger) callEvent {
		ctx, cancel := context.WithTimeout(ctx, c.g.timeouts.answer)
		defer cancel()
		leg, err := c.g.answerer.Answer(ctx, offer, codec, log)
		return callEvent{leg: leg, err: err}
	})
}

func callerHangupDetail(s callState) string {
	switch s {
	case stateRinging:
		return "caller hung up while the PBX rang"
	case stateAwaitingMedia, stateAccepting:
		return "caller hung up as the PBX answered"
	case stateBridged:
		return "caller hung up"
	}
	return "caller hung up before the PBX was called"
}

// answered: the leg is made; pre_accept goes before the INVITE, so ICE and
// DTLS come up while the PBX rings and its greeting is not clipped (Meta,
// Cloud API Calling, "pre-accept"). A call that INVITEd first (g711) has
// its PBX: the bridge is built now, so the PBX's audio is held from here.
func (c *call) answered(e callEvent) {
	if e.err != nil {
		c.end(endCause{kind: endAnswerFailed, detail: "answer: " + e.err.Error()})
		return
	}
	c.leg = e.leg
	if c.g711 != nil {
		if err := c.buildBridge(c.pbx); err != nil {
			c.end(endCause{kind: endBridgeFailed, detail: "bridge: " + err.Error()})
			return
		}
		c.attachPBX()
	}
	if !c.move(statePreAccepting) {
		return
	}
	ev, sdp := c.ev, c.leg.AnswerSDP()
	c.start(evPreAccepted, func(ctx context.Context, log *zap.Logger) callEvent {
		return callEvent{err: c.graphAction(ctx, log, "pre_accept", func(ctx context.Context) error {
			return c.g.graph.PreAccept(ctx, ev.PhoneNumberID, ev.CallID, sdp)
		})}
	})
}

// preAccepted: INVITE the PBX (a call that INVITEd first waits for its
// media now).
func (c *call) preAccepted(e callEvent) {
	if e.err != nil {
		c.end(endCause{kind: endGraphFailed, detail: "pre_accept: " + e.err.Error()})
		return
	}
	if c.g711 != nil {
		if c.move(stateAwaitingMedia) {
			c.awaitMedia()
		}
		return
	}
	c.invite()
}

// invite sends the INVITE. Ending the call (terminate, shutdown) cancels
// it (CANCEL); the route's answer_timeout bounds it. A call with G.711
// from Meta (g711) offers it first.
func (c *call) invite() {
	if !c.move(stateRinging) {
		return
	}
	ev, route, trunk := c.ev, c.route, c.trunk
	var codecs []string
	if c.g711 != nil {
		codecs = sipOfferCodecs(c.g711, trunkCodecs(trunk))
	}
	var onEarly func(pbxMedia)
	if route.AnswerEarly {
		events, actions := c.events, c.actions
		onEarly = func(m pbxMedia) {
			select {
			case events <- callEvent{kind: evEarlyMedia, early: m}:
			case <-actions.Done(): // the call ended: nobody takes it
			}
		}
	}
	c.start(evInviteDone, func(ctx context.Context, log *zap.Logger) callEvent {
		ctx, cancel := context.WithTimeoutCause(ctx, route.AnswerTimeout, &sip.CancelCause{Reason: byeReason(endCause{kind: endNoAnswer})})
		defer cancel()
		var responded atomic.Bool
		early := onEarly
		if early != nil {
			early = func(m pbxMedia) { responded.Store(true); onEarly(m) }
		}
		pbx, err := c.g.dialer.Invite(ctx, sip.InviteRequest{
			Trunk:       trunk,
			To:          route.Destination,
			FromUser:    ev.CallerID(),
			DisplayName: ev.ProfileName,
			Headers:     metaHeaders(ev),
			LogRef:      ev.CallID,
			Codecs:      codecs,
			OnProgress: func(code int, reason string) {
				responded.Store(true)
				log.Debug("sip progress", zap.Int("code", code), zap.String("reason", reason))
			},
		}, early)
		return callEvent{pbx: pbx, err: err, timedOut: errors.Is(ctx.Err(), context.DeadlineExceeded), responded: responded.Load()}
	})
}

// inviteDone: the PBX answered, refused, or did not answer in time.
func (c *call) inviteDone(e callEvent) {
	c.trunkHealth(e)
	if e.err != nil {
		c.inviteFailed(e)
		return
	}
	c.pbx = e.pbx
	c.pbxAnswered("pbx answered")
	if c.g711 != nil {
		// Meta is answered now, in the PBX's codec if Meta offered it.
		codec, why := answerCodec(c.g711, c.pbx.Codec())
		logCodecChoice(c.log, codec, why)
		if c.move(stateAnswering) {
			c.answer(codec)
		}
		return
	}
	if !c.move(stateAwaitingMedia) {
		return
	}
	// The bridge is built before accept so nothing can fail between accept
	// and the first packet; it sends only once accept returned 200 (no
	// media before accept: Meta, Cloud API Calling).
	if err := c.buildBridge(c.pbx); err != nil {
		c.end(endCause{kind: endBridgeFailed, detail: "bridge: " + err.Error()})
		return
	}
	c.attachPBX()
	c.awaitMedia()
}

// trunkHealth tells the trunk monitor how the INVITE went: refusals of
// the gateway (auth, 5xx) or silence count against the trunk.
func (c *call) trunkHealth(e callEvent) {
	code, reason := 0, ""
	var fe *sip.FinalError
	switch {
	case e.err == nil:
		code = 200
	case errors.As(e.err, &fe):
		code, reason = fe.Code, fe.Reason
	}
	failed, why := inviteFailure(code, reason, e.responded, e.err)
	c.g.ops.monitor.inviteResult(c.route.Trunk, failed, why)
}

// inviteFailed ends a call whose INVITE got no 2xx.
func (c *call) inviteFailed(e callEvent) {
	var fe *sip.FinalError
	switch {
	case errors.As(e.err, &fe):
		c.ops.sipResult(c.g.ops.metrics, fe.Code, fe.Reason)
		c.ops.pbxReason(c.g.ops.metrics, fe.Why)
		c.end(endCause{kind: endPBXRejected, detail: e.err.Error(), sipCode: fe.Code})
	case e.timedOut:
		c.end(endCause{kind: endNoAnswer, detail: "PBX did not answer within " + c.route.AnswerTimeout.String() + ": " + e.err.Error()})
	default:
		c.end(endCause{kind: endInviteFailed, detail: "INVITE: " + e.err.Error()})
	}
}

// pbxAnswered records the PBX's 200 OK and names the SIP call in the logs.
func (c *call) pbxAnswered(msg string) {
	c.ops.sipResult(c.g.ops.metrics, 200, "OK")
	c.ops.answered(c.pbx.CallID(), c.pbx.Codec().Name, c.g.now())
	c.log = c.log.With(zap.String("sip_call_id", c.pbx.CallID()))
	c.log.Info(msg, zap.String("codec", c.pbx.Codec().Name), zap.Stringer("rtp_remote", c.pbx.RemoteRTPAddr()))
}

// earlyMedia: the PBX sent a 183 with SDP on a route with early_media:
// answer. The call is bridged on it and accepted as if the PBX had
// answered, so a greeting played before the answer is heard from its start;
// the INVITE goes on, and its 200 OK changes nothing for WhatsApp.
func (c *call) earlyMedia(e callEvent) {
	c.early = e.early
	c.ops.earlyMedia(e.early.Codec().Name, c.g.now())
	c.log.Info("pbx early media: answering the whatsapp call on it", zap.String("codec", e.early.Codec().Name),
		zap.Stringer("rtp_remote", e.early.RemoteRTPAddr()))
	if !c.move(stateAwaitingMedia) {
		return
	}
	if err := c.buildBridge(c.early); err != nil {
		c.end(endCause{kind: endBridgeFailed, detail: "bridge: " + err.Error()})
		return
	}
	c.awaitMedia()
}

// answeredAfterEarly: the INVITE of a call bridged on early media ended. A
// 200 OK gives the dialog (INFO, re-INVITEs, BYE) and may change the codec;
// anything else ends the call as it would have in ringing.
func (c *call) answeredAfterEarly(e callEvent) {
	c.trunkHealth(e)
	if e.err != nil {
		c.inviteFailed(e)
		return
	}
	c.pbx = e.pbx
	c.pbxAnswered("pbx answered after its early media")
	c.attachPBX()
	if codec, early := c.pbx.Codec(), c.early.Codec(); codec != early || c.pbx.DTMFPayloadType() != c.early.DTMFPayloadType() {
		c.switchCodec(c.log, c.bridge, codec, c.pbx.DTMFPayloadType())
	}
}

// mediaUp: the WebRTC leg is connected; accept the call (a business-
// initiated call answers the agent instead).
func (c *call) mediaUp(e callEvent) {
	if c.outbound {
		c.outboundMediaUp(e)
		return
	}
	if e.err != nil {
		c.end(endCause{kind: endMediaFailed, detail: "whatsapp media not connected: " + e.err.Error()})
		return
	}
	if !c.move(stateAccepting) {
		return
	}
	ev, sdp, opaque := c.ev, c.leg.AnswerSDP(), c.acceptBizOpaque()
	c.ops.setBizOpaque(opaque)
	c.start(evAccepted, func(ctx context.Context, log *zap.Logger) callEvent {
		ctx, cancel := context.WithTimeout(ctx, c.g.timeouts.accept)
		defer cancel()
		return callEvent{err: c.graphAction(ctx, log, "accept", func(ctx context.Context) error {
			return c.g.graph.Accept(ctx, ev.PhoneNumberID, ev.CallID, sdp, opaque)
		})}
	})
}

// acceptBizOpaque is the biz_opaque_callback_data of Graph accept
// (call_records.biz_opaque): the SIP Call-ID of the PBX's dialog, empty
// when the call is accepted on early media (no dialog yet) or when off.
func (c *call) acceptBizOpaque() string {
	if mode := c.g.cfg.CallRecords.BizOpaque; c.pbx == nil || mode != "" && !strings.EqualFold(mode, BizOpaqueSIPCallID) {
		return ""
	}
	return truncateRunes(headerSafe(c.pbx.CallID()), maxBizOpaque)
}

// accepted: Meta took the call; media flows.
func (c *call) accepted(e callEvent) {
	if e.err != nil {
		c.end(endCause{kind: endGraphFailed, detail: "accept: " + e.err.Error()})
		return
	}
	if !c.move(stateBridged) {
		return
	}
	c.saveClusterInfo()
	c.bridge.Start()
	c.pbxRTP.start(c.g.now())
	c.ops.bridged(c.g.ops.metrics, c.sm.enteredAt(stateBridged).Sub(c.sm.enteredAt(stateNew)))
	c.log.Info("call bridged", zap.Stringer("chain", c.bridge))
}

// metaHeaders mirrors the headers Meta's own SIP mode sends, so one dialplan
// serves both modes.
func metaHeaders(ev whatsapp.CallEvent) []sip.Header {
	h := []sip.Header{
		{Name: "x-wa-meta-wacid", Value: ev.CallID},
		{Name: "x-wa-meta-phone-number-id", Value: ev.PhoneNumberID},
	}
	add := func(name, v string) {
		if v != "" {
			h = append(h, sip.Header{Name: name, Value: headerSafe(v)})
		}
	}
	add("x-wa-meta-user-id", ev.FromUserID)
	add("x-wa-meta-cta-payload", ev.CTAPayload)
	add("x-wa-meta-deeplink-payload", ev.DeeplinkPayload)
	return h
}

// headerSafe drops characters that would break a SIP header line (payloads
// come from the caller's side and must not inject headers).
func headerSafe(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch >= 0x20 && ch != 0x7f {
			b = append(b, ch)
		}
	}
	return string(b)
}

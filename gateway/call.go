package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// Outcomes of a call, as logged when it ends.
const (
	OutcomeBridged      = "bridged"       // both sides talked; ended by either
	OutcomeNoRoute      = "no_route"      // rejected: nothing configured for it
	OutcomePBXRejected  = "pbx_rejected"  // the PBX answered with a final error (busy, decline, …)
	OutcomeNoAnswer     = "no_answer"     // the PBX did not answer within the route's answer_timeout
	OutcomeCallerHungUp = "caller_hungup" // the caller left before the PBX answered
	OutcomeFailed       = "failed"        // a local or Graph error
	OutcomeShutdown     = "shutdown"      // ended because the gateway stopped
)

// graphTimeout bounds one Graph action including its retries.
const graphTimeout = 30 * time.Second

// terminateGrace is how long a closed WebRTC connection waits for Meta's
// terminate webhook before the call is treated as a media failure.
const terminateGrace = 2 * time.Second

// call is one WhatsApp call through its life: connect → answer → pre_accept
// → INVITE → 200 OK → accept → media → hang-up on both sides.
type call struct {
	g   *Gateway
	ev  whatsapp.CallEvent
	log *zap.Logger

	terminated chan struct{} // closed when Meta's terminate webhook arrives
	termOnce   sync.Once

	mu        sync.Mutex
	state     string
	sipCallID string

	ops *callOps // phase times, results and media for metrics and the call record
}

func newCall(g *Gateway, ev whatsapp.CallEvent) *call {
	return &call{
		g:          g,
		ev:         ev,
		log:        g.log.With(zap.String("call_id", ev.CallID), zap.String("phone_number_id", ev.PhoneNumberID)),
		terminated: make(chan struct{}),
		state:      "connecting",
		ops:        newCallOps(),
	}
}

// callerTerminated is called for Meta's terminate webhook.
func (c *call) callerTerminated(ev whatsapp.CallEvent) {
	c.terminatedBy(ev)
	c.termOnce.Do(func() {
		c.log.Info("whatsapp terminate received", zap.String("status", ev.Status), zap.Any("errors", ev.Errors))
		close(c.terminated)
	})
}

func (c *call) callerGone() bool {
	select {
	case <-c.terminated:
		return true
	default:
		return false
	}
}

func (c *call) setState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
	c.log.Debug("call state", zap.String("state", s))
}

// run drives the call to its end; every path releases the WebRTC leg, the
// SIP dialog and its RTP port.
func (c *call) run(ctx context.Context) {
	start := time.Now()
	outcome, detail := c.setupAndBridge(ctx)
	c.setState("ended")
	outcome, detail = c.finish(ctx, outcome, detail)
	c.log.Info("call ended", zap.String("outcome", outcome), zap.String("detail", detail),
		zap.String("sip_call_id", c.sipCallID), zap.Duration("duration", time.Since(start)))
}

func (c *call) setupAndBridge(ctx context.Context) (outcome, detail string) {
	ev := c.ev
	c.log.Info("whatsapp call connect", zap.String("caller", ev.CallerID()), zap.String("name", ev.ProfileName),
		zap.String("cta_payload", ev.CTAPayload), zap.String("deeplink_payload", ev.DeeplinkPayload))

	router, trunks := c.g.routing()
	route, err := router.RouteFor(ev.PhoneNumberID, ev.CTAPayload, ev.DeeplinkPayload)
	if err != nil {
		c.refuse(err.Error())
		return OutcomeNoRoute, err.Error()
	}
	trunk := trunks[route.Trunk]
	c.log = c.log.With(zap.String("route", route.Name), zap.String("trunk", route.Trunk))
	if outcome, why := c.admit(route); outcome != "" {
		c.refuse(why) // draining, or the trunk is down: at once, no ringing into nothing
		return outcome, why
	}

	// 1. Answer Meta's offer (local and at once: our candidates are known; ICE starts).
	answerCtx, cancelAnswer := context.WithTimeout(ctx, 10*time.Second)
	leg, err := c.g.media.Answer(answerCtx, ev.SDP, c.log)
	cancelAnswer()
	if err != nil {
		c.refuse("cannot answer the offer")
		return OutcomeFailed, err.Error()
	}
	defer leg.Close()

	// 2. pre_accept before the INVITE, so ICE/DTLS come up while the PBX
	// rings and its greeting is not clipped (whatsapp-calling.md, media rules).
	if c.callerGone() {
		return OutcomeCallerHungUp, "terminate before pre_accept"
	}
	c.setState("pre_accepting")
	if err := c.graph(ctx, "pre_accept", func(ctx context.Context) error {
		return c.g.graph.PreAccept(ctx, ev.PhoneNumberID, ev.CallID, leg.AnswerSDP())
	}); err != nil {
		c.refuse("pre_accept failed")
		return OutcomeFailed, "pre_accept: " + err.Error()
	}

	c.ops.mark(phasePreAccept)

	// 3. INVITE the PBX; Meta's terminate or the answer timeout CANCELs it.
	sc, outcome, detail := c.invitePBX(ctx, route, trunk)
	if sc == nil {
		return outcome, detail
	}
	defer sc.Close()
	c.ops.mark(phaseAnswer)
	c.sipResult(200, "OK")
	c.mu.Lock()
	c.sipCallID = sc.CallID()
	c.mu.Unlock()
	c.log = c.log.With(zap.String("sip_call_id", sc.CallID()))
	codec := sc.Codec()
	c.log.Info("pbx answered", zap.String("codec", codec.Name), zap.Stringer("rtp_remote", sc.RemoteRTPAddr()))

	hangupSIP := func() {
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sc.Hangup(hctx); err != nil {
			c.log.Warn("sip BYE failed", zap.Error(err))
		}
	}
	if c.callerGone() {
		hangupSIP()
		return OutcomeCallerHungUp, "caller hung up as the PBX answered"
	}

	// 4. The bridge is built before accept so nothing can fail between
	// accept and the first packet; it starts only once accept returned 200
	// (no media before accept, whatsapp-calling.md §5).
	waIn, sipIn := c.meterLegs(leg, sc, codec) // jitter of each leg's input
	info := newInfoSender(sc, trunk.DTMF == rtpbridge.DTMFModeInfo, c.log)
	defer info.stop()
	bridge, err := rtpbridge.New(rtpbridge.Config{
		WhatsAppIn:         waIn,
		WhatsAppOut:        leg,
		WhatsAppSSRC:       leg.SSRC(),
		SIPIn:              sipIn,
		SIPOut:             sc,
		SIPCodec:           bridgeCodec(codec),
		SIPDTMFPayloadType: sc.DTMFPayloadType(),
		DTMFMode:           trunk.DTMF,
		OnDigit: func(from string, d rune) {
			c.log.Info("dtmf digit", zap.String("from", from), zap.String("digit", string(d)))
			if from == "whatsapp" {
				info.send(d)
			}
		},
		OpusComplexity: *c.g.cfg.Media.OpusComplexity,
	})
	if err != nil {
		hangupSIP()
		c.terminateWhatsApp()
		return OutcomeFailed, "bridge: " + err.Error()
	}
	// Every return from here on frees the bridge (goroutines and libopus
	// state): the legs first, so its readers return, then the bridge.
	defer func() {
		leg.Close()
		sc.Close()
		bridge.Close()
	}()
	// The PBX may start its greeting right after the 200 OK: hold that audio
	// and play it once WhatsApp accepts (nothing may go to WhatsApp before).
	bridge.StartSIPReceive()
	// Digits the PBX sends by SIP INFO reach the caller whatever the mode.
	sc.SetOnInfoDigit(func(d rune, dur time.Duration) {
		c.log.Info("dtmf digit", zap.String("from", "sip-info"), zap.String("digit", string(d)))
		if err := bridge.SendDigitToWhatsApp(d, dur); err != nil {
			c.log.Warn("dtmf digit not forwarded", zap.Error(err))
		}
	})
	sc.SetOnMediaChange(func(mc sip.MediaChange) {
		c.log.Info("pbx changed the media", zap.String("direction", mc.Direction), zap.String("codec", mc.Codec.Name),
			zap.Stringer("rtp_remote", mc.RemoteRTPAddr))
		if err := bridge.SetSIPCodec(bridgeCodec(mc.Codec), mc.DTMFPayloadType); err != nil {
			c.log.Warn("cannot switch the bridge to the new codec", zap.Error(err))
		} else {
			c.codecChanged(mc.Codec) // metrics, jitter meter and call record follow
		}
	})
	c.setState("accepting")
	if err := c.graph(ctx, "accept", func(ctx context.Context) error {
		return c.g.graph.Accept(ctx, ev.PhoneNumberID, ev.CallID, leg.AnswerSDP(), "")
	}); err != nil {
		hangupSIP()
		c.terminateWhatsApp()
		return OutcomeFailed, "accept: " + err.Error()
	}
	bridge.Start()
	c.setState("bridged")
	c.bridged(bridge)
	c.log.Info("call bridged", zap.Stringer("chain", bridge))

	// 5. Until one side hangs up.
	detail2 := c.awaitHangup(ctx, sc, leg, hangupSIP)
	// Close the legs so the bridge's readers return, then the bridge.
	leg.Close()
	sc.Close()
	bridge.Close()
	st := bridge.Stats()
	// Reflect, not Any: Stats is a Stringer, and the object keeps its
	// counters machine-readable (wasim load sums them from the log).
	c.log.Info("media stats", zap.Reflect("stats", st))
	if ctx.Err() != nil {
		return OutcomeShutdown, detail2
	}
	return OutcomeBridged, detail2
}

// invitePBX sends the INVITE and waits for the PBX's answer: a call, or
// (nil, outcome, detail) once the WhatsApp side has been told (reject) or
// the caller left first. Meta's terminate or the route's answer timeout
// CANCELs the INVITE.
func (c *call) invitePBX(ctx context.Context, route Route, trunk *sip.Trunk) (sc *sip.Call, outcome, detail string) {
	ev := c.ev
	c.setState("ringing")
	inviteCtx, cancelInvite := context.WithTimeout(ctx, route.AnswerTimeout)
	go func() {
		select {
		case <-c.terminated:
			cancelInvite()
		case <-inviteCtx.Done():
		}
	}()
	c.ops.mark(phaseInvite)
	sc, err := c.g.ua.Invite(inviteCtx, sip.InviteRequest{
		Trunk:       trunk,
		To:          route.Destination,
		FromUser:    ev.CallerID(),
		DisplayName: ev.ProfileName,
		Headers:     metaHeaders(ev),
		LogRef:      ev.CallID,
		OnProgress: func(code int, reason string) {
			c.log.Debug("sip progress", zap.Int("code", code), zap.String("reason", reason))
		},
	})
	inviteErr := inviteCtx.Err()
	cancelInvite()
	if err != nil {
		var fe *sip.FinalError
		switch {
		case c.callerGone():
			return nil, OutcomeCallerHungUp, "caller hung up while the PBX rang"
		case errors.As(err, &fe):
			c.sipResult(fe.Code, fe.Reason)
			c.refuse(fmt.Sprintf("PBX answered %d %s", fe.Code, fe.Reason))
			return nil, OutcomePBXRejected, err.Error()
		case errors.Is(inviteErr, context.DeadlineExceeded):
			c.refuse("PBX did not answer within " + route.AnswerTimeout.String())
			return nil, OutcomeNoAnswer, err.Error()
		case ctx.Err() != nil:
			c.refuse("gateway shutting down")
			return nil, OutcomeShutdown, err.Error()
		default:
			c.refuse("INVITE failed")
			return nil, OutcomeFailed, err.Error()
		}
	}
	return sc, "", ""
}

// awaitHangup holds the bridged call until one side ends it, ends the
// other side, and says how it ended.
func (c *call) awaitHangup(ctx context.Context, sc *sip.Call, leg *webrtc.Leg, hangupSIP func()) string {
	var detail2 string
	select {
	case <-sc.Done():
		detail2 = "pbx hung up (" + sc.EndReason() + ")"
		c.ops.setHangupBy(byPBX)
		c.terminateWhatsApp()
	case <-c.terminated:
		detail2 = "caller hung up"
		c.ops.setHangupBy(byCaller)
		hangupSIP()
	case <-leg.Failed():
		// A caller who hangs up closes the WebRTC connection, often before
		// Meta's terminate webhook arrives: give it a moment to tell the two
		// apart, so a normal hang-up is not taken for a media failure.
		select {
		case <-c.terminated:
			detail2 = "caller hung up"
			c.ops.setHangupBy(byCaller)
		case <-time.After(terminateGrace):
			detail2 = "whatsapp media connection failed"
			if err := leg.Err(); err != nil && !errors.Is(err, webrtc.ErrLegClosed) {
				detail2 += ": " + err.Error() // ICE consent lost, DTLS failed, …
			}
			c.ops.setHangupBy(byGateway)
			c.terminateWhatsApp()
		}
		hangupSIP()
	case <-ctx.Done():
		detail2 = "gateway shutting down"
		hangupSIP()
		c.terminateWhatsApp()
	}
	return detail2
}

// bridgeCodec is the SIP leg's codec as the bridge names it.
func bridgeCodec(c sip.Codec) rtpbridge.Codec {
	return rtpbridge.Codec{Name: c.Name, PayloadType: c.PayloadType, ClockRate: c.ClockRate}
}

// refuse ends a call that was never accepted: reject is allowed until accept
// (whatsapp-calling.md §3); if Meta refuses it, terminate instead.
func (c *call) refuse(reason string) {
	if c.callerGone() {
		return
	}
	c.log.Info("rejecting whatsapp call", zap.String("reason", reason))
	err := c.graph(context.Background(), "reject", func(ctx context.Context) error {
		return c.g.graph.Reject(ctx, c.ev.PhoneNumberID, c.ev.CallID)
	})
	if err != nil {
		c.terminateWhatsApp()
	}
}

// terminateWhatsApp sends terminate, which Meta bills from: always send it
// when the business side ends the call.
func (c *call) terminateWhatsApp() {
	if c.callerGone() {
		return
	}
	_ = c.graph(context.Background(), "terminate", func(ctx context.Context) error {
		return c.g.graph.Terminate(ctx, c.ev.PhoneNumberID, c.ev.CallID)
	})
}

// graph runs one Graph action with a bound and logs its failure.
func (c *call) graph(parent context.Context, action string, do func(context.Context) error) error {
	if parent.Err() != nil {
		parent = context.Background() // shutting down: still tell Meta
	}
	ctx, cancel := context.WithTimeout(parent, graphTimeout)
	defer cancel()
	if err := do(ctx); err != nil {
		c.log.Warn("graph action failed", zap.String("action", action), zap.Error(err))
		c.graphFailed(action, err)
		return err
	}
	c.log.Debug("graph action ok", zap.String("action", action))
	return nil
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

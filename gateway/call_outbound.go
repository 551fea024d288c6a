package gateway

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// Business-initiated calls: an agent dials a WhatsApp user from the PBX.
// The same machine as user-initiated calls (state.go), with its own states
// up to Meta's answer:
//
//	agent's INVITE → checking_permission → [awaiting_permission] →
//	connecting (offer, Graph connect) → ringing_user (RINGING → 180) →
//	awaiting_media (Meta's answer applied; ICE and DTLS) →
//	accepting (200 OK to the agent) → bridged
//
// Meta's webhooks for the call (its answer in a connect webhook, the
// statuses, the terminate) reach the call by its WhatsApp call id, which
// Graph connect returns; those that come first are held (registry.hold).

// metaEvent is a webhook for a business-initiated call: Meta's answer (a
// connect webhook) or a status.
type metaEvent struct {
	answer *whatsapp.CallEvent
	status *whatsapp.StatusEvent
}

// permissionOutcome is what the permission step found.
type permissionOutcome struct {
	allowed  bool     // place the call now
	waiting  bool     // a request was sent; wait for the reply
	refusal  *refusal // else: refuse the agent so
	outcome  string   // with this outcome
	reqKind  string   // interactive or template, when a request was sent
	replyErr error
}

// maxMetaEvents bounds the webhooks queued for one call (its answer, three
// statuses, with room for duplicates Meta's retries slip past the dedupe).
const maxMetaEvents = 16

// startOutbound takes an agent's INVITE (sip.UAConfig.OnInvite).
func (g *Gateway) startOutbound(ic *sip.InboundCall) {
	g.startAgentCall(inboundAgent{ic})
}

// startAgentCall starts the call of an agent's INVITE, or refuses it; it
// returns the call (nil when refused at once).
func (g *Gateway) startAgentCall(a agentCall) *call {
	log := g.log.With(zap.String("sip_call_id", a.CallID()), zap.String("trunk", a.Trunk().Name))
	if g.ctx.Err() != nil {
		_ = a.Reject(refuseShutdown.code, refuseShutdown.phrase, q850(&refuseShutdown), refuseShutdown.text)
		_ = a.Close()
		return nil
	}
	c := newOutboundCall(g, a, log)
	ctx := c.ops.bind(g.ctx)
	key := sipCallPrefix + a.CallID()
	ok, why := g.reg.begin(key, c)
	if ok && !g.claimCall(c, key, log) {
		g.reg.end(key)
		ok, why = false, "another instance has this INVITE"
	}
	if !ok {
		c.ops.hangup(context.Canceled)
		log.Info("agent INVITE ignored", zap.String("why", why))
		_ = a.Reject(482, "Loop Detected", sip.Reason{}, why)
		_ = a.Close()
		return nil
	}
	g.calls.Add(1)
	go func() {
		defer g.calls.Done()
		defer g.reg.end(key)
		defer g.releaseCall(c)
		c.run(ctx)
		if c.waCallID != "" {
			g.reg.unplace(c.waCallID)
		}
	}()
	return c
}

func newOutboundCall(g *Gateway, agent agentCall, log *zap.Logger) *call {
	c := &call{
		g:        g,
		ev:       whatsapp.CallEvent{Direction: "BUSINESS_INITIATED"},
		sm:       newStateMachine(g.now),
		ops:      newCallOps(),
		events:   make(chan callEvent, 4),
		meta:     make(chan metaEvent, maxMetaEvents),
		log:      log,
		outbound: true,
		agent:    agent,
	}
	c.actions, c.cancelActions = context.WithCancelCause(context.Background())
	return c
}

// beginOutbound routes the agent's INVITE, admits it, and reads the user's
// call permission.
func (c *call) beginOutbound() {
	trunk, user := c.agent.Trunk().Name, c.agent.User()
	routes := c.g.outboundRoutes()
	oc, ref := routeOutbound(routes, inviteInfo{trunk: trunk, user: user, header: c.agent.Header, sipCallID: c.agent.CallID()})
	if ref != nil {
		c.end(endCause{kind: endRefused, outcome: OutcomeNoRoute, detail: ref.text, refusal: ref})
		return
	}
	c.out = oc
	_, _, media := c.g.routing()
	c.dtmf, c.g711Trunk = media[trunk].dtmf, media[trunk].g711
	c.log = c.log.With(zap.String("route", oc.route.Name), zap.String("phone_number_id", oc.pnid),
		zap.Stringer("user", oc.user))
	c.ops.setOutbound(oc, trunk, c.agent.FromUser())
	c.log.Info("agent dials a whatsapp user")
	if c.g.ops.draining.Load() {
		c.end(endCause{kind: endRefused, outcome: OutcomeDraining, detail: refuseDraining.text, refusal: &refuseDraining})
		return
	}
	if refused, ok := c.g.admitLimits(c, oc.pnid); !ok {
		c.end(refused)
		return
	}
	if !c.move(stateCheckingPermission) {
		return
	}
	perms, route := c.g.perms, oc.route
	c.start(evPermission, func(ctx context.Context, log *zap.Logger) callEvent {
		return callEvent{perm: checkPermission(ctx, perms, c.g.ops.metrics, oc, route, log)}
	})
}

// checkPermission reads the user's permission and, per the route, sends a
// request: it runs as the call's action.
func checkPermission(ctx context.Context, perms *permissions, m *metrics, oc outboundCall, route OutboundRouteConfig, log *zap.Logger) permissionOutcome {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	perm, err := perms.state(ctx, oc.pnid, oc.user, false)
	if err != nil {
		m.permissionChecks.WithLabelValues("error", "false").Inc()
		return permissionOutcome{refusal: graphRefusal(err), outcome: OutcomeMetaRefused, replyErr: err}
	}
	m.permissionChecks.WithLabelValues(perm.Status, "false").Inc()
	if perm.CanCall {
		return permissionOutcome{allowed: true}
	}
	if perm.Status != "no_permission" && perm.Status != "" {
		// Permission, but no call now: a limit (Meta's 100 connected calls a
		// day to one user).
		return permissionOutcome{refusal: refusalForMeta(138012, ""), outcome: OutcomeNoPermission}
	}
	switch route.Permission {
	case PermissionRequest, PermissionWait:
		if !perm.CanRequest {
			return permissionOutcome{refusal: refusalForMeta(138009, ""), outcome: OutcomeNoPermission}
		}
		kind, err := perms.request(ctx, oc.pnid, oc.user, route.PermissionMessage, route.PermissionTemplate)
		if err != nil {
			log.Warn("call permission request failed", zap.Error(err))
			return permissionOutcome{refusal: graphRefusal(err), outcome: OutcomeNoPermission, replyErr: err}
		}
		log.Info("call permission request sent", zap.String("kind", kind))
		if route.Permission == PermissionRequest {
			return permissionOutcome{refusal: refusePermissionRequested(kind), outcome: OutcomePermissionRequested, reqKind: kind}
		}
		return permissionOutcome{waiting: true, reqKind: kind}
	}
	return permissionOutcome{refusal: refusalForMeta(138006, ""), outcome: OutcomeNoPermission}
}

// graphRefusal is the refusal for a failed Graph request: Meta's error
// mapped, else the API unreachable.
func graphRefusal(err error) *refusal {
	var ge *whatsapp.GraphError
	if errors.As(err, &ge) && ge.Code != 0 {
		return refusalForMeta(ge.Code, ge.Details)
	}
	r := refuseGraphDown
	return &r
}

// permissionRead: place the call, wait for the user's reply, or refuse.
func (c *call) permissionRead(e callEvent) {
	p := e.perm
	switch {
	case p.allowed:
		c.place()
	case p.waiting:
		if !c.move(stateAwaitingPermission) {
			return
		}
		c.ringAgent() // the agent hears ringing while the user decides
		wait, perms, oc := c.out.route.PermissionWait, c.g.perms, c.out
		replies, stop := perms.wait(oc.pnid, oc.user)
		c.start(evPermissionReply, func(ctx context.Context, _ *zap.Logger) callEvent {
			defer stop()
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case r := <-replies:
				if r.Accepted {
					return callEvent{perm: permissionOutcome{allowed: true}}
				}
				return callEvent{perm: permissionOutcome{refusal: refusePermissionDeclined(), outcome: OutcomePermissionDeclined}}
			case <-t.C:
				return callEvent{perm: permissionOutcome{refusal: refusePermissionTimeout(wait), outcome: OutcomePermissionTimeout}}
			case <-ctx.Done():
				return callEvent{err: ctx.Err()}
			}
		})
	default:
		c.end(endCause{kind: endRefused, outcome: p.outcome, detail: p.refusal.text, refusal: p.refusal})
	}
}

// permissionReplied: the user accepted (place the call) or not.
func (c *call) permissionReplied(e callEvent) {
	if e.err != nil {
		return // the call ended meanwhile
	}
	if !e.perm.allowed {
		c.end(endCause{kind: endRefused, outcome: e.perm.outcome, detail: e.perm.refusal.text, refusal: e.perm.refusal})
		return
	}
	c.log.Info("the user granted call permission: placing the call")
	c.place()
}

// place makes the WebRTC offer and sends it to Meta (Graph connect). On a
// g711 trunk whose agent's INVITE negotiated G.711, that codec is offered
// first: Meta's answer may pick it (whatsappcodec.go).
func (c *call) place() {
	if !c.move(stateConnecting) {
		return
	}
	oc := c.out
	g711 := ""
	if agent := c.agent.Codec().Name; c.g711Trunk {
		if g711 = g711Name(agent); g711 == "" {
			logCodecChoice(c.log, webrtc.CodecOpus, "the agent's codec "+agent+" is not G.711")
		}
	}
	c.start(evPlaced, func(ctx context.Context, log *zap.Logger) callEvent {
		ctx, cancel := context.WithTimeout(ctx, c.g.timeouts.graph)
		defer cancel()
		leg, err := c.g.offerer.Offer(ctx, g711, log)
		if err != nil {
			return callEvent{err: err}
		}
		id, err := c.g.graph.Connect(ctx, oc.pnid, whatsapp.ConnectRequest{To: oc.user.ref(), SDPOffer: leg.OfferSDP(), BizOpaque: oc.bizOpaque})
		if err != nil {
			c.ops.graphFailed("connect", err)
		}
		return callEvent{offerLeg: leg, waCallID: id, err: err}
	})
}

// placed: Meta took the call (the user's phone will ring) or refused it.
func (c *call) placed(e callEvent) {
	if e.offerLeg != nil {
		c.offerLeg, c.leg = e.offerLeg, e.offerLeg
	}
	if e.err != nil {
		ref := graphRefusal(e.err)
		outcome := OutcomeMetaRefused
		if errors.Is(e.err, whatsapp.ErrOutcomeUnknown) {
			// Meta may ring the user with no id to end it by: its webhooks
			// (carrying biz_opaque) are the only trace.
			c.log.Error("graph connect outcome unknown: the user's phone may ring", zap.Error(e.err))
			outcome = OutcomeFailed
		}
		c.end(endCause{kind: endRefused, outcome: outcome, detail: "connect: " + e.err.Error(), refusal: ref})
		return
	}
	c.waCallID = e.waCallID
	c.ops.setCallID(e.waCallID)
	c.log = c.log.With(zap.String("call_id", e.waCallID))
	if !c.move(stateRingingUser) {
		return
	}
	c.log.Info("whatsapp call placed")
	c.ringing = time.NewTimer(c.out.route.RingTimeout)
	// Held webhooks: statuses and the answer first, a terminate last, so a
	// REJECTED that came after it still says why the user was not reached.
	held := c.g.reg.place(e.waCallID, c)
	held = append(held, c.g.cl.place(e.waCallID, c.log)...) // those other instances took
	c.saveClusterInfo()
	slices.SortStableFunc(held, func(a, b heldEvent) int { return cmpBool(isTerminate(a), isTerminate(b)) })
	for _, h := range held {
		switch {
		case h.status != nil:
			c.metaEvent(metaEvent{status: h.status})
		case h.call != nil && strings.EqualFold(h.call.Event, "connect"):
			c.metaEvent(metaEvent{answer: h.call})
		case h.call != nil: // a terminate that came first
			c.ops.terminated(*h.call)
			c.end(c.userTerminated(h.call))
		}
		if c.cause.kind != 0 {
			return
		}
	}
}

func isTerminate(h heldEvent) bool {
	return h.call != nil && strings.EqualFold(h.call.Event, "terminate")
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// postMeta hands a webhook to the call (from the webhook's goroutine). The
// queue is bounded; Meta sends a call a handful.
func (c *call) postMeta(m metaEvent) {
	select {
	case c.meta <- m:
	default:
		c.log.Warn("webhook for the call dropped: its queue is full")
	}
}

// metaEvent takes Meta's answer or a status, on run's goroutine.
//
// Meta's answer (a connect webhook) may come while the user's phone rings:
// ICE and DTLS come up then, and the bridge starts, sending WhatsApp
// silence (a business-initiated call has no accept: the business may send
// first). The user has answered when Meta says ACCEPTED, or when the
// user's first audio arrives, whichever comes first (ACCEPTED "typically
// always arrives after the call has been established"); only then does
// the agent get its 200 OK.
func (c *call) metaEvent(m metaEvent) {
	if c.cause.kind != 0 {
		return
	}
	if st := m.status; st != nil {
		c.ops.status(st.Status)
		switch strings.ToUpper(st.Status) {
		case "RINGING":
			c.log.Info("whatsapp user ringing")
			c.ringAgent()
		case "ACCEPTED":
			c.userAnswered("meta said ACCEPTED")
		case "REJECTED":
			c.log.Info("whatsapp user declined the call")
			c.declined = true
			if !c.reached(stateAccepting) {
				c.end(endCause{kind: endUserDeclined, detail: "the WhatsApp user declined the call", refusal: &refuseUserDeclined})
			}
		}
		return
	}
	ans := m.answer
	if ans == nil || c.offerLeg == nil || c.answerSet {
		c.log.Debug("whatsapp answer ignored", zap.Stringer("state", c.sm.current()), zap.Bool("answered", c.answerSet))
		return
	}
	if err := c.offerLeg.SetAnswer(ans.SDP); err != nil {
		c.end(endCause{kind: endMediaFailed, detail: "meta's answer: " + err.Error(), refusal: &refuseMediaFailed})
		return
	}
	c.answerSet = true
	c.log.Info("whatsapp answer received: connecting media")
	if agent := c.agent.Codec().Name; c.g711Trunk && g711Name(agent) != "" {
		if got := c.offerLeg.Codec(); got.IsG711() {
			logCodecChoice(c.log, got.Name, "meta answered "+got.Name+", the agent's codec: passthrough")
		} else {
			logCodecChoice(c.log, got.Name, "meta answered "+got.Name+" to our "+agent+" offer (the number's audio.additional_codecs): transcoded")
		}
	}
}

// outboundMediaStarts: ICE and DTLS are up: the bridge is built on the
// agent's media and starts (silence toward WhatsApp until the agent
// talks); the user's first packet tells that the user answered.
func (c *call) outboundMediaStarts() {
	if err := c.buildBridge(c.agent); err != nil {
		c.end(endCause{kind: endBridgeFailed, detail: "bridge: " + err.Error()})
		return
	}
	c.bridge.Start()
	switch c.sm.current() {
	case stateRingingUser:
		c.listening = time.NewTicker(userAudioPoll)
	case stateAwaitingMedia:
		c.answerAgent() // the user answered first (ACCEPTED)
	}
}

// userAudioPoll is how often a ringing call looks for the user's audio.
const userAudioPoll = 20 * time.Millisecond

// userAnswered: the user picked up. The agent gets its 200 OK once the
// media is up too (bounded by timeouts.mediaUp).
func (c *call) userAnswered(how string) {
	if c.sm.current() != stateRingingUser {
		return
	}
	c.log.Info("whatsapp user answered", zap.String("how", how))
	if c.ringing != nil {
		c.ringing.Stop()
		c.ringing = nil
	}
	if c.listening != nil {
		c.listening.Stop()
		c.listening = nil
	}
	if !c.move(stateAwaitingMedia) {
		return
	}
	if c.bridge != nil {
		c.answerAgent()
		return
	}
	c.awaitMedia()
}

// ringAgent sends the agent's INVITE a 180 Ringing (once).
func (c *call) ringAgent() {
	if c.agentRang || c.pbx != nil {
		return
	}
	c.agentRang = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.agent.Ringing(ctx); err != nil {
		c.log.Debug("sip 180 to the agent failed", zap.Error(err))
	}
}

// outboundMediaUp: the wait for ICE and DTLS after the user answered ended.
func (c *call) outboundMediaUp(e callEvent) {
	if e.err != nil {
		c.end(endCause{kind: endMediaFailed, detail: "whatsapp media not connected: " + e.err.Error(), refusal: &refuseMediaFailed})
		return
	}
	if c.bridge == nil {
		c.outboundMediaStarts() // answers the agent
		return
	}
	c.answerAgent()
}

// answerAgent sends the agent's INVITE its 200 OK.
func (c *call) answerAgent() {
	if !c.move(stateAccepting) {
		return
	}
	agent := c.agent
	c.start(evAgentAnswered, func(ctx context.Context, _ *zap.Logger) callEvent {
		ctx, cancel := context.WithTimeout(ctx, 40*time.Second) // the ACK within Timer H (32 s, RFC 3261 §17.2.1)
		defer cancel()
		pbx, err := agent.Answer(ctx)
		return callEvent{pbx: pbx, err: err}
	})
}

// agentAnswered: the agent's 200 OK was ACKed: media flows both ways.
func (c *call) agentAnswered(e callEvent) {
	if e.err != nil {
		c.end(endCause{kind: endInviteFailed, detail: "answering the agent: " + e.err.Error()})
		return
	}
	c.pbx = e.pbx
	c.ops.answered(c.pbx.CallID(), c.pbx.Codec().Name, c.g.now())
	c.attachPBX()
	if !c.move(stateBridged) {
		return
	}
	c.saveClusterInfo()
	c.pbxRTP.start(c.g.now()) // the bridge runs since the media came up
	c.ops.bridged(c.g.ops.metrics, c.sm.enteredAt(stateBridged).Sub(c.sm.enteredAt(stateNew)))
	c.log.Info("call bridged", zap.Stringer("chain", c.bridge))
}

// userTerminated is Meta's terminate of a business-initiated call: a hang-up
// once bridged; before, why the user was not reached.
func (c *call) userTerminated(term *whatsapp.CallEvent) endCause {
	if c.reached(stateBridged) {
		return endCause{kind: endCallerHungUp, detail: "the WhatsApp user hung up"}
	}
	if c.declined {
		return endCause{kind: endUserDeclined, detail: "the WhatsApp user declined the call", refusal: &refuseUserDeclined}
	}
	if term != nil {
		for _, e := range term.Errors {
			if e.Code != 0 {
				ref := refusalForMeta(e.Code, e.Details)
				return endCause{kind: endRefused, outcome: OutcomeMetaRefused, detail: "whatsapp ended the call: " + ref.text, refusal: ref}
			}
		}
	}
	return endCause{kind: endNoAnswer, detail: "whatsapp ended the call before the user answered", refusal: &refuseNoAnswer}
}

// refuseAgent answers the agent's unanswered INVITE with the final response
// the end cause calls for (nothing after a CANCEL: 487 went already).
func (c *call) refuseAgent() {
	select {
	case <-c.agent.Cancelled():
		return
	default:
	}
	ref := c.agentRefusal()
	if err := c.agent.Reject(ref.code, ref.phrase, q850(ref), ref.text); err != nil {
		c.log.Debug("sip final response to the agent failed", zap.Error(err))
		return
	}
	c.ops.sipResult(c.g.ops.metrics, ref.code, ref.phrase)
	c.ops.reasonSent(q850(ref))
	c.log.Info("agent's call refused", zap.Int("code", ref.code), zap.String("reason", ref.text))
}

// agentRefusal is what the agent's INVITE is answered with for the cause.
func (c *call) agentRefusal() *refusal {
	if r := c.cause.refusal; r != nil {
		return r
	}
	switch c.cause.kind {
	case endShutdown, endDrainTimeout:
		return &refuseShutdown
	case endAdmin:
		return &refusal{code: 480, phrase: "Temporarily Unavailable", q850: 16, text: "ended through the gateway's admin API"}
	case endMediaFailed:
		return &refuseMediaFailed
	case endNoAnswer:
		return &refuseNoAnswer
	}
	return &refuseGatewayFailed
}

func q850(r *refusal) sip.Reason { return sip.Reason{Protocol: "Q.850", Cause: r.q850, Text: r.text} }

// byeReason is the Reason of the BYE the gateway sends (byeReason), in
// the words of the call's direction.
func (c *call) byeReason() sip.Reason {
	r := byeReason(c.cause)
	if c.outbound && c.cause.kind == endCallerHungUp {
		r.Text = "whatsapp user hung up"
	}
	return r
}

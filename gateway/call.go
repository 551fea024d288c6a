package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
)

// callTimeouts bound a call's actions. New sets the defaults; tests
// shorten them.
type callTimeouts struct {
	graph time.Duration // one Graph action, retries included
	// terminateFor bounds the retries of a failed terminate; the first
	// retry waits terminateBackoff, each next one twice as long (8 s at most).
	terminateFor     time.Duration
	terminateBackoff time.Duration
	// accept bounds Graph accept apart: the PBX's agent is already on the
	// line, and waits in silence until it returns.
	accept time.Duration
	answer time.Duration // building the WebRTC answer (local)
	// mediaUp bounds the wait, once the PBX answered, for ICE and DTLS to
	// be up before accept.
	mediaUp time.Duration
	bye     time.Duration // the PBX's answer to our BYE
	// terminateGrace is how long a failed WebRTC leg waits for Meta's
	// terminate webhook before the call is taken for a media failure: a
	// caller who hangs up closes the connection, often before the webhook.
	terminateGrace time.Duration
	// settle bounds the wait, once a call is over, for the actions it
	// cancelled (an INVITE's CANCEL, a Graph request) to return.
	settle time.Duration
	// pbxWatch is how often a bridged call looks for the PBX's RTP: a
	// silent PBX is noticed within pbx_rtp_timeout + pbxWatch (New sets it
	// to a fifth of the timeout, at most 5 s).
	pbxWatch time.Duration
}

var defaultCallTimeouts = callTimeouts{
	graph:            30 * time.Second,
	terminateFor:     2 * time.Minute,
	terminateBackoff: time.Second,
	accept:           8 * time.Second,
	answer:           10 * time.Second,
	mediaUp:          10 * time.Second,
	bye:              5 * time.Second,
	terminateGrace:   2 * time.Second,
	settle:           35 * time.Second,
	pbxWatch:         5 * time.Second,
}

// eventKind is something that happened to a call: an action it started
// returned, or the caller hung up. The PBX's BYE, a failed WebRTC leg and
// the call's context are watched by the call's goroutine directly.
type eventKind uint8

const (
	evAnswered         eventKind = iota + 1 // the WebRTC answer is made (leg) or failed
	evPreAccepted                           // Graph pre_accept returned
	evInviteDone                            // the INVITE got its final response (pbx) or failed
	evMediaUp                               // the WebRTC leg is connected, or not in time
	evAccepted                              // Graph accept returned
	evCallerTerminated                      // Meta's terminate webhook
	evEarlyMedia                            // the PBX sent a 183 with SDP (route early_media: answer)
	// Business-initiated calls (call_outbound.go).
	evPermission      // the user's call permission was read (and a request sent, per the route)
	evPermissionReply // the user replied to the request, or did not in time
	evPlaced          // the WebRTC offer was made and Graph connect returned
	evAgentAnswered   // the agent's INVITE got its 200 OK and ACK
)

// isResult says whether an event is an action's result (the others come
// from outside: the caller's terminate, the INVITE's early media).
func (k eventKind) isResult() bool { return k != evCallerTerminated && k != evEarlyMedia }

// resultOf is the state in which each action's result is awaited.
var resultOf = map[eventKind]callState{
	evAnswered:    stateAnswering,
	evPreAccepted: statePreAccepting,
	evInviteDone:  stateRinging,
	evMediaUp:     stateAwaitingMedia,
	evAccepted:    stateAccepting,

	evPermission:      stateCheckingPermission,
	evPermissionReply: stateAwaitingPermission,
	evPlaced:          stateConnecting,
	evAgentAnswered:   stateAccepting,
}

type callEvent struct {
	kind     eventKind
	err      error
	leg      waLeg    // evAnswered
	pbx      pbxCall  // evInviteDone
	early    pbxMedia // evEarlyMedia
	timedOut bool     // evInviteDone: the route's answer_timeout ended the INVITE
	// responded (evInviteDone): the PBX sent some response (even 100
	// Trying) before the INVITE ended.
	responded bool
	term      *whatsapp.CallEvent // evCallerTerminated: Meta's terminate webhook

	// Business-initiated calls.
	perm     permissionOutcome // evPermission, evPermissionReply
	offerLeg waOfferLeg        // evPlaced
	waCallID string            // evPlaced: Meta's call id
}

// call is one WhatsApp call through its life, driven by one goroutine
// (run) through the states of state.go. Other goroutines only post events
// (callerTerminated) or read what callOps and stateMachine guard.
type call struct {
	g      *Gateway
	ev     whatsapp.CallEvent
	sm     *stateMachine
	ops    *callOps
	events chan callEvent // buffered: each action posts once, terminate once

	termOnce sync.Once

	// Owned by run's goroutine.
	log           *zap.Logger
	ctx           context.Context // shutdown, drain timeout, admin hang-up
	actions       context.Context // the actions in flight; cancelled when the call ends
	cancelActions context.CancelCauseFunc
	inflight      int
	route         Route
	trunk         *sip.Trunk
	dtmf          dtmfPolicy // the trunk's
	g711Trunk     bool       // the trunk's whatsapp_codec is g711
	// g711 is, on a g711 trunk, the G.711 codecs Meta offered that the
	// trunk takes: such a call INVITEs first and answers Meta once the PBX
	// answered (whatsappcodec.go). nil on every other call.
	g711    []string
	leg     waLeg
	pbx     pbxCall
	early   pbxMedia // the PBX's early media the bridge was built on, before its 200 OK
	bridge  *rtpbridge.Bridge
	info    *infoSender
	cause   endCause
	pbxGone bool         // its BYE came: nothing to send it
	pbxRTP  *pbxRTPWatch // made with the bridge
	cl      callCluster  // its registration and count toward the limits (cluster_call.go)

	// Business-initiated calls (call_outbound.go): the agent's INVITE, its
	// route, Meta's call id once connect returned it, and the webhooks
	// for it (Meta's answer, the call's statuses).
	outbound  bool
	agent     agentCall
	out       outboundCall
	waCallID  string
	offerLeg  waOfferLeg
	meta      chan metaEvent
	ringing   *time.Timer  // ring_timeout, from connect to the user's answer
	declined  bool         // Meta said REJECTED
	agentRang bool         // 180 sent to the agent
	answerSet bool         // Meta's SDP answer applied to offerLeg
	listening *time.Ticker // media up, the user not answered yet: looks for the user's first packet
}

func newCall(g *Gateway, ev whatsapp.CallEvent) *call {
	c := &call{
		g:      g,
		ev:     ev,
		sm:     newStateMachine(g.now),
		ops:    newCallOps(),
		events: make(chan callEvent, 4),
		log:    g.log.With(zap.String("call_id", ev.CallID), zap.String("phone_number_id", ev.PhoneNumberID)),
	}
	c.actions, c.cancelActions = context.WithCancelCause(context.Background())
	return c
}

// callerTerminated takes Meta's terminate webhook (on the webhook's
// goroutine): recorded, then handed to the call's goroutine.
func (c *call) callerTerminated(ev whatsapp.CallEvent) {
	c.ops.terminated(ev)
	c.termOnce.Do(func() { c.events <- callEvent{kind: evCallerTerminated, term: &ev} })
}

// run drives the call from the connect webhook to its end on both sides.
func (c *call) run(ctx context.Context) {
	c.ctx = ctx
	defer c.cancelActions(nil)
	if c.outbound {
		c.beginOutbound()
	} else {
		ev := c.ev
		c.log.Info("whatsapp call connect", zap.String("caller_number", ev.CallerID()), zap.String("name", ev.ProfileName),
			zap.String("cta_payload", ev.CTAPayload), zap.String("deeplink_payload", ev.DeeplinkPayload))
		c.begin()
	}
	stop := ctx.Done()
	var legFailed <-chan struct{}
	var grace *time.Timer
	var graceC <-chan time.Time
	var watchC <-chan time.Time
	if *c.g.cfg.Media.PBXRTPTimeout > 0 {
		watch := time.NewTicker(c.g.timeouts.pbxWatch)
		defer watch.Stop()
		watchC = watch.C
	}
	for c.cause.kind == 0 { // until end decides
		if legFailed == nil && graceC == nil && c.leg != nil {
			legFailed = c.leg.Failed()
		}
		var pbxDone, agentGone <-chan struct{}
		if c.pbx != nil && !c.pbxGone {
			pbxDone = c.pbx.Done()
		}
		if c.agent != nil && c.pbx == nil {
			agentGone = c.agent.Cancelled()
		}
		var ringC, listenC <-chan time.Time
		if c.ringing != nil {
			ringC = c.ringing.C
		}
		if c.listening != nil {
			listenC = c.listening.C
		}
		var legUp <-chan struct{}
		if c.answerSet && c.bridge == nil {
			legUp = c.offerLeg.Connected()
		}
		select {
		case e := <-c.events:
			c.handle(e)
		case m := <-c.meta:
			c.metaEvent(m)
		case <-agentGone:
			c.end(endCause{kind: endAgentCancelled, detail: "the agent hung up (CANCEL) before the WhatsApp user answered"})
		case <-legUp:
			c.outboundMediaStarts()
		case <-listenC:
			if c.bridge.WhatsAppPacketsIn() > 0 {
				c.userAnswered("the user's audio arrived")
			}
		case <-ringC:
			c.ringing = nil
			c.end(endCause{kind: endNoAnswer, detail: "the WhatsApp user did not answer within " + c.out.route.RingTimeout.String(),
				refusal: &refuseNoAnswer})
		case <-stop:
			stop = nil
			c.end(c.stopCause())
		case <-pbxDone:
			c.pbxGone = true
			c.ops.pbxReason(c.g.ops.metrics, c.pbx.PeerReason())
			if why := c.pbx.EndReason(); why == sip.EndUnreachable {
				c.end(endCause{kind: endPBXUnreachable, detail: "the PBX stopped answering in-dialog OPTIONS"})
			} else {
				c.end(endCause{kind: endPBXHungUp, detail: "pbx hung up (" + why + ")"})
			}
		case <-legFailed:
			legFailed = nil
			grace = time.NewTimer(c.g.timeouts.terminateGrace)
			graceC = grace.C
		case <-graceC:
			detail := "whatsapp media connection failed"
			if err := c.leg.Err(); err != nil {
				detail += ": " + err.Error() // ICE consent lost, DTLS failed, …
			}
			c.end(endCause{kind: endMediaFailed, detail: detail})
		case now := <-watchC:
			if c.sm.current() == stateBridged && c.pbxRTP.silent(c.bridge.SIPPacketsIn(), now) {
				c.end(endCause{kind: endPBXMediaTimeout,
					detail: "no RTP from the PBX for " + c.pbxRTP.timeout.String() + " while not on hold"})
			}
		}
	}
	if grace != nil {
		grace.Stop()
	}
	if c.ringing != nil {
		c.ringing.Stop()
	}
	if c.listening != nil {
		c.listening.Stop()
	}
	c.settle()
	c.hangUp()
	c.move(stateEnded)
	outcome, detail := c.finish()
	// The logger names the SIP call once the PBX answered.
	c.log.Info("call ended", zap.String("outcome", outcome), zap.String("detail", detail),
		zap.Duration("duration", time.Since(c.sm.enteredAt(stateNew))))
}

// start runs one action on a goroutine of its own; its result comes back
// to run's goroutine as an event. The action sees the call's logger as it
// is now, and the actions context, which ending the call cancels.
func (c *call) start(kind eventKind, do func(ctx context.Context, log *zap.Logger) callEvent) {
	c.inflight++
	ctx, log := c.actions, c.log
	go func() {
		e := do(ctx, log)
		e.kind = kind
		c.events <- e
	}()
}

// handle takes one event on run's goroutine.
func (c *call) handle(e callEvent) {
	switch e.kind {
	case evCallerTerminated:
		c.log.Info("whatsapp terminate received", zap.String("status", c.ops.terminateStatus()))
		if c.outbound {
			c.end(c.userTerminated(e.term))
		} else {
			c.end(endCause{kind: endCallerHungUp, detail: callerHangupDetail(c.sm.current())})
		}
		return
	case evEarlyMedia:
		if c.sm.current() == stateRinging {
			c.earlyMedia(e)
		} // else the call is ending: the INVITE's end releases the media
		return
	}
	c.inflight--
	if e.kind == evInviteDone && c.early != nil && c.cause.kind == 0 {
		c.answeredAfterEarly(e) // bridged on the 183 already
		return
	}
	if c.sm.current() != resultOf[e.kind] {
		c.adopt(e) // the call ended meanwhile
		return
	}
	switch e.kind {
	case evAnswered:
		c.answered(e)
	case evPreAccepted:
		c.preAccepted(e)
	case evInviteDone:
		c.inviteDone(e)
	case evMediaUp:
		c.mediaUp(e)
	case evAccepted:
		c.accepted(e)
	case evPermission:
		c.permissionRead(e)
	case evPermissionReply:
		c.permissionReplied(e)
	case evPlaced:
		c.placed(e)
	case evAgentAnswered:
		c.agentAnswered(e)
	}
}

// awaitMedia accepts only once the WebRTC leg is up (Meta: accept when your
// WebRTC stack is ready); pre_accept started ICE and DTLS while the PBX
// rang, so this is usually at once.
func (c *call) awaitMedia() {
	leg, wait := c.leg, c.g.timeouts.mediaUp
	c.start(evMediaUp, func(ctx context.Context, _ *zap.Logger) callEvent {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-leg.Connected():
			return callEvent{}
		case <-t.C: // a failed leg is the run loop's (a caller's hang-up looks alike)
			return callEvent{err: errors.New("ICE and DTLS not up within " + wait.String())}
		case <-ctx.Done():
			return callEvent{err: ctx.Err()}
		}
	})
}

// end decides that the call is over; the first cause is the one kept.
// Actions in flight are cancelled (an INVITE is CANCELled, its Reason
// saying why as a BYE's would).
func (c *call) end(cause endCause) {
	if c.cause.kind != 0 {
		return
	}
	c.cause = cause
	if c.sm.current() == stateRinging && cause.kind != endPBXRejected && cause.kind != endInviteFailed {
		c.ops.reasonSent(byeReason(cause)) // the CANCEL of the ringing INVITE
	}
	c.move(stateEnding)
	c.cancelActions(&sip.CancelCause{Reason: byeReason(cause)})
}

// adopt takes what an action made after the call ended, so the hang-up
// releases it: a leg, or a PBX that answered as the INVITE was cancelled.
func (c *call) adopt(e callEvent) {
	if e.leg != nil && c.leg == nil {
		c.leg = e.leg
	}
	if e.pbx != nil && c.pbx == nil {
		c.pbx = e.pbx
		c.ops.answered(e.pbx.CallID(), e.pbx.Codec().Name, c.g.now())
		c.log.Info("pbx answered after the call ended: hanging up", zap.String("sip_call_id", e.pbx.CallID()))
	}
	var fe *sip.FinalError
	if errors.As(e.err, &fe) {
		c.ops.sipResult(c.g.ops.metrics, fe.Code, fe.Reason)
		c.ops.pbxReason(c.g.ops.metrics, fe.Why)
	}
}

// settle waits for the cancelled actions to return (bounded).
func (c *call) settle() {
	if c.inflight == 0 {
		return
	}
	t := time.NewTimer(c.g.timeouts.settle)
	defer t.Stop()
	for c.inflight > 0 {
		select {
		case e := <-c.events:
			if !e.kind.isResult() {
				continue // a terminate is recorded by callerTerminated; early media is the INVITE's to release
			}
			c.inflight--
			c.adopt(e)
		case <-t.C:
			c.log.Error("call actions still running after the call ended", zap.Int("actions", c.inflight))
			go releaseLate(c.events, c.inflight, c.g.timeouts.bye)
			c.inflight = 0
		}
	}
}

// releaseLate frees what the n actions still running make once they return.
func releaseLate(events <-chan callEvent, n int, byeTimeout time.Duration) {
	for n > 0 {
		e := <-events
		if !e.kind.isResult() {
			continue
		}
		n--
		if e.leg != nil {
			_ = e.leg.Close()
		}
		if e.pbx != nil {
			ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
			_ = e.pbx.Hangup(ctx)
			cancel()
			_ = e.pbx.Close()
		}
	}
}

// hangUp ends each side that is still up, both at once, then frees the
// media: legs first so the bridge's readers return, then the bridge.
func (c *call) hangUp() {
	var wg sync.WaitGroup
	if !c.ops.wasTerminated() && (!c.outbound || c.waCallID != "") {
		wg.Add(1)
		go func() { defer wg.Done(); c.endWhatsApp() }()
	}
	if c.agent != nil && c.pbx == nil {
		c.refuseAgent() // a final response: quick, no transaction to wait for
	}
	if c.pbx != nil && !c.pbxGone {
		select {
		case <-c.pbx.Done():
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), c.g.timeouts.bye)
				defer cancel()
				c.ops.reasonSent(c.byeReason())
				if err := c.pbx.HangupWithReason(ctx, c.byeReason()); err != nil {
					c.log.Warn("sip BYE failed", zap.Error(err))
				}
			}()
		}
	}
	wg.Wait()
	if c.leg != nil {
		_ = c.leg.Close()
	}
	if c.pbx != nil {
		_ = c.pbx.Close()
	}
	if c.agent != nil {
		_ = c.agent.Close()
	}
	if c.bridge != nil {
		c.bridge.Close()
		// Reflect, not Any: Stats is a Stringer, and the object keeps its
		// counters machine-readable.
		c.log.Info("media stats", zap.Reflect("stats", c.bridge.Stats()))
	}
	c.info.stop()
}

// endWhatsApp tells Meta the business side ends the call: terminate once
// accept was sent (Meta bills from accept), else reject, which Meta allows
// until accept; terminate if Meta refuses the reject.
func (c *call) endWhatsApp() {
	ev := c.ev
	if c.reached(stateAccepting) || c.outbound { // a business-initiated call is only ever terminated
		c.terminateWhatsApp()
		return
	}
	c.log.Info("rejecting whatsapp call", zap.String("reason", c.cause.detail))
	if err := c.graphAction(context.Background(), c.log, "reject", func(ctx context.Context) error {
		return c.g.graph.Reject(ctx, ev.PhoneNumberID, ev.CallID)
	}); err != nil {
		c.terminateWhatsApp()
	}
}

// terminateWhatsApp sends Graph terminate until Meta takes it: until then
// the caller sits in a silent call that Meta bills. Failures are retried
// with backoff within timeouts.terminateFor, and the retries stop early
// when Meta's terminate webhook says the call is over on its side. While
// the gateway shuts down, one round (the Graph client's own retries) is
// all it gets. A terminate that never succeeded is marked in the record.
func (c *call) terminateWhatsApp() {
	pnid, id := c.ev.PhoneNumberID, c.ev.CallID
	if c.outbound {
		pnid, id = c.out.pnid, c.waCallID
	}
	persist := c.ctx.Err() == nil || errors.Is(context.Cause(c.ctx), errAdminHangup)
	attempts, err := c.g.retryTerminate(persist, c.ops.wasTerminated, func() error {
		return c.graphAction(context.Background(), c.log, "terminate", func(ctx context.Context) error {
			return c.g.graph.Terminate(ctx, pnid, id)
		})
	})
	switch {
	case err == nil, c.ops.wasTerminated(): // Meta took it, or ended the call meanwhile
	case graphRefused(err):
		c.log.Warn("graph terminate refused: not retried", zap.Error(err))
	default:
		c.ops.terminateFailed()
		c.log.Error("graph terminate never succeeded: the caller may stay in a silent call until Meta's own timeout",
			zap.Int("attempts", attempts))
	}
}

// retryTerminate repeats send (a Graph terminate) until it succeeds, over()
// says the call ended on Meta's side, Meta refuses it for good
// (graphRefused: the call is no longer active there, or the request is
// wrong; no repeat changes that), or timeouts.terminateFor passes, waiting
// terminateBackoff after the first failure and twice as long each time
// (8 s at most). Without persist, or once the gateway shuts down, one
// round (the Graph client's own retries) is all it gets.
func (g *Gateway) retryTerminate(persist bool, over func() bool, send func() error) (attempts int, err error) {
	deadline := g.now().Add(g.timeouts.terminateFor)
	wait := g.timeouts.terminateBackoff
	for attempts = 1; ; attempts++ {
		err = send()
		if err == nil || over() || graphRefused(err) || !persist || g.now().Add(wait).After(deadline) || g.ctx.Err() != nil {
			return attempts, err
		}
		select {
		case <-time.After(wait):
		case <-g.ctx.Done(): // shutting down: the next round is the last
			persist = false
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// graphRefused says whether Meta refused a Graph request for good: a 4xx
// other than 429 that Meta does not mark transient. Repeating it would get
// the same answer.
func graphRefused(err error) bool {
	var ge *whatsapp.GraphError
	return errors.As(err, &ge) && ge.HTTPStatus >= 400 && ge.HTTPStatus < 500 && ge.HTTPStatus != 429 && !ge.IsTransient
}

// graphAction runs one Graph action within its timeout, and records and
// logs its failure. It runs on an action's goroutine.
func (c *call) graphAction(parent context.Context, log *zap.Logger, action string, do func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(parent, c.g.timeouts.graph)
	defer cancel()
	if err := do(ctx); err != nil {
		log.Warn("graph action failed", zap.String("action", action), zap.Error(err))
		c.ops.graphFailed(action, err)
		return err
	}
	log.Debug("graph action ok", zap.String("action", action))
	return nil
}

// move makes a transition. An illegal one is a bug: it is logged and
// counted, the state stays, and the call is ended (and still released on
// both sides) rather than left waiting in a state nothing will move.
func (c *call) move(next callState) bool {
	from := c.sm.current()
	if err := c.sm.to(next); err != nil {
		c.log.Error("call state machine", zap.Error(err))
		c.g.ops.metrics.stateErrors.Inc()
		c.end(endCause{kind: endStateError, detail: err.Error()})
		return false
	}
	c.log.Debug("call state", zap.Stringer("from", from), zap.Stringer("to", next))
	return true
}

// reached says whether the call ever entered s: accept was sent once it
// reached accepting; it was bridged once it reached bridged.
func (c *call) reached(s callState) bool { return !c.sm.enteredAt(s).IsZero() }

// stopCause says why the call's context ended.
func (c *call) stopCause() endCause {
	cause := context.Cause(c.ctx)
	switch {
	case errors.Is(cause, errAdminHangup):
		return endCause{kind: endAdmin, detail: cause.Error()}
	case errors.Is(cause, errDrainTimeout):
		return endCause{kind: endDrainTimeout, detail: cause.Error()}
	case errors.Is(cause, errInstanceReaped):
		return endCause{kind: endShutdown, detail: cause.Error()}
	}
	return endCause{kind: endShutdown, detail: "gateway shutting down"}
}

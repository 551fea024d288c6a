package wasim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp/rtptrack"
)

// StateRinging is a business-initiated call whose RINGING status was posted.
const StateRinging = "ringing"

// bicCall is what a business-initiated call knows of its user.
type bicCall struct {
	user User       // the user's settings when the call was placed
	st   *userState // the user's record (guarded by Sim.mu)
}

// AnswerSDP is Meta's answer posted in the connect webhook of a
// business-initiated call ("" on user-initiated calls, whose answer is the
// business's).
func (c *Call) AnswerSDP() string {
	if c.bic == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answerSDP
}

// setupAnswer answers the business's offer as Meta does: ICE-lite, host
// candidates on the media IP only, gathered completely, a=setup per role,
// the offer's payload types for Opus and telephone-event/8000.
func (c *Call) setupAnswer(ctx context.Context, offer string, role webrtc.DTLSRole) (string, error) {
	pc, err := c.sim.newPeerConnection(role)
	if err != nil {
		return "", fmt.Errorf("wasim: peer connection: %w", err)
	}
	c.pc = pc
	c.track = rtptrack.New("WhatsAppTrack1", "WhatsAppMedia")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("the offer was refused: %w", err)
	}
	sender, err := pc.AddTrack(c.track)
	if err != nil {
		return "", fmt.Errorf("wasim: add track: %w", err)
	}
	c.watchMedia(sender)
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("no answer to the offer: %w", err)
	}
	sdp, err := c.gather(ctx, answer)
	if err != nil {
		return "", err
	}
	c.opusPT, c.dtmfPT = 0, 0
	for _, codec := range sender.GetParameters().Codecs {
		switch {
		case strings.EqualFold(codec.MimeType, webrtc.MimeTypeOpus) && c.opusPT == 0:
			c.opusPT = uint8(codec.PayloadType)
		case strings.EqualFold(codec.MimeType, "audio/telephone-event") && codec.ClockRate == 8000 && c.dtmfPT == 0:
			c.dtmfPT = uint8(codec.PayloadType)
		}
	}
	if c.opusPT == 0 {
		return "", fmt.Errorf("no opus/48000/2 could be negotiated from the offer")
	}
	return sdp, nil
}

// runBIC is a business-initiated call's lifecycle: Meta's webhooks in the
// user's WebhookOrder, the user ringing, answering or declining, the ring
// timeout and the media rules; at the end the terminate webhook, the
// user's unanswered-call count (4 in a row revoke the permission) and the
// report.
func (c *Call) runBIC() {
	defer c.sim.wg.Done()
	defer close(c.done)
	s := c.sim
	u := c.bic.user
	secret := s.cfg.AppSecret
	connectSent := false
	sendConnect := func() {
		if !connectSent {
			connectSent = true
			_ = c.deliver("connect", secret, c.bicConnectEnvelope(), webhookAttempts)
		}
	}

	if u.WebhookOrder == OrderTerminateBeforeConnect {
		// The user declined at once and Meta's webhooks crossed: the
		// terminate arrives first, then the stale connect, which the
		// business must leave alone (order is not guaranteed).
		c.finish(endSpec{outcome: OutcomeRejectedByUser, status: statusFailed})
		_ = c.deliver("terminate", secret, c.terminateEnvelope(), webhookAttempts)
		sendConnect()
		select {
		case <-time.After(lateGrace):
		case <-s.ctx.Done():
		}
		c.closeMedia()
		c.bicEnded()
		c.finalise()
		return
	}
	if u.WebhookOrder != OrderAcceptedBeforeConnect {
		sendConnect()
	}

	after := func(d time.Duration) *time.Timer { return time.NewTimer(time.Until(c.placedAt.Add(d))) }
	ringT := after(u.RingingAfter)
	defer ringT.Stop()
	ringTimeout := after(s.cfg.RingTimeout)
	defer ringTimeout.Stop()
	var answerC <-chan time.Time
	if u.Answer != AnswerNone {
		t := after(u.AnswerAfter)
		defer t.Stop()
		answerC = t.C
	}
	watchdog := s.newWatchdog()
	defer watchdog.Stop()
	ringing := false
	ring := func() {
		if !ringing {
			ringing = true
			c.postStatus("RINGING")
		}
	}
	acceptedPending := false
loop:
	for {
		select {
		case <-c.endCh:
			break loop
		case <-s.ctx.Done():
			c.finish(endSpec{outcome: OutcomeSimClosed, status: c.bicStatus(), webhook: true})
		case <-ringT.C:
			ring()
		case <-answerC:
			answerC = nil
			ring()
			if u.Answer == AnswerReject {
				c.userDeclines()
				continue
			}
			if !c.userAnswers() {
				continue
			}
			if u.WebhookOrder == OrderAcceptedAfterMedia {
				acceptedPending = true
			} else {
				c.postStatus("ACCEPTED")
			}
			sendConnect()
		case <-ringTimeout.C:
			c.mu.Lock()
			answered := !c.rep.AcceptAt.IsZero()
			c.mu.Unlock()
			if !answered {
				c.finish(endSpec{outcome: OutcomeNotAnswered, status: statusFailed, webhook: true})
			}
		case now := <-watchdog.C:
			c.watch(now)
			if acceptedPending && c.mediaBothWays() {
				acceptedPending = false
				c.postStatus("ACCEPTED")
			}
		}
	}
	c.closeMedia()
	c.mu.Lock()
	e := c.end
	c.mu.Unlock()
	if e.outcome == OutcomeRejectedByUser {
		ring()
		c.postStatus("REJECTED") // "REJECTED is followed by terminate"
	}
	if e.webhook {
		attempts := webhookAttempts
		s.mu.Lock()
		if s.closing {
			attempts = 1
		}
		s.mu.Unlock()
		_ = c.deliver("terminate", secret, c.terminateEnvelope(), attempts)
	}
	sendConnect() // held back by the order: it arrives stale
	c.bicEnded()
	c.finalise()
}

// bicStatus is the terminate status of a business-initiated call ending
// now: COMPLETED once the user answered, else FAILED (Meta documents only
// that the status is one of the two; which one an unanswered call gets is
// inferred).
func (c *Call) bicStatus() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rep.AcceptAt.IsZero() {
		return statusFailed
	}
	return statusCompleted
}

// userAnswers is the user picking up: the call counts as connected (the
// daily limit, and it resets the request limits and the unanswered run),
// and the user starts talking once media is up.
func (c *Call) userAnswers() bool {
	c.mu.Lock()
	if c.state == StateEnded {
		c.mu.Unlock()
		return false
	}
	c.state = StateAccepted
	c.rep.AcceptAt = time.Now()
	c.mu.Unlock()
	s := c.sim
	s.mu.Lock()
	st := c.bic.st
	st.connected = append(st.connected, s.clock())
	st.requests = nil
	st.unanswered = 0
	s.mu.Unlock()
	c.log.Info("the user answered")
	if c.mediaGo() {
		go c.send()
	}
	return true
}

// userDeclines is the user rejecting the ringing call: REJECTED, then
// terminate.
func (c *Call) userDeclines() bool {
	return c.finish(endSpec{outcome: OutcomeRejectedByUser, status: statusFailed, webhook: true})
}

// mediaBothWays says whether the answered call carries media each way.
func (c *Call) mediaBothWays() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rep.PacketsSent > 0 && c.rep.PacketsReceived > c.rep.PacketsBeforeAnswer
}

// postStatus posts a calls status webhook (W3) for the call.
func (c *Call) postStatus(status string) {
	now := time.Now()
	c.mu.Lock()
	if status == "RINGING" {
		c.rep.RingingAt = now
		if c.state == StateOffered {
			c.state = StateRinging
		}
	}
	opaque := c.bizOpaque
	c.mu.Unlock()
	v := changeValue{
		Contacts: []contact{c.contact()},
		Statuses: []webhookStatus{{
			ID: c.id, Type: "call", Status: status, Timestamp: unixString(now),
			RecipientID: c.opts.From, RecipientUserID: c.opts.FromUserID, BizOpaqueCallbackData: opaque,
		}},
	}
	_ = c.deliver("status:"+status, c.sim.cfg.AppSecret, c.sim.envelope("calls", v), webhookAttempts)
}

// bicConnectEnvelope is the connect webhook of a business-initiated call
// (W2): Meta's answer, the callee in contacts[].
func (c *Call) bicConnectEnvelope() envelope {
	wc := c.callEntry("connect", c.placedAt)
	c.mu.Lock()
	wc.Session = &webhookSession{SDPType: "answer", SDP: c.answerSDP}
	wc.BizOpaqueCallbackData = c.bizOpaque
	c.mu.Unlock()
	return c.sim.envelopeFor(c, wc)
}

// bicEnded updates the user's record once the call is over: a call the
// user did not answer counts toward the 4 in a row that revoke an approved
// permission, which Meta reports with a call_permission_reply webhook,
// response "reject", response_source "automatic".
func (c *Call) bicEnded() {
	s := c.sim
	c.mu.Lock()
	answered := !c.rep.AcceptAt.IsZero()
	outcome := c.rep.Outcome
	c.mu.Unlock()
	s.mu.Lock()
	st := c.bic.st
	if st.live == c {
		st.live = nil
	}
	revoke := false
	if !answered {
		switch outcome {
		case OutcomeRejectedByUser, OutcomeNotAnswered, OutcomeTerminatedByBusiness:
			st.unanswered++
			if st.unanswered >= unansweredToRevoke && st.permissionLocked(s.clock()) != PermissionNone {
				st.permission, st.expires, st.unanswered = PermissionNone, time.Time{}, 0
				revoke = true
			}
		}
	}
	checks, requests, u := st.checks, st.requestsSent, st.u
	s.mu.Unlock()
	c.mu.Lock()
	c.rep.PermissionChecks, c.rep.PermissionRequests = checks, requests
	c.mu.Unlock()
	if revoke {
		c.log.Info("permission revoked after unanswered calls", zap.Int("in_a_row", unansweredToRevoke))
		s.postPermissionReply(u, callPermissionReply{Response: "reject", ResponseSource: "automatic"}, "")
	}
}

// handleBICAction takes an action on a business-initiated call: only
// terminate (R10) applies; the user, not the business, answers.
func (c *Call) handleBICAction(req *actionRequest, state string) *graphError {
	if req.Action == "terminate" {
		c.finish(endSpec{outcome: OutcomeTerminatedByBusiness, status: c.bicStatus(), webhook: true, byBusiness: true})
		return nil
	}
	c.violation(fmt.Sprintf("graph: %s on a business-initiated call (state %s; the user answers, the business only terminates)", req.Action, state))
	return badRequest("Call %s was initiated by the business: %s does not apply, only terminate", c.id, req.Action)
}

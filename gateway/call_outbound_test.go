package gateway

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp"
)

// The business-initiated direction of the call machine, with fakes.

const testWaCallID = "wacid.bic1"

var (
	pathOutBridged   = []callState{stateNew, stateCheckingPermission, stateConnecting, stateRingingUser, stateAwaitingMedia, stateAccepting, stateBridged, stateEnding, stateEnded}
	pathOutRefused   = []callState{stateNew, stateCheckingPermission, stateEnding, stateEnded}
	pathOutRinging   = []callState{stateNew, stateCheckingPermission, stateConnecting, stateRingingUser, stateEnding, stateEnded}
	pathOutNotPlaced = []callState{stateNew, stateCheckingPermission, stateConnecting, stateEnding, stateEnded}
	pathOutNoMedia   = []callState{stateNew, stateCheckingPermission, stateConnecting, stateRingingUser, stateAwaitingMedia, stateEnding, stateEnded}
)

// outMachine is a machine with an outbound route and fake permissions.
type outMachine struct {
	*machine
	perms *fakePermissions
	offer *fakeOfferer
}

func newOutMachine(t *testing.T, route OutboundRouteConfig) *outMachine {
	t.Helper()
	m := newMachine(t)
	if route.Trunk == "" {
		route.Trunk = "pbx"
	}
	if route.PhoneNumberID == "" {
		route.PhoneNumberID = testPNID
	}
	m.g.cfg.Outbound.Routes = []OutboundRouteConfig{route}
	m.g.cfg.applyOutboundDefaults()
	m.g.outbound = m.g.cfg.Outbound.Routes
	om := &outMachine{machine: m, perms: &fakePermissions{perm: whatsapp.CallPermission{Status: "temporary", CanCall: true, CanRequest: true}},
		offer: &fakeOfferer{made: make(chan *fakeOfferLeg, 4)}}
	m.g.offerer = om.offer
	m.g.perms = newPermissions(om.perms, m.g.ops.metrics, zap.NewNop())
	return om
}

// dial is the agent's INVITE to the user.
func (m *outMachine) dial(user string) (*call, *fakeAgent) {
	m.t.Helper()
	a := newFakeAgent(user)
	c := m.g.startAgentCall(a)
	if c == nil {
		m.t.Fatal("agent call refused at once")
	}
	return c, a
}

func (m *outMachine) status(s string) {
	m.g.handleStatus(whatsapp.StatusEvent{CallID: testWaCallID, Status: s, PhoneNumberID: testPNID})
}

func (m *outMachine) answer(sdp string) {
	m.g.handleCallEvent(whatsapp.CallEvent{Event: "connect", Direction: "BUSINESS_INITIATED", CallID: testWaCallID,
		PhoneNumberID: testPNID, SDPType: "answer", SDP: sdp})
}

func (m *outMachine) userTerminates(errs ...whatsapp.CallError) {
	m.g.handleCallEvent(whatsapp.CallEvent{Event: "terminate", Direction: "BUSINESS_INITIATED", CallID: testWaCallID,
		PhoneNumberID: testPNID, Status: "COMPLETED", Errors: errs})
}

// bridgeOut runs an agent's call up to bridged.
func (m *outMachine) bridgeOut() (*call, *fakeAgent, *fakeOfferLeg) {
	m.t.Helper()
	c, a := m.dial("+14085551234")
	leg := recv(m.t, m.offer.made, "the offer leg")
	m.waitState(c, stateRingingUser)
	m.status("RINGING")
	m.answer("v=0 meta answer")
	recv(m.t, a.answered, "the 200 OK to the agent")
	m.waitState(c, stateBridged)
	m.waitMedia(c)
	return c, a, leg
}

func expectRejection(t *testing.T, a *fakeAgent, code, q850 int) {
	t.Helper()
	r := a.rejection()
	if r == nil {
		t.Fatalf("the agent's INVITE got no final response, want %d", code)
	}
	if r.code != code || r.why.Protocol != "Q.850" || r.why.Cause != q850 || r.warning == "" {
		t.Errorf("agent got %d (Reason %+v, Warning %q), want %d with Q.850 %d", r.code, r.why, r.warning, code, q850)
	}
}

func TestOutboundBridgedUserHangsUp(t *testing.T) {
	m := newOutMachine(t, OutboundRouteConfig{})
	c, a, leg := m.bridgeOut()
	if a.rang.Load() != 1 {
		t.Errorf("the agent got %d 180s, want 1 (on RINGING)", a.rang.Load())
	}
	if leg.answerSDP != "v=0 meta answer" {
		t.Errorf("the leg got answer %q", leg.answerSDP)
	}
	m.status("ACCEPTED")
	m.userTerminates()
	r := m.ended(c, pathOutBridged...)
	expectRecord(t, r, OutcomeBridged, byUser)
	expectGraph(t, m.graph, "connect") // Meta ended it: no terminate of ours
	if a.byes.Load() != 1 || a.byeReason() != `Q.850;cause=16;text="whatsapp user hung up"` {
		t.Errorf("agent BYEs %d, reason %q", a.byes.Load(), a.byeReason())
	}
	if r.Direction != DirectionBusinessInitiated || r.CallID != testWaCallID || r.Callee == nil || r.Callee.Number != "14085551234" ||
		r.Agent != "2001" || r.BizOpaque != "agent-call-1" || !slices.Equal(r.Statuses, []string{"RINGING", "ACCEPTED"}) {
		t.Errorf("record %+v", r)
	}
	if r.Times.Invite.IsZero() || r.Times.Answer.Before(r.Times.Invite) || r.Times.Accept.Before(r.Times.Answer) {
		t.Errorf("record times %+v", r.Times)
	}
}

func TestOutboundAgentHangsUp(t *testing.T) {
	m := newOutMachine(t, OutboundRouteConfig{})
	c, a, leg := m.bridgeOut()
	a.bye()
	r := m.ended(c, pathOutBridged...)
	expectRecord(t, r, OutcomeBridged, byPBX)
	expectGraph(t, m.graph, "connect", "terminate")
	if !leg.isClosed() {
		t.Error("the WebRTC leg was not released")
	}
}

// Each way the permission step refuses the agent, and what is sent.
func TestOutboundPermissionModes(t *testing.T) {
	noPerm := whatsapp.CallPermission{Status: "no_permission", CanRequest: true}
	cases := []struct {
		name     string
		route    OutboundRouteConfig
		perm     whatsapp.CallPermission
		reqErr   error
		outcome  string
		code     int
		requests []string
	}{
		{"refuse", OutboundRouteConfig{}, noPerm, nil, OutcomeNoPermission, 403, nil},
		{"request", OutboundRouteConfig{Permission: PermissionRequest, PermissionMessage: "May we call?"}, noPerm, nil,
			OutcomePermissionRequested, 403, []string{"interactive:May we call?"}},
		{"request outside the window", OutboundRouteConfig{Permission: PermissionRequest, PermissionMessage: "May we call?",
			PermissionTemplate: PermissionTemplateConfig{Name: "callback_ok"}}, noPerm,
			&whatsapp.GraphError{Code: errOutsideWindow, Message: "re-engagement"}, OutcomePermissionRequested, 403, []string{"template:callback_ok"}},
		{"request limit", OutboundRouteConfig{Permission: PermissionRequest, PermissionMessage: "x"},
			whatsapp.CallPermission{Status: "no_permission"}, nil, OutcomeNoPermission, 403, nil},
		{"daily call limit", OutboundRouteConfig{}, whatsapp.CallPermission{Status: "temporary"}, nil, OutcomeNoPermission, 403, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newOutMachine(t, tc.route)
			m.perms.perm, m.perms.reqErr = tc.perm, tc.reqErr
			c, a := m.dial("14085551234")
			r := m.ended(c, pathOutRefused...)
			expectRecord(t, r, tc.outcome, byGateway)
			expectRejection(t, a, tc.code, 21)
			expectGraph(t, m.graph)
			if got := m.perms.sent(); !slices.Equal(got, tc.requests) {
				t.Errorf("requests %v, want %v", got, tc.requests)
			}
			if r.SIPFinalCode != tc.code {
				t.Errorf("record sip_final_code %d", r.SIPFinalCode)
			}
		})
	}
}

// permission: wait keeps the agent's call ringing while the user decides.
func TestOutboundPermissionWait(t *testing.T) {
	route := OutboundRouteConfig{Permission: PermissionWait, PermissionMessage: "May we call?", PermissionWait: 300 * time.Millisecond}
	reply := func(m *outMachine, accepted bool) {
		m.g.perms.reply(whatsapp.PermissionReply{PhoneNumberID: testPNID, From: "14085551234", Accepted: accepted, Source: "user_action"})
	}
	t.Run("accepted", func(t *testing.T) {
		m := newOutMachine(t, OutboundRouteConfig{Permission: PermissionWait, PermissionMessage: "May we call?", PermissionWait: 5 * time.Second})
		m.perms.perm = whatsapp.CallPermission{Status: "no_permission", CanRequest: true}
		c, a := m.dial("+14085551234")
		m.waitState(c, stateAwaitingPermission)
		if a.rang.Load() != 1 {
			t.Error("the agent's call does not ring while the user decides")
		}
		reply(m, true)
		m.waitState(c, stateRingingUser)
		m.answer("v=0 meta answer")
		m.waitState(c, stateBridged)
		m.waitMedia(c)
		m.userTerminates()
		r := m.ended(c, stateNew, stateCheckingPermission, stateAwaitingPermission, stateConnecting, stateRingingUser,
			stateAwaitingMedia, stateAccepting, stateBridged, stateEnding, stateEnded)
		expectRecord(t, r, OutcomeBridged, byUser)
	})
	t.Run("declined", func(t *testing.T) {
		m := newOutMachine(t, route)
		m.perms.perm = whatsapp.CallPermission{Status: "no_permission", CanRequest: true}
		c, a := m.dial("+14085551234")
		m.waitState(c, stateAwaitingPermission)
		reply(m, false)
		r := m.ended(c, stateNew, stateCheckingPermission, stateAwaitingPermission, stateEnding, stateEnded)
		expectRecord(t, r, OutcomePermissionDeclined, byGateway)
		expectRejection(t, a, 603, 21)
	})
	t.Run("no reply", func(t *testing.T) {
		m := newOutMachine(t, route)
		m.perms.perm = whatsapp.CallPermission{Status: "no_permission", CanRequest: true}
		c, a := m.dial("+14085551234")
		r := m.ended(c, stateNew, stateCheckingPermission, stateAwaitingPermission, stateEnding, stateEnded)
		expectRecord(t, r, OutcomePermissionTimeout, byGateway)
		expectRejection(t, a, 480, 19)
		expectGraph(t, m.graph)
	})
}

// Meta refuses the connect: the agent learns why from the mapped code.
func TestOutboundConnectRefused(t *testing.T) {
	m := newOutMachine(t, OutboundRouteConfig{})
	m.graph.behave["connect"] = graphBehaviour{err: &whatsapp.GraphError{HTTPStatus: 400, Code: 138013, Message: "BIC not available"}}
	c, a := m.dial("+14085551234")
	r := m.ended(c, pathOutNotPlaced...)
	expectRecord(t, r, OutcomeMetaRefused, byGateway)
	expectRejection(t, a, 403, 21)
	if rej := a.rejection(); rej == nil || !strings.Contains(rej.warning, "138013") {
		t.Errorf("warning does not name Meta's code: %+v", rej)
	}
	leg := recv(t, m.offer.made, "the offer leg")
	if !leg.isClosed() {
		t.Error("the offer leg was not released")
	}
}

// The user's side: declined, no answer, the agent gives up, Meta's error.
func TestOutboundUnanswered(t *testing.T) {
	cases := []struct {
		name    string
		do      func(m *outMachine, a *fakeAgent)
		outcome string
		by      string
		code    int // 0: no final response of ours (the PBX cancelled)
		q850    int
		graph   []string
	}{
		{"declined", func(m *outMachine, _ *fakeAgent) { m.status("REJECTED") },
			OutcomeUserDeclined, byUser, 603, 21, []string{"connect", "terminate"}},
		{"meta ends it unanswered", func(m *outMachine, _ *fakeAgent) { m.userTerminates() },
			OutcomeNoAnswer, byGateway, 480, 19, []string{"connect"}},
		{"meta's error", func(m *outMachine, _ *fakeAgent) { m.userTerminates(whatsapp.CallError{Code: 138001}) },
			OutcomeMetaRefused, byGateway, 480, 20, []string{"connect"}},
		{"ring timeout", func(*outMachine, *fakeAgent) {},
			OutcomeNoAnswer, byGateway, 480, 19, []string{"connect", "terminate"}},
		{"agent cancels", func(_ *outMachine, a *fakeAgent) { a.cancel() },
			OutcomeAgentCancelled, byPBX, 0, 0, []string{"connect", "terminate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newOutMachine(t, OutboundRouteConfig{RingTimeout: 300 * time.Millisecond})
			c, a := m.dial("+14085551234")
			m.waitState(c, stateRingingUser)
			m.status("RINGING")
			tc.do(m, a)
			r := m.ended(c, pathOutRinging...)
			expectRecord(t, r, tc.outcome, tc.by)
			expectGraph(t, m.graph, tc.graph...)
			if tc.code == 0 {
				if a.rejection() != nil {
					t.Errorf("a final response after the PBX's CANCEL: %+v", a.rejection())
				}
				return
			}
			expectRejection(t, a, tc.code, tc.q850)
		})
	}
}

// Meta's webhooks may come before Graph connect returns: they are held and
// given to the call once its id is known.
func TestOutboundWebhooksBeforeConnectReturns(t *testing.T) {
	t.Run("answer first", func(t *testing.T) {
		m := newOutMachine(t, OutboundRouteConfig{})
		hold := make(gate)
		m.graph.behave["connect"] = graphBehaviour{hold: hold}
		c, a := m.dial("+14085551234")
		m.started("connect")
		m.status("RINGING")
		m.answer("v=0 meta answer")
		close(hold)
		recv(t, a.answered, "the 200 OK to the agent")
		m.waitState(c, stateBridged)
		m.waitMedia(c)
		m.userTerminates()
		m.ended(c, pathOutBridged...)
	})
	t.Run("terminate first", func(t *testing.T) {
		m := newOutMachine(t, OutboundRouteConfig{})
		hold := make(gate)
		m.graph.behave["connect"] = graphBehaviour{hold: hold}
		c, a := m.dial("+14085551234")
		m.started("connect")
		m.userTerminates()
		close(hold)
		r := m.ended(c, pathOutRinging...)
		expectRecord(t, r, OutcomeNoAnswer, byGateway)
		expectRejection(t, a, 480, 19)
	})
}

// Meta's answer is unusable, or the media never comes up: the agent gets
// 480 and Meta a terminate.
func TestOutboundMediaFails(t *testing.T) {
	t.Run("bad answer", func(t *testing.T) {
		m := newOutMachine(t, OutboundRouteConfig{})
		c, a := m.dial("+14085551234")
		m.waitState(c, stateRingingUser)
		m.answer("bad")
		r := m.ended(c, pathOutRinging...)
		expectRecord(t, r, OutcomeFailed, byGateway)
		expectRejection(t, a, 480, 41)
		expectGraph(t, m.graph, "connect", "terminate")
	})
	t.Run("never up", func(t *testing.T) {
		m := newOutMachine(t, OutboundRouteConfig{})
		m.offer.down = true
		c, a := m.dial("+14085551234")
		m.waitState(c, stateRingingUser)
		m.answer("v=0 meta answer")
		m.status("ACCEPTED") // the user answered; ICE and DTLS never come up
		r := m.ended(c, pathOutNoMedia...)
		expectRecord(t, r, OutcomeFailed, byGateway)
		expectRejection(t, a, 480, 41)
		expectGraph(t, m.graph, "connect", "terminate")
	})
}

// No route for the number: 404 before anything is asked of Meta.
func TestOutboundNoRoute(t *testing.T) {
	m := newOutMachine(t, OutboundRouteConfig{Prefix: "+44"})
	c, a := m.dial("+14085551234")
	r := m.ended(c, stateNew, stateEnding, stateEnded)
	expectRecord(t, r, OutcomeNoRoute, byGateway)
	if rej := a.rejection(); rej == nil || rej.code != 404 {
		t.Errorf("agent got %+v, want 404", rej)
	}
	if m.perms.reads != 0 {
		t.Error("permission read for an unroutable call")
	}
}

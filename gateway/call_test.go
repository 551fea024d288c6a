package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
)

// The call machine driven through every branch with fakes (fakes_test.go):
// no network, no peer, milliseconds a case. The end-to-end tests drive the
// same machine with real peers.

const testPNID = "100200300"

// driven collects every transition the machine tests made; TestMain fails
// the run when one of the table's transitions was never driven.
var driven = struct {
	sync.Mutex
	m map[[2]callState]bool
}{m: map[[2]callState]bool{}}

func TestMain(m *testing.M) {
	if path := os.Getenv(ClusterChildEnv); path != "" {
		os.Exit(runClusterChild(path)) // an instance of the cluster tests
	}
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		var missing []string
		for from, tos := range transitions {
			for _, to := range tos {
				if !driven.m[[2]callState{callState(from), to}] {
					missing = append(missing, callState(from).String()+"→"+to.String())
				}
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: transitions no call test drives: %s\n", strings.Join(missing, ", "))
			code = 1
		}
	}
	os.Exit(code)
}

// machine is a Gateway whose legs are fakes.
type machine struct {
	t     *testing.T
	g     *Gateway
	graph *fakeGraph
	ans   *fakeAnswerer
	dial  *fakeDialer
	file  string
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	cfg := LoopbackConfig(LoopbackOptions{HTTPPort: 1, UDPPort: 1, GraphURL: "http://127.0.0.1:1",
		PBXAddr: "127.0.0.1:5060", PhoneNumberID: testPNID, AnswerTimeout: 300 * time.Millisecond})
	cfg.CallRecords.File = filepath.Join(t.TempDir(), "calls.jsonl")
	g, err := New(cfg, &Secrets{TrunkPasswords: map[string]string{}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{t: t, g: g, graph: newFakeGraph(), file: cfg.CallRecords.File,
		ans:  &fakeAnswerer{made: make(chan *fakeLeg, 4)},
		dial: &fakeDialer{invited: make(chan sip.InviteRequest, 4), pbx: make(chan *fakePBX, 4), early: make(chan *fakePBX, 4)}}
	g.ctx, g.cancelCause = context.WithCancelCause(context.Background())
	g.cancel = func() { g.cancelCause(context.Canceled) }
	g.graph, g.answerer, g.dialer = m.graph, m.ans, m.dial
	g.timeouts = callTimeouts{graph: 200 * time.Millisecond, accept: 200 * time.Millisecond, answer: 200 * time.Millisecond,
		mediaUp: 300 * time.Millisecond,
		bye:     200 * time.Millisecond, terminateGrace: 50 * time.Millisecond, settle: 2 * time.Second,
		terminateFor: 0, terminateBackoff: 20 * time.Millisecond, // one round unless a test asks for more
		pbxWatch: 20 * time.Millisecond}
	if err := g.ops.records.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.cancel()
		m.waitCalls()
		g.ops.records.close(context.Background())
	})
	return m
}

// connect delivers a connect webhook and returns the call it made (nil if
// it was ignored).
func (m *machine) connect(id string) *call {
	return m.g.startCall(whatsapp.CallEvent{Event: "connect", CallID: id, PhoneNumberID: testPNID,
		SDP: "v=0 offer", From: "15551234567", ProfileName: "Ada", Direction: "USER_INITIATED"}, m.g.log)
}

func (m *machine) terminate(id string) {
	m.g.handleCallEvent(whatsapp.CallEvent{Event: "terminate", CallID: id, PhoneNumberID: testPNID, Status: "COMPLETED"})
}

func (m *machine) waitCalls() {
	m.t.Helper()
	done := make(chan struct{})
	go func() { m.g.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		m.t.Fatal("the call did not end within 5 s")
	}
}

// started waits for the Graph action to be sent.
func (m *machine) started(action string) {
	m.t.Helper()
	deadline := time.After(2 * time.Second)
	for {
		select {
		case a := <-m.graph.started:
			if a == action {
				return
			}
		case <-deadline:
			m.t.Fatalf("graph %s never sent (sent: %v)", action, m.graph.sent())
		}
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(2 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func (m *machine) waitState(c *call, s callState) {
	m.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for c.sm.current() != s {
		if time.Now().After(deadline) {
			m.t.Fatalf("call in %s, never reached %s", c.sm.current(), s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ended waits for the call's end and returns its record, after checking
// the path it took through the states.
func (m *machine) ended(c *call, path ...callState) *CallRecord {
	m.t.Helper()
	m.waitCalls()
	moves := c.sm.moves()
	got := []callState{stateNew}
	driven.Lock()
	for _, mv := range moves {
		got = append(got, mv.To)
		driven.m[[2]callState{mv.From, mv.To}] = true
		if mv.At.IsZero() {
			m.t.Errorf("transition %s→%s not timestamped", mv.From, mv.To)
		}
	}
	driven.Unlock()
	if path != nil && !slices.Equal(got, path) {
		m.t.Errorf("states %v, want %v", got, path)
	}
	f, err := os.Open(m.file)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r CallRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			m.t.Fatal(err)
		}
		want := c.ev.CallID
		if c.outbound {
			want = c.waCallID // the run goroutine is done: safe to read
		}
		if r.CallID == want {
			return &r
		}
	}
	m.t.Fatalf("no call record for %s", c.ev.CallID)
	return nil
}

func expectRecord(t *testing.T, r *CallRecord, outcome, by string) {
	t.Helper()
	if r.Outcome != outcome || r.HangupBy != by {
		t.Errorf("outcome %q by %q (%s), want %q by %q", r.Outcome, r.HangupBy, r.Reason, outcome, by)
	}
}

func expectGraph(t *testing.T, g *fakeGraph, want ...string) {
	t.Helper()
	if got := g.sent(); !slices.Equal(got, want) {
		t.Errorf("graph actions %v, want %v", got, want)
	}
}

// Paths through the states.
var (
	pathBridged     = []callState{stateNew, stateAnswering, statePreAccepting, stateRinging, stateAwaitingMedia, stateAccepting, stateBridged, stateEnding, stateEnded}
	pathNoMedia     = []callState{stateNew, stateAnswering, statePreAccepting, stateRinging, stateAwaitingMedia, stateEnding, stateEnded}
	pathRinging     = []callState{stateNew, stateAnswering, statePreAccepting, stateRinging, stateEnding, stateEnded}
	pathAccepting   = []callState{stateNew, stateAnswering, statePreAccepting, stateRinging, stateAwaitingMedia, stateAccepting, stateEnding, stateEnded}
	pathPreAccept   = []callState{stateNew, stateAnswering, statePreAccepting, stateEnding, stateEnded}
	pathAnswering   = []callState{stateNew, stateAnswering, stateEnding, stateEnded}
	pathNotAdmitted = []callState{stateNew, stateEnding, stateEnded}
)

// bridge runs a call up to bridged.
func (m *machine) bridge(id string) (*call, *fakeLeg, *fakePBX) {
	m.t.Helper()
	c := m.connect(id)
	if c == nil {
		m.t.Fatal("connect ignored")
	}
	leg := recv(m.t, m.ans.made, "the WebRTC leg")
	pbx := recv(m.t, m.dial.pbx, "the PBX's answer")
	m.waitState(c, stateBridged)
	m.waitMedia(c)
	return c, leg, pbx
}

// waitMedia waits until audio arrived from both sides.
func (m *machine) waitMedia(c *call) {
	m.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if l := c.live(); l.Stats != nil && l.Stats.WhatsAppToSIP.PacketsIn > 0 && l.Stats.SIPToWhatsApp.PacketsIn > 0 {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatal("no audio from both sides within 2 s of bridged")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCallBridgedCallerHangsUp(t *testing.T) {
	m := newMachine(t)
	hold := make(gate)
	m.graph.behave["accept"] = graphBehaviour{hold: hold}
	c := m.connect("wacid.1")
	leg := recv(t, m.ans.made, "the WebRTC leg")
	inv := recv(t, m.dial.invited, "the INVITE")
	pbx := recv(t, m.dial.pbx, "the PBX's answer")
	m.started("accept")
	time.Sleep(60 * time.Millisecond)
	if n := leg.written.Load(); n != 0 {
		t.Errorf("%d packets went to WhatsApp before accept", n)
	}
	close(hold)
	m.waitState(c, stateBridged)
	deadline := time.Now().Add(2 * time.Second)
	for leg.written.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if leg.written.Load() < 3 {
		t.Error("no media toward WhatsApp once bridged")
	}
	if live := c.live(); live.State != "bridged" || live.SIPCallID != "sip-call-1" || live.Route != "pbx" {
		t.Errorf("live call %+v", live)
	}
	m.terminate("wacid.1")
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomeBridged, byCaller)
	expectGraph(t, m.graph, "pre_accept", "accept")
	if pbx.byes.Load() != 1 || !leg.isClosed() {
		t.Errorf("BYE sent %d times, leg closed %v", pbx.byes.Load(), leg.isClosed())
	}
	if inv.FromUser != "15551234567" || inv.DisplayName != "Ada" || inv.Trunk == nil {
		t.Errorf("INVITE %+v", inv)
	}
	if r.Media == nil || r.Media.SIPToWhatsApp.PacketsIn == 0 || r.Media.WhatsAppToSIP.PacketsOut == 0 || r.MOS < 4 {
		t.Errorf("record media %+v, mos %v: want the bridge's counters", r.Media, r.MOS)
	}
	if r.SIPCallID != "sip-call-1" || r.SIPFinalCode != 200 || r.Times.Accept.IsZero() ||
		r.Times.Invite.IsZero() || r.Times.Answer.Before(r.Times.Invite) || r.Times.End.Before(r.Times.Accept) {
		t.Errorf("record %+v", r)
	}
}

// Each way a bridged call ends, and what each side is told.
func TestCallEndsWhileBridged(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(m *machine)
		end     func(m *machine, leg *fakeLeg, pbx *fakePBX)
		outcome string
		by      string
		graph   []string // after pre_accept, accept
		byes    int32
		reason  string
		metaErr string // a Graph action whose failure the record keeps
		byeWhy  string // the Reason header of the BYE (RFC 3326)
	}{
		{name: "pbx hangs up", end: func(_ *machine, _ *fakeLeg, p *fakePBX) { p.bye() },
			outcome: OutcomeBridged, by: byPBX, graph: []string{"terminate"}, reason: "remote_bye"},
		{name: "media fails", end: func(_ *machine, l *fakeLeg, _ *fakePBX) { l.fail(errors.New("ice: consent lost")) },
			outcome: OutcomeBridged, by: byGateway, graph: []string{"terminate"}, byes: 1, reason: "consent lost",
			byeWhy: `Q.850;cause=41;text="whatsapp media connection failed"`},
		{name: "media fails then terminate",
			setup: func(m *machine) { m.g.timeouts.terminateGrace = time.Second },
			end: func(m *machine, l *fakeLeg, _ *fakePBX) {
				l.fail(errors.New("dtls: close_notify"))
				m.terminate("wacid.b")
			},
			outcome: OutcomeBridged, by: byCaller, byes: 1, reason: "caller hung up", byeWhy: `Q.850;cause=16;text="caller hung up"`},
		{name: "pbx unreachable", end: func(_ *machine, _ *fakeLeg, p *fakePBX) { p.end(sip.EndUnreachable) },
			outcome: OutcomePBXUnreachable, by: byGateway, graph: []string{"terminate"}, reason: "stopped answering"},
		{name: "pbx goes silent",
			setup:   func(m *machine) { *m.g.cfg.Media.PBXRTPTimeout = 150 * time.Millisecond },
			end:     func(_ *machine, _ *fakeLeg, p *fakePBX) { p.talker.mute.Store(true) },
			outcome: OutcomePBXMediaTimeout, by: byGateway, graph: []string{"terminate"}, byes: 1,
			reason: "no RTP from the PBX for 150ms", byeWhy: `Q.850;cause=102;text="no RTP from the PBX"`},
		{name: "drain timeout", end: func(m *machine, _ *fakeLeg, _ *fakePBX) { m.g.cancelCause(errDrainTimeout) },
			outcome: OutcomeShutdown, by: byGateway, graph: []string{"terminate"}, byes: 1, reason: "drain_timeout",
			byeWhy: `Q.850;cause=41;text="gateway shutting down"`},
		{name: "admin hang-up", end: func(m *machine, _ *fakeLeg, _ *fakePBX) { m.g.HangupCall("wacid.b") },
			outcome: OutcomeAdminHangup, by: byAdmin, graph: []string{"terminate"}, byes: 1, reason: "admin API"},
		{name: "terminate fails",
			setup:   func(m *machine) { m.graph.behave["terminate"] = graphBehaviour{err: errors.New("graph: 503")} },
			end:     func(m *machine, _ *fakeLeg, _ *fakePBX) { m.g.HangupCall("wacid.b") },
			outcome: OutcomeAdminHangup, by: byAdmin, graph: []string{"terminate"}, byes: 1, metaErr: "graph_terminate"},
		{name: "terminate times out",
			setup:   func(m *machine) { m.graph.behave["terminate"] = graphBehaviour{block: true} },
			end:     func(_ *machine, _ *fakeLeg, p *fakePBX) { p.bye() },
			outcome: OutcomeBridged, by: byPBX, graph: []string{"terminate"}, metaErr: "graph_terminate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			if tc.setup != nil {
				tc.setup(m)
			}
			c, leg, pbx := m.bridge("wacid.b")
			tc.end(m, leg, pbx)
			r := m.ended(c, pathBridged...)
			expectRecord(t, r, tc.outcome, tc.by)
			expectGraph(t, m.graph, append([]string{"pre_accept", "accept"}, tc.graph...)...)
			if pbx.byes.Load() != tc.byes || !leg.isClosed() {
				t.Errorf("PBX got %d BYEs (want %d), leg closed %v", pbx.byes.Load(), tc.byes, leg.isClosed())
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("reason %q, want it to say %q", r.Reason, tc.reason)
			}
			if got := pbx.byeReason(); tc.byeWhy != "" && got != tc.byeWhy {
				t.Errorf("BYE Reason %q, want %q", got, tc.byeWhy)
			}
			if tc.metaErr != "" && (len(r.MetaErrors) != 1 || r.MetaErrors[0].Source != tc.metaErr) {
				t.Errorf("meta errors %+v, want one from %s", r.MetaErrors, tc.metaErr)
			}
		})
	}
}

// A PBX that holds the call may send nothing: the RTP watch waits while it
// holds, and ends the call once it resumes and stays silent.
func TestCallPBXSilentOnHold(t *testing.T) {
	m := newMachine(t)
	*m.g.cfg.Media.PBXRTPTimeout = 150 * time.Millisecond
	c, _, pbx := m.bridge("wacid.hold")
	pbx.reinvite("sendonly")
	pbx.talker.mute.Store(true)
	time.Sleep(400 * time.Millisecond)
	if s := c.sm.current(); s != stateBridged {
		t.Fatalf("a held call ended (%s) for want of RTP", s)
	}
	resumed := time.Now()
	pbx.reinvite("sendrecv")
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomePBXMediaTimeout, byGateway)
	if d := time.Since(resumed); d < 150*time.Millisecond {
		t.Errorf("ended %v after the PBX resumed, before the timeout", d)
	}
}

// A call whose WhatsApp media never came up is not bridged, and gets no
// MOS from the direction that received nothing.
func TestCallNoMediaFromWhatsApp(t *testing.T) {
	m := newMachine(t)
	hold := make(gate)
	m.graph.behave["accept"] = graphBehaviour{hold: hold}
	c := m.connect("wacid.mute")
	leg := recv(t, m.ans.made, "the leg")
	leg.talker.mute.Store(true)
	close(hold)
	m.waitState(c, stateBridged)
	time.Sleep(100 * time.Millisecond)
	m.terminate("wacid.mute")
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomeNoMedia, byCaller)
	if r.Media == nil || r.Media.WhatsAppToSIP.PacketsIn != 0 || r.Media.WhatsAppToSIP.MOS != 0 || r.Media.SIPToWhatsApp.MOS == 0 {
		t.Errorf("media %+v", r.Media)
	}
}

// Accept has its own short bound: when Meta does not answer it, the PBX's
// agent is not left in silence for the whole Graph timeout.
func TestCallAcceptTimesOutQuickly(t *testing.T) {
	m := newMachine(t)
	m.g.timeouts.graph = 5 * time.Second
	m.graph.behave["accept"] = graphBehaviour{block: true}
	c := m.connect("wacid.slow")
	pbx := recv(t, m.dial.pbx, "the PBX")
	m.started("accept")
	sent := time.Now()
	r := m.ended(c, pathAccepting...)
	expectRecord(t, r, OutcomeFailed, byGateway)
	if d := time.Since(sent); d > 2*time.Second {
		t.Errorf("the call ended %v after accept, not within its own bound", d)
	}
	if pbx.byes.Load() != 1 || pbx.byeReason() != `Q.850;cause=41;text="whatsapp did not take the call"` {
		t.Errorf("BYEs %d, Reason %q", pbx.byes.Load(), pbx.byeReason())
	}
}

// A terminate that fails is retried with backoff until Meta takes it; one
// that never succeeds within the bound is marked in the record.
func TestCallTerminateRetried(t *testing.T) {
	t.Run("fails twice", func(t *testing.T) {
		m := newMachine(t)
		m.g.timeouts.terminateFor = 2 * time.Second
		m.graph.behave["terminate"] = graphBehaviour{failFirst: 2}
		c, _, pbx := m.bridge("wacid.tr")
		pbx.bye()
		r := m.ended(c, pathBridged...)
		expectRecord(t, r, OutcomeBridged, byPBX)
		expectGraph(t, m.graph, "pre_accept", "accept", "terminate", "terminate", "terminate")
		if r.TerminateFailed || len(r.MetaErrors) != 2 {
			t.Errorf("terminate_failed %v, meta errors %+v", r.TerminateFailed, r.MetaErrors)
		}
	})
	t.Run("never", func(t *testing.T) {
		m := newMachine(t)
		m.g.timeouts.terminateFor = 300 * time.Millisecond
		m.graph.behave["terminate"] = graphBehaviour{err: errors.New("graph: HTTP 503")}
		c, _, pbx := m.bridge("wacid.tn")
		pbx.bye()
		start := time.Now()
		r := m.ended(c, pathBridged...)
		if n := strings.Count(strings.Join(m.graph.sent(), ","), "terminate"); n < 3 || !r.TerminateFailed {
			t.Errorf("%d terminates, terminate_failed %v", n, r.TerminateFailed)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("retried for %v, past its 300 ms bound", d)
		}
	})
	t.Run("meta ends it meanwhile", func(t *testing.T) {
		m := newMachine(t)
		m.g.timeouts.terminateFor = 5 * time.Second
		m.graph.behave["terminate"] = graphBehaviour{err: errors.New("graph: HTTP 503")}
		c, _, pbx := m.bridge("wacid.tm")
		pbx.bye()
		m.started("terminate")
		m.terminate("wacid.tm")
		start := time.Now()
		r := m.ended(c, pathBridged...)
		if d := time.Since(start); d > time.Second || r.TerminateFailed {
			t.Errorf("retries went on %v after Meta's terminate (terminate_failed %v)", d, r.TerminateFailed)
		}
	})
}

func TestCallPBXFinalResponses(t *testing.T) {
	for _, code := range []int{404, 480, 486, 503, 603} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			m := newMachine(t)
			m.dial.mode, m.dial.code = dialReject, code
			c := m.connect("wacid.rej")
			r := m.ended(c, pathRinging...)
			expectRecord(t, r, OutcomePBXRejected, byPBX)
			expectGraph(t, m.graph, "pre_accept", "reject")
			if r.SIPFinalCode != code {
				t.Errorf("sip final %d, want %d", r.SIPFinalCode, code)
			}
			if leg := recv(t, m.ans.made, "the leg"); !leg.isClosed() {
				t.Error("the WebRTC leg was not released")
			}
		})
	}
}

func TestCallPBXDoesNotAnswer(t *testing.T) {
	m := newMachine(t)
	m.dial.mode = dialRing
	c := m.connect("wacid.noans")
	r := m.ended(c, pathRinging...)
	expectRecord(t, r, OutcomeNoAnswer, byGateway)
	expectGraph(t, m.graph, "pre_accept", "reject")
}

func TestCallInviteFails(t *testing.T) {
	m := newMachine(t)
	m.dial.mode = dialFail
	c := m.connect("wacid.fail")
	r := m.ended(c, pathRinging...)
	expectRecord(t, r, OutcomeFailed, byGateway)
	expectGraph(t, m.graph, "pre_accept", "reject")
	if !strings.Contains(r.Reason, "connection refused") {
		t.Errorf("reason %q", r.Reason)
	}
}

// The caller hangs up in each state before the call is bridged.
func TestCallCallerHangsUpBeforeBridged(t *testing.T) {
	cases := []struct {
		name string
		hold func(m *machine) gate // holds the action of the state
		wait func(m *machine)      // until the call is in that state
		path []callState
		sent []string
		bye  bool // the PBX, having answered, gets a BYE
	}{
		{"answering", func(m *machine) gate { m.ans.hold = make(gate); return m.ans.hold },
			func(m *machine) {}, pathAnswering, nil, false},
		{"pre_accepting", func(m *machine) gate {
			h := make(gate)
			m.graph.behave["pre_accept"] = graphBehaviour{hold: h}
			return h
		},
			func(m *machine) { m.started("pre_accept") }, pathPreAccept, []string{"pre_accept"}, false},
		{"ringing", func(m *machine) gate { m.dial.mode = dialRing; return nil },
			func(m *machine) { recv(m.t, m.dial.invited, "the INVITE") }, pathRinging, []string{"pre_accept"}, false},
		{"accepting", func(m *machine) gate { h := make(gate); m.graph.behave["accept"] = graphBehaviour{hold: h}; return h },
			func(m *machine) { m.started("accept") }, pathAccepting, []string{"pre_accept", "accept"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			hold := tc.hold(m)
			c := m.connect("wacid.gone")
			tc.wait(m)
			if tc.name == "answering" {
				m.waitState(c, stateAnswering)
			}
			m.terminate("wacid.gone")
			if hold != nil && tc.name == "answering" {
				time.Sleep(20 * time.Millisecond)
				close(hold) // the answer comes after the caller left
			}
			r := m.ended(c, tc.path...)
			expectRecord(t, r, OutcomeCallerHungUp, byCaller)
			expectGraph(t, m.graph, tc.sent...)
			if tc.name == "ringing" && !m.dial.canceled.Load() {
				t.Error("the INVITE was not cancelled")
			}
			if tc.bye {
				if p := recv(t, m.dial.pbx, "the PBX"); p.byes.Load() != 1 {
					t.Errorf("PBX got %d BYEs, want 1", p.byes.Load())
				}
			}
			select {
			case leg := <-m.ans.made:
				if !leg.isClosed() {
					t.Error("the WebRTC leg was not released")
				}
			case <-time.After(100 * time.Millisecond):
				t.Error("no leg made")
			}
		})
	}
}

// The PBX answers just as the caller's terminate cancels the INVITE.
func TestCallPBXAnswersAsCallerHangsUp(t *testing.T) {
	m := newMachine(t)
	m.dial.mode = dialAnswerOnStop
	c := m.connect("wacid.race")
	recv(t, m.dial.invited, "the INVITE")
	m.terminate("wacid.race")
	r := m.ended(c, pathRinging...)
	expectRecord(t, r, OutcomeCallerHungUp, byCaller)
	expectGraph(t, m.graph, "pre_accept")
	if p := recv(t, m.dial.pbx, "the PBX"); p.byes.Load() != 1 {
		t.Errorf("the late-answering PBX got %d BYEs, want 1", p.byes.Load())
	}
}

func TestCallGraphFailures(t *testing.T) {
	failed := errors.New("graph: 500 internal error")
	cases := []struct {
		action string
		b      graphBehaviour
		path   []callState
		sent   []string
		bye    bool
	}{
		{"pre_accept", graphBehaviour{err: failed}, pathPreAccept, []string{"pre_accept", "reject"}, false},
		{"pre_accept", graphBehaviour{block: true}, pathPreAccept, []string{"pre_accept", "reject"}, false},
		{"accept", graphBehaviour{err: failed}, pathAccepting, []string{"pre_accept", "accept", "terminate"}, true},
		{"accept", graphBehaviour{block: true}, pathAccepting, []string{"pre_accept", "accept", "terminate"}, true},
	}
	for _, tc := range cases {
		name := tc.action + "/error"
		if tc.b.block {
			name = tc.action + "/timeout"
		}
		t.Run(name, func(t *testing.T) {
			m := newMachine(t)
			m.graph.behave[tc.action] = tc.b
			c := m.connect("wacid.graph")
			r := m.ended(c, tc.path...)
			expectRecord(t, r, OutcomeFailed, byGateway)
			expectGraph(t, m.graph, tc.sent...)
			if !strings.HasPrefix(r.Reason, tc.action+": ") || len(r.MetaErrors) == 0 || r.MetaErrors[0].Source != "graph_"+tc.action {
				t.Errorf("reason %q, meta errors %+v", r.Reason, r.MetaErrors)
			}
			if tc.bye {
				if p := recv(t, m.dial.pbx, "the PBX"); p.byes.Load() != 1 {
					t.Errorf("PBX got %d BYEs, want 1", p.byes.Load())
				}
			}
		})
	}
}

// A refused or unanswered reject falls back to terminate.
func TestCallRejectFails(t *testing.T) {
	t.Run("reject", func(t *testing.T) {
		m := newMachine(t)
		m.dial.mode, m.dial.code = dialReject, 486
		m.graph.behave["reject"] = graphBehaviour{err: errors.New("graph: (#138006) call not found")}
		r := m.ended(m.connect("wacid.rj"), pathRinging...)
		expectRecord(t, r, OutcomePBXRejected, byPBX)
		expectGraph(t, m.graph, "pre_accept", "reject", "terminate")
	})
	t.Run("reject timeout", func(t *testing.T) {
		m := newMachine(t)
		m.dial.mode = dialRing
		m.graph.behave["reject"] = graphBehaviour{block: true}
		r := m.ended(m.connect("wacid.rt"), pathRinging...)
		expectRecord(t, r, OutcomeNoAnswer, byGateway)
		expectGraph(t, m.graph, "pre_accept", "reject", "terminate")
	})
}

func TestCallAnswerFails(t *testing.T) {
	m := newMachine(t)
	m.ans.err = errors.New("webrtc: the offer has no audio")
	r := m.ended(m.connect("wacid.sdp"), pathAnswering...)
	expectRecord(t, r, OutcomeFailed, byGateway)
	expectGraph(t, m.graph, "reject")
}

// The WebRTC leg fails while the PBX rings and no terminate follows: the
// call ends as a media failure on both sides (bridged: TestCallEndsWhileBridged).
func TestCallMediaFails(t *testing.T) {
	t.Run("ringing", func(t *testing.T) {
		m := newMachine(t)
		m.dial.mode = dialRing
		c := m.connect("wacid.ice")
		leg := recv(t, m.ans.made, "the leg")
		recv(t, m.dial.invited, "the INVITE")
		leg.fail(errors.New("ice: no working pair"))
		r := m.ended(c, pathRinging...)
		expectRecord(t, r, OutcomeFailed, byGateway)
		expectGraph(t, m.graph, "pre_accept", "reject")
		if !m.dial.canceled.Load() || !strings.Contains(r.Reason, "no working pair") {
			t.Errorf("INVITE cancelled %v, reason %q", m.dial.canceled.Load(), r.Reason)
		}
	})
}

// The PBX answered but ICE and DTLS never came up: Meta gets no accept
// (reject instead), the PBX a BYE saying why, and the call is no success.
func TestCallMediaNeverUp(t *testing.T) {
	m := newMachine(t)
	m.ans.down = true
	c := m.connect("wacid.down")
	r := m.ended(c, pathNoMedia...)
	expectRecord(t, r, OutcomeFailed, byGateway)
	expectGraph(t, m.graph, "pre_accept", "reject")
	if !strings.Contains(r.Reason, "whatsapp media not connected") || !r.Times.Accept.IsZero() {
		t.Errorf("reason %q, accept %v", r.Reason, r.Times.Accept)
	}
	if p := recv(t, m.dial.pbx, "the PBX"); p.byes.Load() != 1 || p.byeReason() != `Q.850;cause=41;text="whatsapp media connection failed"` {
		t.Errorf("BYEs %d, Reason %q", p.byes.Load(), p.byeReason())
	}
}

// Accept waits for the WebRTC leg: a leg that connects late is accepted
// then, not before.
func TestCallAcceptWaitsForMedia(t *testing.T) {
	m := newMachine(t)
	m.ans.down = true
	m.g.timeouts.mediaUp = 2 * time.Second
	c := m.connect("wacid.late")
	leg := recv(t, m.ans.made, "the leg")
	m.waitState(c, stateAwaitingMedia)
	time.Sleep(100 * time.Millisecond)
	if got := m.graph.sent(); slices.Contains(got, "accept") {
		t.Fatalf("accept sent before the leg was up: %v", got)
	}
	close(leg.connected)
	m.waitState(c, stateBridged)
	m.waitMedia(c)
	m.terminate("wacid.late")
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomeBridged, byCaller)
}

// The caller hangs up while the gateway waits for media: its DTLS close
// comes first, Meta's terminate a moment later; that is a hang-up, not a
// media failure.
func TestCallCallerLeavesWhileMediaComesUp(t *testing.T) {
	m := newMachine(t)
	m.ans.down = true
	m.g.timeouts.mediaUp = 2 * time.Second
	m.g.timeouts.terminateGrace = time.Second
	c := m.connect("wacid.bye2")
	leg := recv(t, m.ans.made, "the leg")
	m.waitState(c, stateAwaitingMedia)
	leg.fail(errors.New("webrtc: the caller closed the DTLS connection: EOF"))
	time.Sleep(20 * time.Millisecond)
	m.terminate("wacid.bye2")
	r := m.ended(c, pathNoMedia...)
	expectRecord(t, r, OutcomeCallerHungUp, byCaller)
	expectGraph(t, m.graph, "pre_accept")
}

func TestCallBridgeCannotBeBuilt(t *testing.T) {
	m := newMachine(t)
	m.dial.codec = sip.Codec{Name: "G729", PayloadType: 18, ClockRate: 8000}
	r := m.ended(m.connect("wacid.g729"), pathNoMedia...)
	expectRecord(t, r, OutcomeFailed, byGateway)
	expectGraph(t, m.graph, "pre_accept", "reject")
	if p := recv(t, m.dial.pbx, "the PBX"); p.byes.Load() != 1 || !strings.HasPrefix(r.Reason, "bridge: ") {
		t.Errorf("BYEs %d, reason %q", p.byes.Load(), r.Reason)
	}
}

// The PBX hangs up while Meta has not yet accepted.
func TestCallPBXHangsUpBeforeAccept(t *testing.T) {
	m := newMachine(t)
	m.graph.behave["accept"] = graphBehaviour{block: true}
	m.g.timeouts.graph = 2 * time.Second
	c := m.connect("wacid.early")
	pbx := recv(t, m.dial.pbx, "the PBX")
	m.started("accept")
	pbx.bye()
	r := m.ended(c, pathAccepting...)
	expectRecord(t, r, OutcomeFailed, byPBX)
	expectGraph(t, m.graph, "pre_accept", "accept", "terminate")
}

func TestCallNotAdmitted(t *testing.T) {
	t.Run("no route", func(t *testing.T) {
		m := newMachine(t)
		c := m.g.startCall(whatsapp.CallEvent{Event: "connect", CallID: "wacid.nr", PhoneNumberID: "999", SDP: "v=0"}, m.g.log)
		r := m.ended(c, pathNotAdmitted...)
		expectRecord(t, r, OutcomeNoRoute, byGateway)
		expectGraph(t, m.graph, "reject")
	})
	t.Run("draining", func(t *testing.T) {
		m := newMachine(t)
		m.g.ops.draining.Store(true)
		r := m.ended(m.connect("wacid.dr"), pathNotAdmitted...)
		expectRecord(t, r, OutcomeDraining, byGateway)
		expectGraph(t, m.graph, "reject")
	})
	t.Run("trunk down", func(t *testing.T) {
		m := newMachine(t)
		m.g.ops.monitor.mu.Lock()
		m.g.ops.monitor.states["pbx"] = &trunkState{Pinged: true, Failures: 3, LastError: "timeout"}
		m.g.ops.monitor.mu.Unlock()
		r := m.ended(m.connect("wacid.td"), pathNotAdmitted...)
		expectRecord(t, r, OutcomeTrunkDown, byGateway)
		expectGraph(t, m.graph, "reject")
		if r.Route != "pbx" || !r.Times.Invite.IsZero() {
			t.Errorf("record route %q invite %v", r.Route, r.Times.Invite)
		}
	})
}

// Shutdown ends a ringing call through its context (drain timeout and the
// admin API while bridged: TestCallEndsWhileBridged).
func TestCallEndedByTheGateway(t *testing.T) {
	t.Run("shutdown while ringing", func(t *testing.T) {
		m := newMachine(t)
		m.dial.mode = dialRing
		c := m.connect("wacid.sd")
		recv(t, m.dial.invited, "the INVITE")
		m.g.cancel()
		r := m.ended(c, pathRinging...)
		expectRecord(t, r, OutcomeShutdown, byGateway)
		expectGraph(t, m.graph, "pre_accept", "reject")
		if !m.dial.canceled.Load() {
			t.Error("the INVITE was not cancelled")
		}
	})
}

func TestCallDuplicateAndOutOfOrderWebhooks(t *testing.T) {
	t.Run("duplicate connect", func(t *testing.T) {
		m := newMachine(t)
		c, _, _ := m.bridge("wacid.dup")
		if again := m.connect("wacid.dup"); again != nil {
			t.Error("a duplicate connect made a second call")
		}
		// The same through the webhook's dispatch.
		m.g.handleCallEvent(whatsapp.CallEvent{Event: "connect", CallID: "wacid.dup", PhoneNumberID: testPNID, SDP: "v=0 offer"})
		m.terminate("wacid.dup")
		m.terminate("wacid.dup") // a duplicate terminate is harmless
		m.ended(c, pathBridged...)
		if m.connect("wacid.dup") != nil {
			t.Error("a connect after the call ended was answered")
		}
		m.waitCalls()
		expectGraph(t, m.graph, "pre_accept", "accept")
		if n := len(m.dial.invited); n != 1 {
			t.Errorf("%d INVITEs, want 1", n)
		}
	})
	t.Run("terminate before connect", func(t *testing.T) {
		m := newMachine(t)
		m.terminate("wacid.ooo")
		if m.connect("wacid.ooo") != nil {
			t.Error("a connect whose terminate came first was answered")
		}
		m.waitCalls()
		expectGraph(t, m.graph)
	})
}

func TestIllegalTransitionIsRefusedAndCounted(t *testing.T) {
	m := newMachine(t)
	c := newCall(m.g, whatsapp.CallEvent{CallID: "wacid.x"})
	if c.move(stateBridged) || c.sm.current() != stateEnding || c.cause.kind != endStateError {
		t.Errorf("state %s, end %+v after an illegal move: want the call ended", c.sm.current(), c.cause)
	}
	var mv dto.Metric
	if err := m.g.ops.metrics.stateErrors.Write(&mv); err != nil {
		t.Fatal(err)
	}
	if n := mv.GetCounter().GetValue(); n != 1 {
		t.Errorf("state errors counted %v, want 1", n)
	}
	var ill errIllegalTransition
	if err := c.sm.to(stateRinging); !errors.As(err, &ill) {
		t.Errorf("to(ringing) from ending: %v", err)
	}
	for from := range nStates {
		for to := range nStates {
			if allowed(from, to) != slices.Contains(transitions[from], to) {
				t.Errorf("allowed(%s, %s) disagrees with the table", from, to)
			}
		}
	}
}

func TestDecideOutcome(t *testing.T) {
	for _, tc := range []struct {
		kind    endKind
		bridged bool
		outcome string
		by      string
	}{
		{endNoRoute, false, OutcomeNoRoute, byGateway},
		{endCallerHungUp, false, OutcomeCallerHungUp, byCaller},
		{endCallerHungUp, true, OutcomeBridged, byCaller},
		{endPBXHungUp, true, OutcomeBridged, byPBX},
		{endPBXRejected, false, OutcomePBXRejected, byPBX},
		{endMediaFailed, true, OutcomeBridged, byGateway},
		{endDrainTimeout, true, OutcomeShutdown, byGateway},
		{endAdmin, true, OutcomeAdminHangup, byAdmin},
		{endGraphFailed, false, OutcomeFailed, byGateway},
	} {
		if o, by := decideOutcome(endCause{kind: tc.kind}, tc.bridged, mediaSeen{true, true}); o != tc.outcome || by != tc.by {
			t.Errorf("kind %d bridged %v: %s by %s, want %s by %s", tc.kind, tc.bridged, o, by, tc.outcome, tc.by)
		}
	}
	for _, seen := range []mediaSeen{{}, {fromWhatsApp: true}, {fromPBX: true}} {
		if o, by := decideOutcome(endCause{kind: endCallerHungUp}, true, seen); o != OutcomeNoMedia || by != byCaller {
			t.Errorf("bridged, caller hung up, media %+v: %s by %s, want no_media by caller", seen, o, by)
		}
	}
	if o, _ := decideOutcome(endCause{kind: endPBXMediaTimeout}, true, mediaSeen{fromWhatsApp: true}); o != OutcomePBXMediaTimeout {
		t.Errorf("pbx media timeout: %s", o)
	}
}

package webrtc

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// statsOf is l's ICE agent's counters now.
func statsOf(l *Leg) iceStats {
	l.ice.mu.Lock()
	defer l.ice.mu.Unlock()
	return l.ice.stats
}

// fixTieBreaker makes every agent of m have tie-breaker v.
func fixTieBreaker(m *Media, v uint64) { m.tieBreaker = func() uint64 { return v } }

// checksClaim waits for our agent's checks to claim the given role: checks
// sent before a switch may still be on their way (at most a few), then
// every check claims it, and a controlled agent's never nominates.
func checksClaim(t *testing.T, peer *icePeer, l *Leg, controlling bool) {
	t.Helper()
	for i := 0; ; i++ {
		c, _ := peer.nextCheck(2 * time.Second)
		if c.Contains(stun.AttrICEControlling) == controlling {
			break
		}
		if i == 3 {
			t.Fatalf("our checks do not claim controlling=%v", controlling)
		}
	}
	for range 3 {
		c, _ := peer.nextCheck(2 * time.Second)
		checkAttrs(t, c, l, controlling)
		if !controlling && c.Contains(stun.AttrUseCandidate) {
			t.Fatal("a controlled agent's check has USE-CANDIDATE")
		}
	}
}

// A caller's check claiming our role is settled by the tie-breakers (RFC
// 8445 §7.3.1.1): the larger one keeps control. When ours wins (a tie
// too, controlling; a tie, controlled, makes us switch to controlling) the
// check is answered 487 Role Conflict with our integrity and fingerprint,
// and goes no further (its USE-CANDIDATE selects nothing); when theirs
// wins we switch role and the check is processed (answered, and its
// USE-CANDIDATE selects the pair).
func TestICEIncomingRoleConflict(t *testing.T) {
	for _, c := range []struct {
		name             string
		lite             bool // the offer: we start controlling
		ours, theirs     uint64
		theyControl      bool
		want487          bool
		wantControlling  bool
		wantRoleSwitches int
	}{
		{"both controlling, ours larger: 487", true, 0x20, 0x10, true, true, true, 0},
		{"both controlling, a tie: 487", true, 0x20, 0x20, true, true, true, 0},
		{"both controlling, theirs larger: we switch", true, 0x10, 0x20, true, false, false, 1},
		{"both controlled, ours larger: we switch", false, 0x20, 0x10, false, false, true, 1},
		{"both controlled, a tie: we switch", false, 0x20, 0x20, false, false, true, 1},
		{"both controlled, theirs larger: 487", false, 0x10, 0x20, false, true, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newLoopbackMedia(t)
			fixTieBreaker(m, c.ours)
			peer := newICEPeer(t, nil)
			leg := answerOffer(t, m, testOffer(c.lite, peerUfrag, peerPwd, peer.addr))
			local := m.sockets[0].local

			// A controlling caller nominates at once (aggressively, as
			// RFC 5245 allowed): honoured only if we end up controlled.
			tx := peer.checkRole(local, leg.ice.localUfrag, leg.ice.localPwd, c.theyControl, c.theirs, c.theyControl)
			resp, ok := peer.response(tx, 2*time.Second)
			if !ok {
				t.Fatal("no answer to the caller's check")
			}
			if err := stun.NewShortTermIntegrity(leg.ice.localPwd).Check(resp); err != nil {
				t.Errorf("answer integrity: %v", err)
			}
			if err := stun.Fingerprint.Check(resp); err != nil {
				t.Errorf("answer fingerprint: %v", err)
			}
			if c.want487 {
				var code stun.ErrorCodeAttribute
				if resp.Type != stun.BindingError || code.GetFrom(resp) != nil || code.Code != stun.CodeRoleConflict {
					t.Fatalf("answer %v (ERROR-CODE %v), want a Binding error 487", resp.Type, code)
				}
			} else if resp.Type != stun.BindingSuccess {
				t.Fatalf("answer %v, want a Binding success", resp.Type)
			}
			if got := leg.ice.isControlling(); got != c.wantControlling {
				t.Fatalf("controlling = %v after the check, want %v", got, c.wantControlling)
			}
			st := statsOf(leg)
			if st.roleSwitches != c.wantRoleSwitches || st.checksReceived != 1 || (st.conflictsSent == 1) != c.want487 {
				t.Errorf("stats %+v: want %d role switches, 1 check received, 487 sent %v", st, c.wantRoleSwitches, c.want487)
			}

			if c.theyControl && !c.want487 {
				// We switched to controlled: the nomination selects its pair.
				waitFor(t, 2*time.Second, "the caller's nomination did not select its pair", func() bool {
					r, ok := selectedRemote(leg)
					return ok && r == peer.addr
				})
				return
			}
			if _, ok := selectedRemote(leg); ok {
				t.Fatal("a check answered 487 selected a pair")
			}
			checksClaim(t, peer, leg, c.wantControlling)
		})
	}
}

// A 487 to our check counts only with the caller's integrity and from the
// address the check went to (RFC 8445 §7.2.5, §7.2.5.2.1): one without
// MESSAGE-INTEGRITY, with the wrong password or from elsewhere leaves our
// role and tie-breaker alone. The authentic one turns the role (§7.2.5.1)
// and changes the tie-breaker (§16.1): the checks that follow, the refused
// pair's again among them, claim ICE-CONTROLLED with the new one and never
// nominate.
func TestICEUnauthenticated487Ignored(t *testing.T) {
	const first = 0x4242
	m := newLoopbackMedia(t)
	fixTieBreaker(m, first)
	peer := newICEPeer(t, nil)
	other := newICEPeer(t, nil) // same IP, another port: not in the offer
	leg := answerOffer(t, m, testOffer(true, peerUfrag, peerPwd, peer.addr))
	local := m.sockets[0].local

	for i, bad := range []struct {
		name string
		conn *net.UDPConn
		pwd  string
	}{
		{"without MESSAGE-INTEGRITY", peer.conn, ""},
		{"with the wrong password", peer.conn, "not-the-password-0123456"},
		{"from another address", other.conn, peerPwd},
	} {
		req, _ := peer.nextCheck(2 * time.Second)
		peer.refuseFrom(bad.conn, req, local, bad.pwd, stun.CodeRoleConflict)
		waitFor(t, 2*time.Second, "the 487 "+bad.name+" was not taken in", func() bool { return statsOf(leg).answersIgnored == i+1 })
		if !leg.ice.isControlling() {
			t.Fatalf("a 487 %s turned our role", bad.name)
		}
		if st := statsOf(leg); st.roleSwitches != 0 || st.answersConflict != 0 {
			t.Fatalf("a 487 %s: stats %+v", bad.name, st)
		}
		if tb := tieBreakerOf(leg); tb != first {
			t.Fatalf("a 487 %s changed the tie-breaker to %#x", bad.name, tb)
		}
	}
	checksClaim(t, peer, leg, true)

	// The authentic 487.
	req, _ := peer.nextCheck(2 * time.Second)
	peer.refuse(req, local, peerPwd, stun.CodeRoleConflict)
	waitFor(t, 2*time.Second, "the authentic 487 did not turn our role", func() bool { return !leg.ice.isControlling() })
	if st := statsOf(leg); st.roleSwitches != 1 || st.answersConflict != 1 {
		t.Errorf("stats %+v: want 1 role switch, 1 role conflict answer", st)
	}
	checksClaim(t, peer, leg, false)
	tb := tieBreakerOf(leg)
	if tb == first {
		t.Error("the tie-breaker did not change after the 487")
	}
	c, _ := peer.nextCheck(2 * time.Second)
	var claimed ice.AttrControlled
	if err := claimed.GetFrom(c); err != nil || uint64(claimed) != tb {
		t.Errorf("check claims ICE-CONTROLLED %#x (%v), want the new tie-breaker %#x", uint64(claimed), err, tb)
	}
	if _, ok := selectedRemote(leg); ok {
		t.Fatal("a pair is selected with no nomination from the caller")
	}
}

func tieBreakerOf(l *Leg) uint64 {
	l.ice.mu.Lock()
	defer l.ice.mu.Unlock()
	return l.ice.tieBreaker
}

// A caller that answers every check 487, whatever role it claims, gets no
// storm (the re-checks are paced at Ta with the rest), and the failure log
// says what was sent and what came back: the answers by class, the checks
// received and the role switches. The switch is logged once at debug, and
// nothing per packet at info or above.
func TestICEFailureLogCountsAnswers(t *testing.T) {
	const connect = 600 * time.Millisecond
	core, logs := observer.New(zap.DebugLevel)
	m := newLoopbackMedia(t)
	m.timing.connectTimeout = connect
	peer := newICEPeer(t, nil)
	peer.autoRefuse.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leg, err := m.Answer(ctx, testOffer(true, peerUfrag, peerPwd, peer.addr), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leg.Close() })
	select {
	case <-leg.Failed():
	case <-time.After(connect + 3*time.Second):
		t.Fatal("the leg did not fail")
	}
	if msg := leg.Err().Error(); strings.Contains(msg, "no answer") || !strings.Contains(msg, "role conflict") {
		t.Errorf("error %q: want the answers counted, not 'no answer'", msg)
	}

	warn := logs.FilterMessage("webrtc: ICE found no working pair").All()
	if len(warn) != 1 {
		t.Fatalf("%d failure logs, want 1", len(warn))
	}
	f := warn[0].ContextMap()
	if _, ok := f["answers"]; ok {
		t.Error("the failure log still has the undivided 'answers'")
	}
	num := func(k string) int64 {
		v, ok := f[k].(int64)
		if !ok {
			t.Fatalf("failure log field %q is %v (%T)", k, f[k], f[k])
		}
		return v
	}
	sent, conflicts := num("checks_sent"), num("answers_role_conflict")
	t.Logf("failure log: %v", f)
	// One check a Ta, no more: a 487 does not trigger a check of its own
	// at once (a round trip on loopback would be thousands a second).
	if max := int64(connect/iceTa) + 3; sent < 3 || sent > max {
		t.Errorf("checks_sent %d in %v, want 3..%d (one every %v)", sent, connect, max, iceTa)
	}
	if conflicts < sent-3 || conflicts > sent {
		t.Errorf("answers_role_conflict %d of %d checks sent, the peer answered every one", conflicts, sent)
	}
	if num("answers_success") != 0 || num("answers_error") != 0 || num("answers_ignored") != 0 || num("checks_received") != 0 || num("role_conflicts_sent") != 0 {
		t.Errorf("failure log %v: want only role conflict answers", f)
	}
	// The peer refuses either role, so every answer turns it.
	if sw := num("role_switches"); sw != conflicts {
		t.Errorf("role_switches %d, want one per 487 (%d)", sw, conflicts)
	}

	if n := logs.FilterMessage("webrtc: ICE role switched").FilterLevelExact(zap.DebugLevel).Len(); n != 1 {
		t.Errorf("the role switch logged %d times at debug, want once", n)
	}
	for _, e := range logs.Filter(func(e observer.LoggedEntry) bool { return e.Level >= zapcore.InfoLevel }).All() {
		if e.Message != "webrtc: ICE found no working pair" && e.Message != "webrtc: leg failed" {
			t.Errorf("logged at %v: %q", e.Level, e.Message)
		}
	}
}

// pionICEController is a pion/ice full agent on 127.0.0.1, its host
// candidates gathered, which the test makes controlling (Dial): a browser
// that controls although the offer is marked ICE-lite, so that both sides
// claim control.
func pionICEController(t *testing.T) (*ice.Agent, []netip.AddrPort) {
	t.Helper()
	agent, err := ice.NewAgentWithOptions(
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithIncludeLoopback(),
		ice.WithIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithCheckInterval(20*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Close() })
	gathered := make(chan struct{})
	if err := agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			close(gathered)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		t.Fatal("pion gathered no candidates in 5 s")
	}
	cands, err := agent.GetLocalCandidates()
	if err != nil || len(cands) == 0 {
		t.Fatalf("pion's candidates: %v %v", cands, err)
	}
	var addrs []netip.AddrPort
	for _, c := range cands {
		addrs = append(addrs, netip.AddrPortFrom(netip.MustParseAddr(c.Address()), uint16(c.Port())))
	}
	return agent, addrs
}

// pionRoleConflictCall runs one call between a controlling pion agent and
// our leg answering a lite-marked offer (controlling too): both must
// select the same pair, and data must flow both ways on it (pion's packet
// reaches the leg, the leg's DTLS reaches pion).
func pionRoleConflictCall(t *testing.T, m *Media) *Leg {
	t.Helper()
	agent, addrs := pionICEController(t)
	ufrag, pwd, err := agent.GetLocalUserCredentials()
	if err != nil {
		t.Fatal(err)
	}
	leg := answerOffer(t, m, testOffer(true, ufrag, pwd, addrs...))
	for _, line := range strings.Split(leg.AnswerSDP(), "\r\n") {
		if v, ok := strings.CutPrefix(line, "a="); ok && strings.HasPrefix(v, "candidate:") {
			c, err := ice.UnmarshalCandidate(v)
			if err != nil {
				t.Fatalf("pion parses our %q: %v", line, err)
			}
			if err := agent.AddRemoteCandidate(c); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := agent.Dial(ctx, leg.ice.localUfrag, leg.ice.localPwd) // pion controls
	if err != nil {
		t.Fatalf("pion did not connect: %v; our agent: controlling %v, %+v", err, leg.ice.isControlling(), statsOf(leg))
	}
	pair, err := agent.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("pion selected no pair: %v", err)
	}
	pionAddr := netip.AddrPortFrom(netip.MustParseAddr(pair.Local.Address()), uint16(pair.Local.Port()))
	waitFor(t, 5*time.Second, "our agent selected no pair, or not pion's", func() bool {
		r, ok := selectedRemote(leg)
		return ok && r == pionAddr
	})
	if _, err := conn.Write(rtpLike()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "pion's packet did not reach the leg", func() bool { return leg.early.Load() >= 1 })
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil || n == 0 || buf[0] < 20 || buf[0] > 63 {
		t.Fatalf("pion read %x, %v: want our DTLS", buf[:n], err)
	}
	return leg
}

// Both sides claiming control (a full agent, here pion's, controlling
// against an offer marked ICE-lite, as a browser given such an offer does)
// is settled by the tie-breakers, whichever way they fall: with ours
// forced smallest we switch to controlled (on the caller's 487, §7.2.5.1,
// or its check, §7.3.1.1) and take its nomination; with ours forced
// largest the caller switches and we nominate; with random ones (20
// calls) every call connects.
func TestICERoleConflictWithPion(t *testing.T) {
	for _, c := range []struct {
		name  string
		calls int
		ours  *uint64 // nil: random
	}{
		{"ours smallest: we switch", 5, ptr(uint64(0))},
		{"ours largest: pion switches", 5, ptr(uint64(math.MaxUint64))},
		{"random", 20, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var switched int
			for i := range c.calls {
				t.Run(fmt.Sprintf("call %d", i), func(t *testing.T) {
					m := newLoopbackMedia(t)
					if c.ours != nil {
						fixTieBreaker(m, *c.ours)
					}
					leg := pionRoleConflictCall(t, m)
					controlling, st := leg.ice.isControlling(), statsOf(leg)
					// Exactly one side switched: we, once, or pion.
					if controlling == (st.roleSwitches == 1) || st.roleSwitches > 1 {
						t.Errorf("controlling %v after %d role switches", controlling, st.roleSwitches)
					}
					if c.ours != nil && controlling != (*c.ours == math.MaxUint64) {
						t.Errorf("tie-breaker %#x: controlling %v at the end (stats %+v)", *c.ours, controlling, st)
					}
					if !controlling {
						switched++
					}
				})
			}
			t.Logf("%d of %d calls: we switched to controlled", switched, c.calls)
		})
	}
}

func ptr[T any](v T) *T { return &v }

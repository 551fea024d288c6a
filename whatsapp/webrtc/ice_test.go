package webrtc

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// checkAttrs fails unless m is one of our agent's checks as RFC 8445 §7.2.2
// has it: USERNAME "caller's ufrag:ours", PRIORITY, our role's attribute,
// MESSAGE-INTEGRITY with the caller's password, FINGERPRINT.
func checkAttrs(t *testing.T, m *stun.Message, l *Leg, controlling bool) {
	t.Helper()
	var u stun.Username
	if err := u.GetFrom(m); err != nil || string(u) != peerUfrag+":"+l.ice.localUfrag {
		t.Errorf("USERNAME %q (%v), want %q", u, err, peerUfrag+":"+l.ice.localUfrag)
	}
	if err := stun.NewShortTermIntegrity(peerPwd).Check(m); err != nil {
		t.Errorf("MESSAGE-INTEGRITY with the caller's password: %v", err)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
	if !m.Contains(stun.AttrPriority) {
		t.Error("no PRIORITY")
	}
	if m.Contains(stun.AttrICEControlling) != controlling || m.Contains(stun.AttrICEControlled) == controlling {
		t.Errorf("ICE-CONTROLLING %v, ICE-CONTROLLED %v; want controlling=%v",
			m.Contains(stun.AttrICEControlling), m.Contains(stun.AttrICEControlled), controlling)
	}
}

// Against an ICE-lite offer (Meta's) the agent controls (RFC 8445 §6.1.1)
// and nominates regularly (§8.1.1): checks without USE-CANDIDATE until one
// is answered, then the same pair again with USE-CANDIDATE, and the pair is
// selected (and DTLS starts on it) only once that one is answered.
func TestICEControllingNominatesAgainstLiteOffer(t *testing.T) {
	m := newLoopbackMedia(t)
	peer := newICEPeer(t, nil)
	leg := answerOffer(t, m, testOffer(true, peerUfrag, peerPwd, peer.addr))
	if !leg.ice.isControlling() {
		t.Fatal("not controlling against an ICE-lite offer")
	}

	// Unanswered, the checks keep coming (paced at Ta) without nominating.
	var req *stun.Message
	for i := range 4 {
		var from netip.AddrPort
		req, from = peer.nextCheck(2 * time.Second)
		if from != m.sockets[0].local {
			t.Fatalf("check %d from %v, want our socket %v", i, from, m.sockets[0].local)
		}
		checkAttrs(t, req, leg, true)
		if req.Contains(stun.AttrUseCandidate) {
			t.Fatalf("check %d nominates before any check was answered", i)
		}
	}
	if _, ok := selectedRemote(leg); ok {
		t.Fatal("a pair is selected while no check was answered")
	}

	// Answered, the same pair is checked again with USE-CANDIDATE.
	peer.answer(req, m.sockets[0].local, peerPwd)
	var nom *stun.Message
	for range 5 {
		c, _ := peer.nextCheck(2 * time.Second)
		if c.Contains(stun.AttrUseCandidate) {
			nom = c
			break
		}
	}
	if nom == nil {
		t.Fatal("no check with USE-CANDIDATE after a check was answered")
	}
	checkAttrs(t, nom, leg, true)
	if _, ok := selectedRemote(leg); ok {
		t.Fatal("the pair is selected before the nomination was answered")
	}

	// The nomination answered, the pair is selected and DTLS starts on it.
	peer.answer(nom, m.sockets[0].local, peerPwd)
	waitFor(t, 2*time.Second, "the nominated pair is not selected", func() bool {
		r, ok := selectedRemote(leg)
		return ok && r == peer.addr
	})
	waitFor(t, 3*time.Second, "no DTLS from the leg on the selected pair", func() bool { return peer.dtls.Load() > 0 })
}

// Against a full agent's offer (a browser's) the agent is controlled: its
// checks carry ICE-CONTROLLED and never USE-CANDIDATE, an answer selects
// nothing, the caller's checks are answered only with our password
// (RFC 8445 §7.3), and the pair is selected by the caller's USE-CANDIDATE
// (§7.3.1.5).
func TestICEControlledHonoursUseCandidate(t *testing.T) {
	m := newLoopbackMedia(t)
	peer := newICEPeer(t, nil)
	leg := answerOffer(t, m, testOffer(false, peerUfrag, peerPwd, peer.addr))
	if leg.ice.isControlling() {
		t.Fatal("controlling against a full agent's offer")
	}
	local := m.sockets[0].local

	req, _ := peer.nextCheck(2 * time.Second)
	checkAttrs(t, req, leg, false)
	// Every check of ours answered for a while: still nothing nominated or
	// selected.
	peer.autoAnswer.Store(true)
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		c, _, ok := peer.nextSTUN(stun.BindingRequest, 100*time.Millisecond)
		if ok && c.Contains(stun.AttrUseCandidate) {
			t.Fatal("a controlled agent nominated")
		}
	}
	peer.autoAnswer.Store(false)
	if _, ok := selectedRemote(leg); ok {
		t.Fatal("a controlled agent selected a pair on its own checks' answers")
	}

	// A check without our password gets no answer.
	tx := peer.check(local, leg.ice.localUfrag, "not-the-password-0123456", false)
	if _, ok := peer.response(tx, 300*time.Millisecond); ok {
		t.Fatal("a check with the wrong password was answered")
	}

	// A check with it is answered: same transaction, the caller's address
	// reflected, our password's integrity; it selects nothing.
	tx = peer.check(local, leg.ice.localUfrag, leg.ice.localPwd, false)
	resp, ok := peer.response(tx, 2*time.Second)
	if !ok {
		t.Fatal("no answer to the caller's check")
	}
	var xor stun.XORMappedAddress
	if resp.Type != stun.BindingSuccess || xor.GetFrom(resp) != nil || !xor.IP.Equal(net.IP(peer.addr.Addr().AsSlice())) || xor.Port != int(peer.addr.Port()) {
		t.Errorf("response %v, XOR-MAPPED-ADDRESS %v; want a success reflecting %v", resp.Type, xor, peer.addr)
	}
	if err := stun.NewShortTermIntegrity(leg.ice.localPwd).Check(resp); err != nil {
		t.Errorf("response integrity: %v", err)
	}
	if err := stun.Fingerprint.Check(resp); err != nil {
		t.Errorf("response fingerprint: %v", err)
	}
	if _, ok := selectedRemote(leg); ok {
		t.Fatal("a check without USE-CANDIDATE selected the pair")
	}

	// USE-CANDIDATE selects the pair, and DTLS starts on it.
	tx = peer.check(local, leg.ice.localUfrag, leg.ice.localPwd, true)
	if _, ok := peer.response(tx, 2*time.Second); !ok {
		t.Fatal("no answer to the nominating check")
	}
	waitFor(t, 2*time.Second, "the caller's nomination did not select its pair", func() bool {
		r, ok := selectedRemote(leg)
		return ok && r == peer.addr
	})
	waitFor(t, 3*time.Second, "no DTLS from the leg on the selected pair", func() bool { return peer.dtls.Load() > 0 })
}

// An answer counts only if it comes from where the check went (RFC 8445
// §7.2.5.2.1) with the caller's password's integrity: a success response
// from another address, or one with the wrong integrity, nominates
// nothing; the right one from the right address then does.
func TestICEResponseSourceChecked(t *testing.T) {
	m := newLoopbackMedia(t)
	peer := newICEPeer(t, nil)
	other := newICEPeer(t, nil) // same IP, another port: not in the offer
	leg := answerOffer(t, m, testOffer(true, peerUfrag, peerPwd, peer.addr))
	local := m.sockets[0].local

	noNomination := func(what string) {
		t.Helper()
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			c, _, ok := peer.nextSTUN(stun.BindingRequest, 100*time.Millisecond)
			if ok && c.Contains(stun.AttrUseCandidate) {
				t.Fatalf("%s: the agent nominated", what)
			}
		}
		if _, ok := selectedRemote(leg); ok {
			t.Fatalf("%s: a pair is selected", what)
		}
	}

	req, _ := peer.nextCheck(2 * time.Second)
	peer.answerFrom(other.conn, req, local, peerPwd)
	noNomination("answered from another address")

	req, _ = peer.nextCheck(2 * time.Second)
	peer.answer(req, local, "not-the-password-0123456")
	noNomination("answered with the wrong integrity")

	// The control: answered from the right place, the agent nominates.
	peer.drain()
	req, _ = peer.nextCheck(2 * time.Second)
	peer.answer(req, local, peerPwd)
	for range 5 {
		if c, _ := peer.nextCheck(2 * time.Second); c.Contains(stun.AttrUseCandidate) {
			return
		}
	}
	t.Fatal("no nomination after a proper answer")
}

// Consent freshness (RFC 7675 §5.1): on the selected pair the agent checks
// every interval ±20 %; while the caller answers the leg stays up past the
// timeout, and once it stops the leg fails with errConsentLost no sooner
// than the timeout after the last answer and not much later.
func TestICEConsentExpires(t *testing.T) {
	const interval, timeout = 100 * time.Millisecond, 500 * time.Millisecond
	m := newLoopbackMedia(t)
	m.timing.consentInterval, m.timing.consentTimeout = interval, timeout
	peer := newICEPeer(t, nil)
	peer.autoAnswer.Store(true)
	leg := answerOffer(t, m, testOffer(true, peerUfrag, peerPwd, peer.addr))
	waitFor(t, 2*time.Second, "no pair selected", func() bool { _, ok := selectedRemote(leg); return ok })

	before := peer.checks.Load()
	select {
	case <-leg.Failed():
		t.Fatalf("failed while the caller answers: %v", leg.Err())
	case <-time.After(3 * timeout):
	}
	// 1.5 s of checks every 80-120 ms.
	if n := peer.checks.Load() - before; n < 8 || n > 20 {
		t.Errorf("%d consent checks in %v, want one every %v ±20 %%", n, 3*timeout, interval)
	}

	peer.autoAnswer.Store(false)
	stopped := time.Now()
	select {
	case <-leg.Failed():
		took := time.Since(stopped)
		if !errors.Is(leg.Err(), errConsentLost) {
			t.Fatalf("failed with %v, want consent lost", leg.Err())
		}
		// The last answer was at most one interval (+20 %) before stopped.
		if took < timeout-interval*6/5 {
			t.Errorf("consent lost %v after the last answers, before the %v timeout", took, timeout)
		}
		t.Logf("consent lost %v after the caller went silent: %v", took, leg.Err())
	case <-time.After(timeout + 2*interval + time.Second):
		t.Fatalf("the leg still stands %v after the caller went silent (timeout %v)", time.Since(stopped), timeout)
	}
	// Once lost, no more checks.
	n := peer.checks.Load()
	time.Sleep(3 * interval)
	if d := peer.checks.Load() - n; d > 0 {
		t.Errorf("%d consent checks after consent was lost", d)
	}
}

// A controlling full agent (a browser) may nominate another pair later
// (RFC 8445 §8.1.1): controlled, the agent moves to it, and media from the
// new pair's address reaches the leg while the old address's no longer
// does.
func TestICEControlledPairSwitch(t *testing.T) {
	m := newLoopbackMedia(t)
	a := newICEPeer(t, nil)
	b := newICEPeer(t, nil)
	leg := answerOffer(t, m, testOffer(false, peerUfrag, peerPwd, a.addr, b.addr))
	local := m.sockets[0].local

	a.check(local, leg.ice.localUfrag, leg.ice.localPwd, true)
	waitFor(t, 2*time.Second, "the first nomination selected nothing", func() bool {
		r, ok := selectedRemote(leg)
		return ok && r == a.addr
	})
	a.send(rtpLike(), local)
	waitFor(t, 2*time.Second, "media from the selected pair did not reach the leg", func() bool { return leg.early.Load() == 1 })

	b.check(local, leg.ice.localUfrag, leg.ice.localPwd, true)
	waitFor(t, 2*time.Second, "the second nomination did not move the call", func() bool {
		r, ok := selectedRemote(leg)
		p := leg.pair.Load()
		return ok && r == b.addr && p != nil && p.remote == b.addr
	})
	a.send(rtpLike(), local) // the old pair: dropped
	b.send(rtpLike(), local) // the new one: taken
	waitFor(t, 2*time.Second, "media from the new pair did not reach the leg", func() bool { return leg.early.Load() >= 2 })
	time.Sleep(50 * time.Millisecond)
	if n := leg.early.Load(); n != 2 {
		t.Errorf("the leg took %d packets, want 2: the old pair's address still reaches it", n)
	}
	routes := *m.sockets[0].byRemote.Load()
	if routes[b.addr] != leg || routes[a.addr] != nil {
		t.Errorf("routes %v: want %v to the leg and %v gone", routes, b.addr, a.addr)
	}
}

package webrtc

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// Two calls from one remote IP (two ports) share our one socket: STUN
// reaches each call by its ufrag (requests, whatever address they come
// from) or its transaction (responses), and DTLS/SRTP by the address of
// its selected pair (RFC 7983); a stray address and RTCP reach no call.
func TestSocketDemuxTwoCallsOneRemoteIP(t *testing.T) {
	m := newLoopbackMedia(t)
	local := m.sockets[0].local
	const ufragA, pwdA = "callAufrag", "callApassword0123456789"
	const ufragB, pwdB = "callBufrag", "callBpassword0123456789"
	pwds := map[string]string{ufragA: pwdA, ufragB: pwdB}
	pa, pb, stray := newICEPeer(t, pwds), newICEPeer(t, pwds), newICEPeer(t, pwds)
	if pa.addr.Addr() != pb.addr.Addr() {
		t.Fatalf("peers on %v and %v, want one IP", pa.addr, pb.addr)
	}

	// Call A, ICE-lite: we control, and its answers come back by
	// transaction. Call B, full ICE: the caller's checks come by ufrag.
	pa.autoAnswer.Store(true)
	legA := answerOffer(t, m, testOffer(true, ufragA, pwdA, pa.addr))
	legB := answerOffer(t, m, testOffer(false, ufragB, pwdB, pb.addr))
	waitFor(t, 2*time.Second, "call A selected no pair", func() bool {
		r, ok := selectedRemote(legA)
		return ok && r == pa.addr
	})

	// A check for call B from call A's address goes to call B (by ufrag):
	// answered with B's password, selecting nothing of A's.
	tx := pa.checkAs(local, legB.ice.localUfrag, ufragB, legB.ice.localPwd, false)
	resp, ok := pa.response(tx, 2*time.Second)
	if !ok {
		t.Fatal("a check for call B from call A's address got no answer")
	}
	if stun.NewShortTermIntegrity(legB.ice.localPwd).Check(resp) != nil {
		t.Fatal("the check for call B was answered with another call's password")
	}
	if _, ok := selectedRemote(legB); ok {
		t.Fatal("call B selected a pair without a nomination")
	}
	pb.checkAs(local, legB.ice.localUfrag, ufragB, legB.ice.localPwd, true)
	waitFor(t, 2*time.Second, "call B selected no pair", func() bool {
		r, ok := selectedRemote(legB)
		return ok && r == pb.addr
	})
	if r, _ := selectedRemote(legA); r != pa.addr {
		t.Fatalf("call A moved to %v", r)
	}

	// Media by the selected pair's address.
	pa.send(rtpLike(), local)
	pa.send(rtpLike(), local)
	pb.send(rtpLike(), local)
	stray.send(rtpLike(), local)
	rtcp := rtpLike()
	rtcp[1] = 200 // a sender report (RFC 5761 §4): not read
	pa.send(rtcp, local)
	waitFor(t, 2*time.Second, "media did not reach the calls", func() bool {
		return legA.early.Load() >= 2 && legB.early.Load() >= 1
	})
	time.Sleep(50 * time.Millisecond)
	if a, b := legA.early.Load(), legB.early.Load(); a != 2 || b != 1 {
		t.Errorf("call A took %d packets, call B %d; want 2 and 1", a, b)
	}
	// Each call's DTLS went to its own caller.
	waitFor(t, 3*time.Second, "a call's DTLS did not reach its caller", func() bool {
		return pa.dtls.Load() > 0 && pb.dtls.Load() > 0
	})
	if n := stray.dtls.Load(); n != 0 {
		t.Errorf("the stray address got %d DTLS records", n)
	}

	// Closing call A leaves call B's routes alone.
	legA.Close()
	pa.send(rtpLike(), local)
	pb.send(rtpLike(), local)
	waitFor(t, 2*time.Second, "call B lost its media when call A ended", func() bool { return legB.early.Load() == 2 })
	if _, ok := (*m.sockets[0].byRemote.Load())[pa.addr]; ok {
		t.Error("call A's address still routes after it closed")
	}
	if m.mux.legByUfrag(legA.ice.localUfrag) != nil || m.mux.legByUfrag(legB.ice.localUfrag) != legB {
		t.Error("the ufrag table does not follow call A's close")
	}
}

// legMux: a request's ufrag finds its call; a response's transaction is
// taken once (a repeated response reaches no one); a closed call's ufrag
// and transactions are forgotten.
func TestLegMuxTables(t *testing.T) {
	mux := newLegMux()
	a := &Leg{ice: &iceAgent{localUfrag: "aaaa"}}
	b := &Leg{ice: &iceAgent{localUfrag: "bbbb"}}
	mux.addLeg(a)
	mux.addLeg(b)
	txA1, txA2, txB := stun.NewTransactionID(), stun.NewTransactionID(), stun.NewTransactionID()
	mux.addTx(txA1, a)
	mux.addTx(txA2, a)
	mux.addTx(txB, b)
	if mux.legByUfrag("aaaa") != a || mux.legByUfrag("bbbb") != b || mux.legByUfrag("cccc") != nil {
		t.Fatal("ufrag lookup")
	}
	if mux.takeTx(txB) != b || mux.takeTx(txB) != nil {
		t.Fatal("a transaction is not taken exactly once")
	}
	mux.dropTx(txA2)
	if mux.takeTx(txA2) != nil {
		t.Fatal("a dropped transaction still finds its call")
	}
	mux.addTx(txA2, a)
	mux.removeLeg(a)
	if mux.legByUfrag("aaaa") != nil || mux.takeTx(txA1) != nil || mux.takeTx(txA2) != nil {
		t.Fatal("a removed call is still found")
	}
	if mux.legByUfrag("bbbb") != b {
		t.Fatal("removing one call removed another")
	}
}

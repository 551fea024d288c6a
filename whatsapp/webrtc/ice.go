package webrtc

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"go.uber.org/zap"
)

// ICE timing. Meta is ICE-lite and answers at once, so checks are paced at
// Ta (RFC 8445 §14.2) and a pair is retried every round until one answers.
const (
	iceTa     = 50 * time.Millisecond
	iceTxLife = 2 * time.Second // an unanswered check is forgotten after this
	// Type preferences (RFC 8445 §5.1.2.2's recommended values), not to be
	// confused with payload types.
	hostTypePreference  = 126
	prflxTypePreference = 110
	// Our PRIORITY attribute: a peer-reflexive candidate's (RFC 8445
	// §7.1.1, §5.1.2.1, component 1).
	prflxPriority = prflxTypePreference<<24 | 65535<<8 | 255
)

// iceTiming bounds an agent's waits. Every Media uses defaultICETiming;
// tests shorten their own Media's.
type iceTiming struct {
	connectTimeout time.Duration // no pair selected by then: the leg fails
	// Consent freshness (RFC 7675 §5.1): a check every consentInterval
	// ±20 % on the selected pair; consent is lost consentTimeout after the
	// last answer.
	consentInterval time.Duration
	consentTimeout  time.Duration
}

func defaultICETiming() iceTiming {
	return iceTiming{
		connectTimeout:  15 * time.Second,
		consentInterval: 5 * time.Second,  // 4-6 s
		consentTimeout:  30 * time.Second, // RFC 7675 §5.1
	}
}

var errConsentLost = errors.New("webrtc: ICE consent expired")

// icePair is one local socket and one remote candidate.
type icePair struct {
	sock   *iceSocket
	remote netip.AddrPort
}

type txKind uint8

const (
	txCheck    txKind = iota // connectivity check
	txNominate               // the same pair again, with USE-CANDIDATE (regular nomination)
	txConsent                // consent freshness on the selected pair
)

type iceTx struct {
	pair        icePair
	kind        txKind
	controlling bool // the role the check claimed: a 487 answer turns on it (RFC 8445 §7.2.5.1)
	sent        time.Time
}

// iceStats counts what an agent sent and what came back, for the log when
// no pair is found.
type iceStats struct {
	checksSent      int
	answersOK       int // success responses with the caller's integrity
	answersConflict int // 487 Role Conflict with it
	answersError    int // other error responses with it
	answersIgnored  int // from another address, without the integrity, or too late
	checksReceived  int // the caller's checks with our integrity
	conflictsSent   int // of them answered 487 (RFC 8445 §7.3.1.1)
	roleSwitches    int
}

// roleConflict is the ERROR-CODE of a 487 answer (RFC 8445 §7.3.1.1).
var roleConflict = stun.ErrorCodeAttribute{Code: stun.CodeRoleConflict, Reason: []byte("Role Conflict")}

// iceAgent is one call's full ICE agent (RFC 8445). Against Meta's
// ICE-lite offer or answer, and whenever we made the offer, it is
// controlling (§6.1.1) and nominates regularly (§8.1.1): a check, and once
// it is answered the same pair again with USE-CANDIDATE. Against a full
// agent's offer (a browser) it is controlled and takes the pair the
// offerer nominates, and a later nomination too.
// When the caller claims the same role, the tie-breakers decide who
// switches (§7.3.1.1, §7.2.5.1): a browser given a lite-marked offer
// controls too. Controlling, it never changes the selected pair (no ICE
// restart). Consent is kept with a check every few seconds (RFC 7675).
type iceAgent struct {
	leg                    *Leg
	mux                    *legMux
	localUfrag, localPwd   string
	remoteUfrag, remotePwd string
	// The passwords as MESSAGE-INTEGRITY keys, made once (each conversion
	// allocates): ours checks the caller's checks and signs our answers,
	// the caller's signs our checks and checks its answers (§7.2.2, §7.3).
	localKey, remoteKey stun.MessageIntegrity
	timing              iceTiming
	pairs               []icePair
	onSelected          func(icePair)
	onSwitched          func(icePair)
	log                 *zap.Logger

	mu sync.Mutex
	// The role and the tie-breaker may change on a conflict (§7.2.5.1,
	// §7.3.1.1, §16.1): read and set under mu, like the rest.
	controlling bool
	tieBreaker  uint64
	pending     map[[stun.TransactionIDSize]byte]iceTx
	triggered   []icePair // pairs to check next, ahead of the round (§6.1.4.1's triggered-check queue)
	nominating  *icePair
	selected    *icePair
	lastAnswer  time.Time // the last answer on the selected pair
	consent     *time.Timer
	stopped     bool
	stats       iceStats
}

// newICEAgent makes a leg's agent with its own credentials; setRemote
// gives it the peer's once its SDP is known. tieBreaker, when not nil,
// gives its first tie-breaker (tests), else it is random (RFC 8445 §16.1:
// 64 bits).
func newICEAgent(l *Leg, mux *legMux, timing iceTiming, tieBreaker func() uint64, log *zap.Logger) *iceAgent {
	a := &iceAgent{
		timing:     timing,
		leg:        l,
		mux:        mux,
		localUfrag: crand.Text()[:16],
		localPwd:   crand.Text(), // 130 random bits (RFC 8445 §5.3: at least 128)
		tieBreaker: rand.Uint64(),
		pending:    map[[stun.TransactionIDSize]byte]iceTx{},
		log:        log,
	}
	if tieBreaker != nil {
		a.tieBreaker = tieBreaker()
	}
	a.localKey = stun.NewShortTermIntegrity(a.localPwd)
	return a
}

// setRemote takes the peer's credentials and candidates (its offer, or
// its answer to ours) and the role to start in, pairing every candidate
// with our sockets of its address family. It runs before the agent is
// reachable (legMux.addLeg) and before run.
func (a *iceAgent) setRemote(r *remoteDesc, controlling bool, socks []*iceSocket) {
	a.remoteUfrag, a.remotePwd = r.ufrag, r.pwd
	a.remoteKey = stun.NewShortTermIntegrity(a.remotePwd)
	a.controlling = controlling
	for _, c := range r.candidates {
		for _, s := range socks {
			if s.local.Addr().Is4() == c.Addr().Is4() {
				a.pairs = append(a.pairs, icePair{sock: s, remote: c})
			}
		}
	}
}

// startsControlling is our initial role (RFC 8445 §6.1.1): we are a full
// agent, so against an ICE-lite peer (Meta) we control; between full
// agents the offerer controls. Conflicts are settled later (§7.3.1.1).
func startsControlling(weOffer bool, peer *remoteDesc) bool {
	return weOffer || peer.lite
}

// isControlling is the agent's role now.
func (a *iceAgent) isControlling() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.controlling
}

// run sends checks at Ta, a triggered one first, else round the pairs,
// until a pair is selected, the leg closes or the time is up.
func (a *iceAgent) run(closed <-chan struct{}) error {
	if len(a.pairs) == 0 {
		return errors.New("webrtc: no remote candidate of an address family we listen on")
	}
	t := time.NewTicker(iceTa)
	defer t.Stop()
	deadline := time.NewTimer(a.timing.connectTimeout)
	defer deadline.Stop()
	for i := 0; ; i++ {
		a.mu.Lock()
		if a.selected != nil || a.stopped {
			a.mu.Unlock()
			return nil
		}
		a.prune(time.Now())
		switch {
		case a.nominating != nil:
			a.sendLocked(*a.nominating, txNominate)
		case len(a.triggered) > 0:
			p := a.triggered[0]
			a.triggered = append(a.triggered[:0], a.triggered[1:]...)
			a.sendLocked(p, txCheck)
		default:
			a.sendLocked(a.pairs[i%len(a.pairs)], txCheck)
		}
		a.mu.Unlock()
		select {
		case <-t.C:
		case <-closed:
			return nil
		case <-deadline.C:
			a.mu.Lock()
			st, controlling := a.stats, a.controlling
			a.mu.Unlock()
			a.log.Warn("webrtc: ICE found no working pair",
				zap.Int("pairs", len(a.pairs)), zap.Bool("controlling", controlling),
				zap.Int("checks_sent", st.checksSent),
				zap.Int("answers_success", st.answersOK),
				zap.Int("answers_role_conflict", st.answersConflict),
				zap.Int("answers_error", st.answersError),
				zap.Int("answers_ignored", st.answersIgnored),
				zap.Int("checks_received", st.checksReceived),
				zap.Int("role_conflicts_sent", st.conflictsSent),
				zap.Int("role_switches", st.roleSwitches))
			if st.answersOK+st.answersConflict+st.answersError+st.checksReceived == 0 {
				return errors.New("webrtc: ICE failed: no answer from the caller's candidates")
			}
			return fmt.Errorf("webrtc: ICE failed: no pair selected in %v (%d checks sent; answers: %d success, %d role conflict, %d other errors; %d checks received)",
				a.timing.connectTimeout, st.checksSent, st.answersOK, st.answersConflict, st.answersError, st.checksReceived)
		}
	}
}

// sendLocked sends one Binding request on p (a.mu held) claiming the role
// the agent has now (RFC 8445 §7.1.3): controlled, never USE-CANDIDATE
// (§7.1.2).
func (a *iceAgent) sendLocked(p icePair, kind txKind) {
	setters := []stun.Setter{
		stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(a.remoteUfrag + ":" + a.localUfrag),
		ice.PriorityAttr(prflxPriority),
	}
	if a.controlling {
		setters = append(setters, ice.AttrControlling(a.tieBreaker))
		if kind == txNominate {
			setters = append(setters, ice.UseCandidate())
		}
	} else {
		setters = append(setters, ice.AttrControlled(a.tieBreaker))
	}
	setters = append(setters, a.remoteKey, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		a.log.Error("webrtc: build ICE check", zap.Error(err))
		return
	}
	a.pending[m.TransactionID] = iceTx{pair: p, kind: kind, controlling: a.controlling, sent: time.Now()}
	a.mux.addTx(m.TransactionID, a.leg)
	a.stats.checksSent++
	if err := p.sock.writeTo(m.Raw, p.remote); err != nil {
		a.log.Debug("webrtc: send ICE check", zap.String("remote", p.remote.String()), zap.Error(err))
	}
}

// prune forgets checks nobody answered.
func (a *iceAgent) prune(now time.Time) {
	for id, tx := range a.pending {
		if now.Sub(tx.sent) > iceTxLife {
			delete(a.pending, id)
			a.mux.dropTx(id)
		}
	}
}

// handleResponse takes the answer to one of our checks (the socket's
// reader goroutine).
func (a *iceAgent) handleResponse(s *iceSocket, m *stun.Message, src netip.AddrPort) {
	a.mu.Lock()
	defer a.mu.Unlock()
	tx, ok := a.pending[m.TransactionID]
	if !ok {
		a.stats.answersIgnored++ // too late: already forgotten
		return
	}
	delete(a.pending, m.TransactionID)
	// Any answer, error responses too, counts only if it comes from where
	// the check went (RFC 8445 §7.2.5.2.1) and carries the caller's
	// password's integrity (§7.2.5, RFC 8489 §9.1.4: else as if never
	// received): a forged 487 must not turn our role.
	if tx.pair.sock != s || tx.pair.remote != src || a.remoteKey.Check(m) != nil {
		a.stats.answersIgnored++
		return
	}
	if m.Type.Class == stun.ClassErrorResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(m)
		if code.Code == stun.CodeRoleConflict {
			a.stats.answersConflict++
			a.roleConflictAnswerLocked(tx)
			return
		}
		a.stats.answersError++
		a.log.Debug("webrtc: ICE check refused", zap.String("remote", src.String()), zap.Int("code", int(code.Code)))
		return
	}
	a.stats.answersOK++
	switch tx.kind {
	case txCheck:
		if a.controlling && a.nominating == nil && a.selected == nil {
			p := tx.pair
			a.nominating = &p
			a.sendLocked(p, txNominate)
		}
	case txNominate:
		// Controlled since (a conflict), the caller nominates: not this.
		if a.controlling {
			a.selectLocked(tx.pair)
		}
	case txConsent:
		if a.selected != nil && *a.selected == tx.pair {
			a.lastAnswer = time.Now()
		}
	}
}

// roleConflictAnswerLocked takes a 487 to one of our checks (RFC 8445
// §7.2.5.1): the agent takes the role opposite to the one the check
// claimed, unless an earlier answer or check turned it already, and checks
// the pair again (the triggered-check queue, paced at Ta like the rest,
// §6.1.4.2, so a peer answering 487 to everything cannot make a storm). After a 487 the
// tie-breaker changes (§16.1).
func (a *iceAgent) roleConflictAnswerLocked(tx iceTx) {
	if a.controlling == tx.controlling {
		a.switchRoleLocked(!tx.controlling, "the caller answered 487 Role Conflict")
	}
	a.tieBreaker = rand.Uint64()
	if a.selected == nil && !a.stopped && !slices.Contains(a.triggered, tx.pair) {
		a.triggered = append(a.triggered, tx.pair)
	} // selected, the next consent check claims the new role
}

// switchRoleLocked sets the agent's role. Controlled, it nominates nothing
// (§8.1.1 is the controlling agent's); controlling, it nominates once one
// of its checks is answered. Pair priorities, which §7.3.1.1 would have
// recomputed, play no part here: every pair is checked in offer order.
func (a *iceAgent) switchRoleLocked(controlling bool, why string) {
	a.controlling = controlling
	a.nominating = nil
	a.stats.roleSwitches++
	if a.stats.roleSwitches == 1 { // once a call: a peer that keeps conflicting shows in the failure log's count
		a.log.Debug("webrtc: ICE role switched", zap.Bool("controlling", controlling), zap.String("why", why))
	}
}

// handleRequest answers a check made with our credentials (RFC 8445
// §7.3) after settling a role conflict (§7.3.1.1); controlled, a check
// with USE-CANDIDATE selects its pair.
func (a *iceAgent) handleRequest(s *iceSocket, m *stun.Message, src netip.AddrPort) {
	if a.localKey.Check(m) != nil || stun.Fingerprint.Check(m) != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.checksReceived++
	var resp *stun.Message
	var err error
	if a.keepRoleLocked(m) {
		a.stats.conflictsSent++
		resp, err = stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingError,
			roleConflict, a.localKey, stun.Fingerprint)
		if err == nil {
			_ = s.writeTo(resp.Raw, src)
		}
		return // not processed any further (§7.3.1.1)
	}
	resp, err = stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
		a.localKey, stun.Fingerprint)
	if err != nil {
		return
	}
	_ = s.writeTo(resp.Raw, src)
	p := icePair{sock: s, remote: src}
	if a.selected != nil && *a.selected == p {
		a.lastAnswer = time.Now() // the peer's consent checks show it is there too
	}
	if !a.controlling && m.Contains(stun.AttrUseCandidate) {
		switch {
		case a.selected == nil:
			a.selectLocked(p)
		case *a.selected != p && !a.stopped:
			// A controlling full agent (a browser) may nominate another
			// pair later (RFC 8445 §8.1.1 leaves the choice to it); the
			// controlled side follows. Meta, ICE-lite, never does: there
			// we control and never switch.
			a.selected = &p
			a.lastAnswer = time.Now()
			a.log.Info("webrtc: the caller moved the call to another ICE pair", zap.String("remote", p.remote.String()))
			a.onSwitched(p)
		}
	}
}

// keepRoleLocked settles the conflict of a check claiming our role (RFC
// 8445 §7.3.1.1): the larger tie-breaker controls, ours winning a tie. It
// is true when we keep our role and the check is to be answered 487; the
// agent switches role when the caller's tie-breaker wins.
func (a *iceAgent) keepRoleLocked(m *stun.Message) bool {
	if a.controlling {
		var theirs ice.AttrControlling
		if theirs.GetFrom(m) != nil {
			return false // ICE-CONTROLLED, or neither (RFC 5245 peers): no conflict
		}
		if a.tieBreaker >= uint64(theirs) {
			return true
		}
		a.switchRoleLocked(false, "the caller's check claims control with a larger tie-breaker")
		return false
	}
	var theirs ice.AttrControlled
	if theirs.GetFrom(m) != nil {
		return false
	}
	if a.tieBreaker >= uint64(theirs) {
		a.switchRoleLocked(true, "the caller's check claims the controlled role with a smaller tie-breaker")
		return false
	}
	return true
}

// selectLocked fixes the pair for the rest of the call and starts consent
// freshness.
func (a *iceAgent) selectLocked(p icePair) {
	if a.selected != nil || a.stopped {
		return
	}
	a.selected = &p
	a.lastAnswer = time.Now()
	a.prune(time.Now().Add(iceTxLife + time.Second)) // no check is of use any more
	a.consent = time.AfterFunc(a.consentDelay(), a.keepConsent)
	a.log.Debug("webrtc: ICE pair selected", zap.String("local", p.sock.local.String()), zap.String("remote", p.remote.String()))
	a.onSelected(p)
}

// keepConsent sends one consent check and gives up once the peer has been
// silent for timing.consentTimeout (RFC 7675 §5.1).
func (a *iceAgent) keepConsent() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	now := time.Now()
	if silent := now.Sub(a.lastAnswer); silent > a.timing.consentTimeout {
		a.stopped = true
		a.mu.Unlock()
		a.leg.fail(fmt.Errorf("%w: no answer to checks for %v", errConsentLost, silent.Round(time.Millisecond)))
		return
	}
	a.prune(now)
	a.sendLocked(*a.selected, txConsent)
	a.consent.Reset(a.consentDelay())
	a.mu.Unlock()
}

// consentDelay is the interval ±20 %, random (RFC 7675 §5.1: 4-6 s).
func (a *iceAgent) consentDelay() time.Duration {
	iv := a.timing.consentInterval
	return iv*4/5 + rand.N(iv*2/5)
}

// stop ends checks and consent; outstanding transactions are forgotten.
func (a *iceAgent) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.consent != nil {
		a.consent.Stop()
	}
}

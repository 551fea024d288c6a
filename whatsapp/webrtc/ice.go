package webrtc

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
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
	pair icePair
	kind txKind
	sent time.Time
}

// iceAgent is one call's full ICE agent (RFC 8445). Against Meta's
// ICE-lite offer it is controlling (§6.1.1) and nominates regularly
// (§8.1.1): a check, and once it is answered the same pair again with
// USE-CANDIDATE. Against a full agent's offer (a browser) it is controlled
// and takes the pair the offerer nominates, and a later nomination too.
// Controlling, it never changes the selected pair (no ICE restart). Consent
// is kept with a check every few seconds (RFC 7675).
type iceAgent struct {
	leg                    *Leg
	mux                    *legMux
	localUfrag, localPwd   string
	remoteUfrag, remotePwd string
	controlling            bool
	tieBreaker             uint64
	timing                 iceTiming
	pairs                  []icePair
	onSelected             func(icePair)
	onSwitched             func(icePair)
	log                    *zap.Logger

	mu          sync.Mutex
	pending     map[[stun.TransactionIDSize]byte]iceTx
	nominating  *icePair
	selected    *icePair
	lastAnswer  time.Time // the last answer on the selected pair
	consent     *time.Timer
	stopped     bool
	checksSent  int
	checksFound int
}

func newICEAgent(l *Leg, mux *legMux, o *offer, socks []*iceSocket, timing iceTiming, log *zap.Logger) *iceAgent {
	a := &iceAgent{
		timing:      timing,
		leg:         l,
		mux:         mux,
		localUfrag:  crand.Text()[:16],
		localPwd:    crand.Text(), // 130 random bits (RFC 8445 §5.3: at least 128)
		remoteUfrag: o.ufrag,
		remotePwd:   o.pwd,
		controlling: o.lite,
		tieBreaker:  rand.Uint64(),
		pending:     map[[stun.TransactionIDSize]byte]iceTx{},
		log:         log,
	}
	for _, r := range o.candidates {
		for _, s := range socks {
			if s.local.Addr().Is4() == r.Addr().Is4() {
				a.pairs = append(a.pairs, icePair{sock: s, remote: r})
			}
		}
	}
	return a
}

// run sends checks at Ta, round the pairs, until a pair is selected, the
// leg closes or the time is up.
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
		if a.nominating != nil {
			a.sendLocked(*a.nominating, txNominate)
		} else {
			a.sendLocked(a.pairs[i%len(a.pairs)], txCheck)
		}
		a.mu.Unlock()
		select {
		case <-t.C:
		case <-closed:
			return nil
		case <-deadline.C:
			a.mu.Lock()
			sent, found := a.checksSent, a.checksFound
			a.mu.Unlock()
			a.log.Warn("webrtc: ICE found no working pair", zap.Int("checks_sent", sent), zap.Int("answers", found),
				zap.Int("pairs", len(a.pairs)), zap.Bool("controlling", a.controlling))
			return errors.New("webrtc: ICE failed: no answer from the caller's candidates")
		}
	}
}

// sendLocked sends one Binding request on p (a.mu held).
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
	setters = append(setters, stun.NewShortTermIntegrity(a.remotePwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		a.log.Error("webrtc: build ICE check", zap.Error(err))
		return
	}
	a.pending[m.TransactionID] = iceTx{pair: p, kind: kind, sent: time.Now()}
	a.mux.addTx(m.TransactionID, a.leg)
	a.checksSent++
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
		return
	}
	delete(a.pending, m.TransactionID)
	// The answer must come from where the check went (RFC 8445
	// §7.2.5.2.1) and carry the peer's password's integrity.
	if tx.pair.sock != s || tx.pair.remote != src {
		return
	}
	if m.Type.Class == stun.ClassErrorResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(m)
		a.log.Debug("webrtc: ICE check refused", zap.String("remote", src.String()), zap.Int("code", int(code.Code)))
		return
	}
	if stun.NewShortTermIntegrity(a.remotePwd).Check(m) != nil {
		return
	}
	a.checksFound++
	switch tx.kind {
	case txCheck:
		if a.controlling && a.nominating == nil && a.selected == nil {
			p := tx.pair
			a.nominating = &p
			a.sendLocked(p, txNominate)
		}
	case txNominate:
		a.selectLocked(tx.pair)
	case txConsent:
		if a.selected != nil && *a.selected == tx.pair {
			a.lastAnswer = time.Now()
		}
	}
}

// handleRequest answers a check made with our credentials (RFC 8445
// §7.3); controlled, a check with USE-CANDIDATE selects its pair.
func (a *iceAgent) handleRequest(s *iceSocket, m *stun.Message, src netip.AddrPort) {
	integrity := stun.NewShortTermIntegrity(a.localPwd)
	if integrity.Check(m) != nil || stun.Fingerprint.Check(m) != nil {
		return
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
		integrity, stun.Fingerprint)
	if err != nil {
		return
	}
	_ = s.writeTo(resp.Raw, src)
	a.mu.Lock()
	defer a.mu.Unlock()
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

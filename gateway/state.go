package gateway

import (
	"fmt"
	"sync"
	"time"
)

// callState is where a call is in its life. The states follow Meta's
// calling flow for a user-initiated call (connect webhook → pre_accept →
// accept → terminate) joined to a SIP INVITE dialog (RFC 3261 §13), and
// for a business-initiated one (the agent's INVITE → call permission →
// Graph connect → Meta's answer → 200 OK) the other way round. Both
// directions share the end of the path: awaiting_media, accepting,
// bridged, ending, ended.
type callState uint8

const (
	stateNew           callState = iota // the connect webhook was taken; routing and admission
	stateAnswering                      // the WebRTC answer to Meta's offer is being made
	statePreAccepting                   // pre_accept sent: ICE and DTLS come up while the PBX rings
	stateRinging                        // INVITE sent; the PBX has not answered yet
	stateAwaitingMedia                  // the PBX answered (200 OK); waiting for ICE and DTLS to be up
	stateAccepting                      // the WebRTC leg is up; accept sent to Meta
	stateBridged                        // Meta accepted: media flows both ways
	stateEnding                         // the end is decided; each side is being hung up
	stateEnded                          // both sides released; the record is written
	// Business-initiated calls (an agent dials a WhatsApp user).
	stateCheckingPermission // the agent's INVITE is routed; the user's call permission is read
	stateAwaitingPermission // a permission request was sent; the agent's call rings until the user replies
	stateConnecting         // our WebRTC offer is going to Meta (Graph connect)
	stateRingingUser        // Meta took the call: the user's phone rings until Meta's answer
	nStates
)

var stateNames = [nStates]string{
	stateNew:           "new",
	stateAnswering:     "answering",
	statePreAccepting:  "pre_accepting",
	stateRinging:       "ringing",
	stateAwaitingMedia: "awaiting_media",
	stateAccepting:     "accepting",
	stateBridged:       "bridged",
	stateEnding:        "ending",
	stateEnded:         "ended",

	stateCheckingPermission: "checking_permission",
	stateAwaitingPermission: "awaiting_permission",
	stateConnecting:         "connecting",
	stateRingingUser:        "ringing_user",
}

func (s callState) String() string {
	if s < nStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// transitions is every move a call may make, and nothing else: each state
// goes forward one step when its action succeeds, or to ending when the
// call is over for any reason. A business-initiated call has its own
// states up to Meta's answer (permission, connect, the user's phone
// ringing), then shares the rest: awaiting_media (ICE and DTLS), accepting
// (the 200 OK to the agent's INVITE; accept to Meta for a user-initiated
// call), bridged.
//
// A user-initiated call on a g711 trunk whose offer has G.711 INVITEs
// first and answers Meta once the PBX answered (whatsappcodec.go): new →
// ringing → answering → pre_accepting → awaiting_media.
var transitions = [nStates][]callState{
	stateNew:           {stateAnswering, stateRinging, stateCheckingPermission, stateEnding},
	stateAnswering:     {statePreAccepting, stateEnding},
	statePreAccepting:  {stateRinging, stateAwaitingMedia, stateEnding},
	stateRinging:       {stateAwaitingMedia, stateAnswering, stateEnding},
	stateAwaitingMedia: {stateAccepting, stateEnding},
	stateAccepting:     {stateBridged, stateEnding},
	stateBridged:       {stateEnding},
	stateEnding:        {stateEnded},

	stateCheckingPermission: {stateConnecting, stateAwaitingPermission, stateEnding},
	stateAwaitingPermission: {stateConnecting, stateEnding},
	stateConnecting:         {stateRingingUser, stateEnding},
	stateRingingUser:        {stateAwaitingMedia, stateEnding},
}

func allowed(from, to callState) bool {
	if from >= nStates {
		return false
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// transition is one move of a call, timestamped.
type transition struct {
	From, To callState
	At       time.Time
}

// errIllegalTransition is a move the table does not allow: a bug in the
// call machine, logged and counted; the call stays where it was.
type errIllegalTransition struct{ from, to callState }

func (e errIllegalTransition) Error() string {
	return fmt.Sprintf("illegal call state transition %s → %s", e.from, e.to)
}

// stateMachine holds a call's state and the moves it made. Only the call's
// own goroutine moves it; the admin API and the record read it from others.
type stateMachine struct {
	mu      sync.Mutex
	state   callState
	entered [nStates]time.Time // when each state was first entered
	history []transition
	now     func() time.Time
}

func newStateMachine(now func() time.Time) *stateMachine {
	if now == nil {
		now = time.Now
	}
	m := &stateMachine{state: stateNew, now: now, history: make([]transition, 0, 8)}
	m.entered[stateNew] = now()
	return m
}

// to moves the machine, or refuses a move the table does not allow.
func (m *stateMachine) to(next callState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !allowed(m.state, next) {
		return errIllegalTransition{m.state, next}
	}
	at := m.now()
	m.history = append(m.history, transition{From: m.state, To: next, At: at})
	m.state = next
	if m.entered[next].IsZero() {
		m.entered[next] = at
	}
	return nil
}

func (m *stateMachine) current() callState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// enteredAt is when the call first reached s (zero if it never did).
func (m *stateMachine) enteredAt(s callState) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entered[s]
}

// moves is a copy of the history.
func (m *stateMachine) moves() []transition {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]transition(nil), m.history...)
}

package wasim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Business-initiated calls (BIC), Meta's side (Meta, WhatsApp Cloud API
// Calling: "Business-initiated calls", "Obtain user call permissions",
// "Troubleshooting"): the business needs the user's call permission, asks
// for it with a call_permission_request message and learns the answer from
// a `messages` webhook, queries it with GET call_permissions, places the
// call with the connect action and an SDP offer; Meta answers in a connect
// webhook, posts RINGING, ACCEPTED or REJECTED statuses and, at the end, a
// terminate webhook.
//
// Where Meta's documents are silent the simulator infers, and says so:
//   - the terminate of a call the user never answered (declined, not
//     answered, cancelled by the business) has status FAILED, of an
//     answered one COMPLETED;
//   - media from the business before the user answers breaks no rule (in
//     SIP mode "the business sends the first SRTP packet"); it is counted
//     (Report.PacketsBeforeAnswer), not heard;
//   - four unanswered calls in a row revoke any approved permission,
//     temporary or permanent ("an approved permission"), reported as
//     Meta's sample shows: call_permission_reply "reject", "automatic";
//   - GET call_permissions is limited to 5 a second per number as the API
//     reference says (the permissions page of June 2026 says 100; see
//     Config.PermissionChecksPerSecond);
//   - statuses webhooks carry contacts[] beside statuses[]; context.from of
//     a call_permission_reply is the user's number, as in Meta's sample;
//   - a free-form permission request is taken outside a customer service
//     window too, and 138007 (connect timeout) is never sent: a business
//     that never connects fails ICE (138020) or sends no media (138021).

// User settings: permission states, replies to a permission request,
// answers to a call, the DTLS role of Meta's answer and webhook orders.
const (
	PermissionNone      = "none"
	PermissionTemporary = "temporary"
	PermissionPermanent = "permanent"

	ReplyAccept          = "accept"           // temporary permission (7 days)
	ReplyAcceptPermanent = "accept_permanent" // permanent permission
	ReplyReject          = "reject"
	ReplyNone            = "none" // never replies

	AnswerAccept = "accept"
	AnswerReject = "reject"
	AnswerNone   = "none" // lets it ring until RingTimeout

	DTLSActive  = "active"  // Meta's answer says a=setup:active (Meta is the DTLS client), as in Meta's samples
	DTLSPassive = "passive" // a=setup:passive: the business must be the DTLS client

	// OrderNormal: connect (Meta's answer), RINGING, ACCEPTED when the user
	// answers (or REJECTED), terminate.
	OrderNormal = "normal"
	// OrderAcceptedAfterMedia holds ACCEPTED until media flows both ways
	// ("ACCEPTED typically always arrives after the call has been
	// established... primarily sent for call event auditing").
	OrderAcceptedAfterMedia = "accepted_after_media"
	// OrderAcceptedBeforeConnect delivers RINGING and ACCEPTED (or REJECTED
	// and terminate) before the connect webhook that carries the answer.
	OrderAcceptedBeforeConnect = "accepted_before_connect"
	// OrderTerminateBeforeConnect: the user declines at once and the
	// terminate webhook arrives before the connect (a stale answer the
	// business must leave alone).
	OrderTerminateBeforeConnect = "terminate_before_connect"
)

// Meta's per business and user limits ("Obtain user call permissions").
const (
	temporaryPermissionTTL = 7 * 24 * time.Hour // "granted for 7 calendar days (168 hours)"
	requestsPerDay         = 1                  // permission requests in 24 h
	requestsPerWeek        = 2                  // and in 7 days
	unansweredToRevoke     = 4                  // "4 consecutive unanswered calls ... automatically revoked"
	day                    = 24 * time.Hour
	week                   = 7 * day
)

// User is one simulated WhatsApp user the business may call.
type User struct {
	// WaID is the user's phone number (digits); BSUID their business-scoped
	// user id (made up when empty). A user without a WaID is reached by
	// recipient (BSUID) only.
	WaID, BSUID string
	ProfileName string // contacts[].profile.name (default "WhatsApp User")

	// Permission is the call permission the user has given the business:
	// "none" (default), "temporary" (until PermissionExpires, default 7
	// days from SetUser) or "permanent".
	Permission        string
	PermissionExpires time.Time
	// ReplyToRequest is how the user answers a permission request, after
	// ReplyAfter: "accept" (default), "accept_permanent", "reject" or
	// "none".
	ReplyToRequest string
	ReplyAfter     time.Duration

	// Answer is what the user does when the business calls: "accept"
	// (default), "reject" or "none" (never answers). RingingAfter and
	// AnswerAfter count from the connect request.
	Answer       string
	AnswerAfter  time.Duration
	RingingAfter time.Duration
	// TalkFor is how long the user talks once media is up before hanging
	// up; 0 waits for the business to hang up.
	TalkFor time.Duration
	// ToneHz (default 1000) or WAVFile is what the user says.
	ToneHz  float64
	WAVFile string
	// Digits are pressed DigitsAfter (default 1 s) after the user starts
	// talking, as in CallOptions.
	Digits      string
	DigitsAfter time.Duration

	// DTLSRole is the a=setup Meta's answer takes: "active" (default) or "passive".
	DTLSRole string
	// WebhookOrder is one of the Order… constants (default "normal").
	WebhookOrder string
	// KeepAudio keeps the decoded business→user audio in Report.ReceivedPCM.
	KeepAudio bool
}

func normalizeUser(u *User) error {
	var errs []error
	if u.WaID != "" {
		if id, ok := normalizeWaID(u.WaID); ok {
			u.WaID = id
		} else {
			errs = append(errs, fmt.Errorf("wasim: user wa_id %q is not a phone number", u.WaID))
		}
	}
	if u.BSUID == "" {
		u.BSUID = "US." + strconv.FormatUint(rand.Uint64N(9e18)+1e18, 10)
	}
	if u.ProfileName == "" {
		u.ProfileName = "WhatsApp User"
	}
	def := func(v *string, d string, allowed ...string) {
		if *v == "" {
			*v = d
		}
		for _, a := range allowed {
			if *v == a {
				return
			}
		}
		errs = append(errs, fmt.Errorf("wasim: user setting %q: want one of %s", *v, strings.Join(allowed, ", ")))
	}
	def(&u.Permission, PermissionNone, PermissionNone, PermissionTemporary, PermissionPermanent)
	def(&u.ReplyToRequest, ReplyAccept, ReplyAccept, ReplyAcceptPermanent, ReplyReject, ReplyNone)
	def(&u.Answer, AnswerAccept, AnswerAccept, AnswerReject, AnswerNone)
	def(&u.DTLSRole, DTLSActive, DTLSActive, DTLSPassive)
	def(&u.WebhookOrder, OrderNormal, OrderNormal, OrderAcceptedAfterMedia, OrderAcceptedBeforeConnect, OrderTerminateBeforeConnect)
	if u.ToneHz == 0 {
		u.ToneHz = 1000
	}
	if u.DigitsAfter == 0 {
		u.DigitsAfter = time.Second
	}
	if u.ReplyAfter < 0 || u.AnswerAfter < 0 || u.RingingAfter < 0 || u.TalkFor < 0 || u.DigitsAfter < 0 {
		errs = append(errs, errors.New("wasim: negative user delay"))
	}
	if u.WAVFile == "" && (u.ToneHz < 50 || u.ToneHz > 20000 || math.IsNaN(u.ToneHz)) {
		errs = append(errs, fmt.Errorf("wasim: tone %g Hz out of 50-20000", u.ToneHz))
	}
	if err := validateDigits(u.Digits); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// normalizeWaID takes a phone number as the Graph API does ("+1 (408)
// 555-1234", "14085551234") and returns its digits.
func normalizeWaID(s string) (string, bool) {
	var b strings.Builder
	for i, r := range strings.TrimSpace(s) {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')':
		default:
			return "", false
		}
	}
	n := b.Len()
	return b.String(), n >= 5 && n <= 15
}

// userState is one user and what the business did with them.
type userState struct {
	u          User
	permission string // PermissionNone, …Temporary, …Permanent
	expires    time.Time
	requests   []time.Time // permission requests that count toward the limits
	requestGen int         // the latest request: an older one's pending reply is dropped
	connected  []time.Time // calls the user answered (the 24 h limit)
	unanswered int         // business-initiated calls not answered in a row

	checks, requestsSent, callsPlaced int
	connects                          int // connects naming the user, refused ones included

	calls   []*Call // business-initiated calls, in order
	claimed int     // calls handed out by BICCall
	wake    chan struct{}
	live    *Call // a call in progress (one at a time: 138003)
	pending bool  // a connect being set up
}

// SetUser adds a simulated user, or replaces the settings and permission of
// the user with the same wa_id or BSUID (the history the limits count is
// kept). Unknown users have no permission and never answer.
func (s *Sim) SetUser(u User) error {
	if err := normalizeUser(&u); err != nil {
		return err
	}
	if u.WaID == "" && u.BSUID == "" {
		return errors.New("wasim: a user needs a wa_id or a BSUID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.lookupUserLocked(u.WaID, u.BSUID)
	if st == nil {
		st = &userState{wake: make(chan struct{})}
	}
	st.u = u
	st.permission = u.Permission
	st.expires = time.Time{}
	if u.Permission == PermissionTemporary {
		st.expires = u.PermissionExpires
		if st.expires.IsZero() {
			st.expires = s.clock().Add(temporaryPermissionTTL)
		}
	}
	s.indexUserLocked(st)
	return nil
}

func (s *Sim) indexUserLocked(st *userState) {
	if st.u.WaID != "" {
		s.users["wa:"+st.u.WaID] = st
	}
	s.users["id:"+st.u.BSUID] = st
}

// lookupUserLocked finds a user by wa_id, else by BSUID (Meta: "to takes
// precedence" over recipient).
func (s *Sim) lookupUserLocked(waID, bsuid string) *userState {
	if waID != "" {
		if st := s.users["wa:"+waID]; st != nil {
			return st
		}
	}
	if bsuid != "" {
		return s.users["id:"+bsuid]
	}
	return nil
}

// userForLocked finds a user or makes one up: no permission, never replies,
// never answers.
func (s *Sim) userForLocked(waID, bsuid string) *userState {
	if st := s.lookupUserLocked(waID, bsuid); st != nil {
		return st
	}
	u := User{WaID: waID, BSUID: bsuid, ReplyToRequest: ReplyNone, Answer: AnswerNone}
	_ = normalizeUser(&u) // waID is already digits
	st := &userState{u: u, permission: PermissionNone, wake: make(chan struct{})}
	s.indexUserLocked(st)
	return st
}

// permissionLocked is the user's permission now; a temporary one lapses
// silently ("No webhook is sent when a temporary permission expires").
func (st *userState) permissionLocked(now time.Time) string {
	if st.permission == PermissionTemporary && !now.Before(st.expires) {
		st.permission, st.expires = PermissionNone, time.Time{}
	}
	return st.permission
}

// pruneLocked forgets what no limit counts any more.
func (st *userState) pruneLocked(now time.Time) {
	st.requests = since(st.requests, now.Add(-week))
	st.connected = since(st.connected, now.Add(-day))
}

func since(ts []time.Time, from time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(from) {
		i++
	}
	return ts[i:]
}

// requestUsageLocked counts the permission requests in the last 24 h and 7
// days and says when each limit frees up (zero while under it).
func (st *userState) requestUsageLocked(now time.Time) (inDay, inWeek int, dayFree, weekFree time.Time) {
	st.pruneLocked(now)
	inWeek = len(st.requests)
	for _, t := range st.requests {
		if t.After(now.Add(-day)) {
			inDay++
		}
	}
	if inDay >= requestsPerDay {
		dayFree = st.requests[len(st.requests)-inDay].Add(day)
	}
	if inWeek >= requestsPerWeek {
		weekFree = st.requests[inWeek-requestsPerWeek].Add(week)
	}
	return inDay, inWeek, dayFree, weekFree
}

// callUsageLocked counts the answered calls of the last 24 h and says when
// the limit frees up (zero while under it).
func (st *userState) callUsageLocked(now time.Time, max int) (n int, free time.Time) {
	st.pruneLocked(now)
	n = len(st.connected)
	if n >= max {
		free = st.connected[n-max].Add(day)
	}
	return n, free
}

// UserState is a simulated user's permission and what the business did.
type UserState struct {
	WaID, BSUID string
	// Permission is Meta's word for it: "no_permission", "temporary" or "permanent".
	Permission        string
	PermissionExpires time.Time // temporary only
	// PermissionRequests counts the permission request messages Meta took;
	// PermissionChecks the call_permissions queries answered.
	PermissionRequests, PermissionChecks int
	// CallsPlaced counts the connects that made a call; ConnectedCalls24h
	// the calls the user answered in the last 24 h; UnansweredInRow the
	// calls in a row the user did not answer.
	CallsPlaced, ConnectedCalls24h, UnansweredInRow int
	// ConnectRequests counts the connects naming the user that passed the
	// body checks, refused ones included (no permission 138006, a call
	// already in progress 138003, the daily limit 138012): a business that
	// placed one call twice shows ConnectRequests > CallsPlaced. Connects
	// are counted here, per user; a call's Report.ActionsReceived lists the
	// other actions (pre_accept, accept, reject, terminate) on that call.
	ConnectRequests int
}

// UserState returns the state of the user with that wa_id or BSUID.
func (s *Sim) UserState(id string) (UserState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.lookupUserLocked(digitsOr(id), id)
	if st == nil {
		return UserState{}, false
	}
	now := s.clock()
	n, _ := st.callUsageLocked(now, s.cfg.MaxConnectedCallsPerDay)
	return UserState{
		WaID: st.u.WaID, BSUID: st.u.BSUID,
		Permission:         metaPermission(st.permissionLocked(now)),
		PermissionExpires:  st.expires,
		PermissionRequests: st.requestsSent, PermissionChecks: st.checks,
		CallsPlaced: st.callsPlaced, ConnectedCalls24h: n, UnansweredInRow: st.unanswered,
		ConnectRequests: st.connects,
	}, true
}

// digitsOr returns id's digits if it is a phone number, else "".
func digitsOr(id string) string {
	if d, ok := normalizeWaID(id); ok {
		return d
	}
	return ""
}

func metaPermission(p string) string {
	if p == PermissionNone {
		return "no_permission"
	}
	return p
}

// BICCall waits for the next business-initiated call to the user with that
// wa_id or BSUID: each call is handed out once, in the order the business
// placed them (a call placed before BICCall was called counts).
func (s *Sim) BICCall(ctx context.Context, user string) (*Call, error) {
	for {
		s.mu.Lock()
		st := s.lookupUserLocked(digitsOr(user), user)
		if st == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("wasim: no user %q (SetUser first)", user)
		}
		if st.claimed < len(st.calls) {
			c := st.calls[st.claimed]
			st.claimed++
			s.mu.Unlock()
			return c, nil
		}
		wake := st.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("wasim: waiting for a call to %s: %w", user, ctx.Err())
		case <-s.ctx.Done():
			return nil, errors.New("wasim: simulator closed")
		}
	}
}

// WaitBIC waits for the business-initiated call callID to end and returns
// its report.
func (s *Sim) WaitBIC(ctx context.Context, callID string) (*Report, error) {
	c := s.call(callID)
	if c == nil || c.bic == nil {
		return nil, fmt.Errorf("wasim: no business-initiated call %q", callID)
	}
	return c.Wait(ctx)
}

// noteConnected is a connected call with the user (either direction):
// "These limits [on permission requests] reset when any connected call
// (business-initiated/user-initiated) is made".
func (s *Sim) noteConnected(waID, bsuid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.lookupUserLocked(waID, bsuid); st != nil {
		st.requests = nil
	}
}

// setClock replaces the clock permissions and limits are kept by (tests).
func (s *Sim) setClock(f func() time.Time) {
	s.mu.Lock()
	s.clock = f
	s.mu.Unlock()
}

func (s *Sim) now() time.Time {
	s.mu.Lock()
	f := s.clock
	s.mu.Unlock()
	return f()
}

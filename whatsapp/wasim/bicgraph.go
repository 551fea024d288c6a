package wasim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// Meta's calling error codes the business-initiated side answers with
// (Meta, "Troubleshoot WhatsApp Calling Errors": code, title, HTTP status).
func metaError(status, code int, title, details string) *graphError {
	return &graphError{status: status, code: code, message: fmt.Sprintf("(#%d) %s", code, title), details: details}
}

func errRateLimit(details string) *graphError {
	return metaError(http.StatusTooManyRequests, 613, "Fetch Call Permission For Consumer Phone Number API Limit Hit", details)
}

func errNoPermission(details string) *graphError {
	return metaError(http.StatusUnauthorized, 138006, "No approved call permission found", details)
}

func errDuplicateCall(details string) *graphError {
	return metaError(http.StatusBadRequest, 138003, "Duplicate call", details)
}

func errRequestLimit(details string) *graphError {
	return metaError(http.StatusBadRequest, 138009, "Call Permission Request Limit Hit", details)
}

func errCallLimit(details string) *graphError {
	return metaError(http.StatusBadRequest, 138012, "Business Initiated Calls Limit Hit", details)
}

func errPermanentExists(details string) *graphError {
	return metaError(http.StatusBadRequest, 138017, "Call permission request can't be sent because a permanent permission already exists.", details)
}

// The call_permissions answer (R5), in Meta's shape.
type permissionsBody struct {
	MessagingProduct string             `json:"messaging_product"`
	Permission       permissionStatus   `json:"permission"`
	Actions          []permissionAction `json:"actions"`
}

type permissionStatus struct {
	Status         string `json:"status"`
	ExpirationTime int64  `json:"expiration_time,omitempty"`
}

type permissionAction struct {
	ActionName       string            `json:"action_name"`
	CanPerformAction bool              `json:"can_perform_action"`
	Limits           []permissionLimit `json:"limits"`
}

type permissionLimit struct {
	TimePeriod          string `json:"time_period"`
	MaxAllowed          int    `json:"max_allowed"`
	CurrentUsage        int    `json:"current_usage"`
	LimitExpirationTime int64  `json:"limit_expiration_time,omitempty"` // only at the limit
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// servePermissions answers GET /{PNID}/call_permissions?user_wa_id=… or
// ?recipient=… (R5). An unknown or uncallable user has no_permission.
func (s *Sim) servePermissions(g *graphRequest) {
	q := g.r.URL.Query()
	waID, bsuid := q.Get("user_wa_id"), q.Get("recipient")
	if waID == "" && bsuid == "" {
		g.fail(badRequest("The parameter user_wa_id (or recipient) is required"), "graph: call_permissions without user_wa_id or recipient")
		return
	}
	if waID != "" {
		d, ok := normalizeWaID(waID)
		if !ok {
			g.fail(badRequest("Invalid parameter user_wa_id %q", waID), fmt.Sprintf("graph: call_permissions user_wa_id %q is not a phone number", waID))
			return
		}
		waID = d
	}
	s.mu.Lock()
	now := s.clock()
	// "A maximum of 5 requests in a 1 second window", per business number.
	s.permChecks = since(s.permChecks, now.Add(-time.Second))
	if len(s.permChecks) >= s.cfg.PermissionChecksPerSecond {
		s.mu.Unlock()
		g.fail(errRateLimit(fmt.Sprintf("at most %d call_permissions requests in a one-second window", s.cfg.PermissionChecksPerSecond)), "")
		return
	}
	s.permChecks = append(s.permChecks, now)
	st := s.userForLocked(waID, bsuid)
	st.checks++
	body := st.permissionsBodyLocked(now, s.cfg.MaxConnectedCallsPerDay)
	s.mu.Unlock()
	writeJSON(g.w, body)
}

func (st *userState) permissionsBodyLocked(now time.Time, maxCalls int) permissionsBody {
	perm := st.permissionLocked(now)
	inDay, inWeek, dayFree, weekFree := st.requestUsageLocked(now)
	calls, callsFree := st.callUsageLocked(now, maxCalls)
	b := permissionsBody{MessagingProduct: "whatsapp", Permission: permissionStatus{Status: metaPermission(perm)}}
	if perm == PermissionTemporary {
		b.Permission.ExpirationTime = st.expires.Unix()
	}
	b.Actions = []permissionAction{
		{
			ActionName:       "send_call_permission_request",
			CanPerformAction: perm != PermissionPermanent && inDay < requestsPerDay && inWeek < requestsPerWeek,
			Limits: []permissionLimit{
				{TimePeriod: "PT24H", MaxAllowed: requestsPerDay, CurrentUsage: inDay, LimitExpirationTime: unixOrZero(dayFree)},
				{TimePeriod: "P7D", MaxAllowed: requestsPerWeek, CurrentUsage: inWeek, LimitExpirationTime: unixOrZero(weekFree)},
			},
		},
		{
			ActionName:       "start_call",
			CanPerformAction: perm != PermissionNone && calls < maxCalls,
			Limits: []permissionLimit{
				{TimePeriod: "PT24H", MaxAllowed: maxCalls, CurrentUsage: calls, LimitExpirationTime: unixOrZero(callsFree)},
			},
		},
	}
	return b
}

// messageRequest is the body of POST /{PNID}/messages: only a call
// permission request (interactive call_permission_request, or a template
// with a call_permission_request component) has an effect here.
type messageRequest struct {
	MessagingProduct string `json:"messaging_product"`
	RecipientType    string `json:"recipient_type"`
	To               string `json:"to"`
	Recipient        string `json:"recipient"`
	Type             string `json:"type"`
	Interactive      *struct {
		Type   string `json:"type"`
		Action *struct {
			Name string `json:"name"`
		} `json:"action"`
	} `json:"interactive"`
	Template *struct {
		Name     string `json:"name"`
		Language *struct {
			Code string `json:"code"`
		} `json:"language"`
		Components []struct {
			Type string `json:"type"`
		} `json:"components"`
	} `json:"template"`
}

type messagesBody struct {
	MessagingProduct string           `json:"messaging_product"`
	Contacts         []messageContact `json:"contacts"`
	Messages         []messageID      `json:"messages"`
}

type messageContact struct {
	Input  string `json:"input"`
	WaID   string `json:"wa_id,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

type messageID struct {
	ID string `json:"id"`
}

// serveMessages takes POST /{PNID}/messages (R4). A call permission request
// counts toward Meta's limits (1 in 24 h, 2 in 7 days: 138009; none while a
// permanent permission exists: 138017) and the user replies after
// ReplyAfter with a `messages` webhook (W8). Other messages are taken and
// ignored.
func (s *Sim) serveMessages(g *graphRequest) {
	var m messageRequest
	if err := json.Unmarshal(g.body, &m); err != nil {
		g.fail(badRequest("Invalid JSON body: %v", err), fmt.Sprintf("graph: messages body is not JSON: %v", err))
		return
	}
	if m.MessagingProduct != "whatsapp" {
		g.fail(badRequest("The parameter messaging_product is required and must be \"whatsapp\""), fmt.Sprintf("graph: messages messaging_product %q, want \"whatsapp\"", m.MessagingProduct))
		return
	}
	if m.To == "" && m.Recipient == "" {
		g.fail(badRequest("The parameter to (or recipient) is required"), "graph: message without to or recipient")
		return
	}
	waID := ""
	if m.To != "" {
		d, ok := normalizeWaID(m.To)
		if !ok {
			g.fail(badRequest("Invalid parameter to %q", m.To), fmt.Sprintf("graph: message to %q is not a phone number", m.To))
			return
		}
		waID = d
	}
	cpr := false
	switch m.Type {
	case "interactive":
		if m.Interactive == nil {
			g.fail(badRequest("The parameter interactive is required"), "graph: interactive message without interactive")
			return
		}
		if m.Interactive.Type == "call_permission_request" {
			if m.Interactive.Action == nil || m.Interactive.Action.Name != "call_permission_request" {
				g.fail(badRequest("interactive.action.name must be \"call_permission_request\""), "graph: call_permission_request without action.name call_permission_request")
				return
			}
			cpr = true
		}
	case "template":
		if m.Template == nil || m.Template.Name == "" || m.Template.Language == nil || m.Template.Language.Code == "" {
			g.fail(badRequest("The parameters template.name and template.language.code are required"), "graph: template message without name or language")
			return
		}
		cpr = slices.Contains(s.cfg.CallPermissionTemplates, m.Template.Name)
		for _, c := range m.Template.Components {
			cpr = cpr || strings.EqualFold(c.Type, "call_permission_request")
		}
	}
	wamid := "wamid." + randomID(24)
	input := m.To
	if input == "" {
		input = m.Recipient
	}
	if !cpr {
		writeJSON(g.w, messagesBody{MessagingProduct: "whatsapp", Contacts: []messageContact{{Input: input, WaID: waID, UserID: m.Recipient}}, Messages: []messageID{{ID: wamid}}})
		return
	}

	s.mu.Lock()
	now := s.clock()
	st := s.userForLocked(waID, m.Recipient)
	if st.permissionLocked(now) == PermissionPermanent {
		s.mu.Unlock()
		g.fail(errPermanentExists("the user has already given a permanent call permission"), "")
		return
	}
	inDay, inWeek, dayFree, weekFree := st.requestUsageLocked(now)
	if inDay >= requestsPerDay || inWeek >= requestsPerWeek {
		s.mu.Unlock()
		free := dayFree
		if weekFree.After(free) {
			free = weekFree
		}
		g.fail(errRequestLimit(fmt.Sprintf("%d permission request(s) in 24 h (max %d), %d in 7 days (max %d); the next is allowed at %d",
			inDay, requestsPerDay, inWeek, requestsPerWeek, free.Unix())), "")
		return
	}
	st.requests = append(st.requests, now)
	st.requestsSent++
	st.requestGen++
	gen, u := st.requestGen, st.u
	if u.ReplyToRequest != ReplyNone && !s.closing {
		s.wg.Add(1)
		go s.replyToRequest(st, gen, wamid)
	}
	s.mu.Unlock()
	s.log.Info("call permission request", zap.String("to", u.WaID), zap.String("wamid", wamid), zap.String("reply", u.ReplyToRequest))
	writeJSON(g.w, messagesBody{MessagingProduct: "whatsapp", Contacts: []messageContact{{Input: input, WaID: u.WaID, UserID: u.BSUID}}, Messages: []messageID{{ID: wamid}}})
}

// replyToRequest is the user answering permission request gen after
// ReplyAfter, unless a newer request came first ("A call permission
// request expires when ... the user interacts with a subsequent new call
// permission request").
func (s *Sim) replyToRequest(st *userState, gen int, wamid string) {
	defer s.wg.Done()
	s.mu.Lock()
	after := st.u.ReplyAfter
	s.mu.Unlock()
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
		return
	}
	s.mu.Lock()
	if st.requestGen != gen {
		s.mu.Unlock()
		return
	}
	now := s.clock()
	u := st.u
	reply := callPermissionReply{ResponseSource: "user_action"}
	switch u.ReplyToRequest {
	case ReplyAccept:
		st.permission, st.expires = PermissionTemporary, now.Add(temporaryPermissionTTL)
		reply.Response, reply.IsPermanent, reply.ExpirationTimestamp = "accept", ptr(false), unixString(st.expires)
	case ReplyAcceptPermanent:
		st.permission, st.expires = PermissionPermanent, time.Time{}
		reply.Response, reply.IsPermanent = "accept", ptr(true)
	default: // reject
		st.permission, st.expires = PermissionNone, time.Time{}
		reply.Response = "reject"
	}
	s.mu.Unlock()
	s.postPermissionReply(u, reply, wamid)
}

func ptr[T any](v T) *T { return &v }

// postPermissionReply posts the user's call_permission_reply (W8) on the
// `messages` field; contextID is the request's wamid ("" when the change
// did not answer a request).
func (s *Sim) postPermissionReply(u User, reply callPermissionReply, contextID string) {
	msg := webhookMessage{
		From: u.WaID, FromUserID: u.BSUID,
		ID: "wamid." + randomID(24), Timestamp: unixString(time.Now()), Type: "interactive",
		Interactive: &messageInteractive{Type: "call_permission_reply", CallPermissionReply: &reply},
	}
	if contextID != "" {
		// Meta's samples put the user's number in context.from.
		msg.Context = &messageContext{From: u.WaID, ID: contextID}
	}
	v := changeValue{
		Contacts: []contact{{Profile: profile{Name: u.ProfileName}, WaID: u.WaID, UserID: u.BSUID}},
		Messages: []webhookMessage{msg},
	}
	if err := s.postWebhook(s.ctx, "call_permission_reply", s.cfg.AppSecret, marshal(s.envelope("messages", v)), webhookAttempts); err != nil {
		s.log.Warn("permission reply webhook not delivered", zap.String("to", u.WaID), zap.Error(err))
	}
}

// handleConnect is R6, the business calling a user: the body is checked
// (error 100 with error_data.details), then the permission (138006), the
// daily limit of answered calls (138012) and a call already in progress
// (138003). Meta answers the offer at once (ICE-lite, host candidates,
// a=setup per the user's DTLSRole) and the call runs in the background.
func (s *Sim) handleConnect(g *graphRequest, req *actionRequest) {
	bad := func(format string, args ...any) {
		e := badRequest(format, args...)
		g.fail(e, "graph: connect refused: "+e.details)
	}
	waID := ""
	switch {
	case req.To == "" && req.Recipient == "":
		bad("The parameter to (or recipient) is required for connect")
		return
	case req.To != "":
		d, ok := normalizeWaID(req.To)
		if !ok {
			bad("Invalid parameter to %q: the callee's phone number", req.To)
			return
		}
		waID = d
	}
	switch {
	case req.Session == nil:
		bad("The parameter session is required for connect")
		return
	case req.Session.SDPType != "offer":
		bad("session.sdp_type must be \"offer\" for connect, not %q", req.Session.SDPType)
		return
	case strings.TrimSpace(req.Session.SDP) == "":
		bad("session.sdp is required for connect")
		return
	case len(req.BizOpaqueCallbackData) > 512:
		bad("biz_opaque_callback_data is limited to 512 characters")
		return
	}
	offer := normalizeSDP(req.Session.SDP)
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(offer); err != nil {
		bad("SDP validation error: %v", err)
		return
	}
	violations, fatal := checkOffer(offer)
	if fatal != "" {
		bad("SDP validation error: %s", fatal)
		return
	}

	s.mu.Lock()
	now := s.clock()
	if s.closing {
		s.mu.Unlock()
		writeGraphError(g.w, &graphError{status: http.StatusServiceUnavailable, code: 2, message: "Service temporarily unavailable", details: "simulator closing"})
		return
	}
	st := s.lookupUserLocked(waID, req.Recipient)
	if st != nil {
		st.connects++
	}
	var refusal *graphError
	switch {
	case st == nil || st.permissionLocked(now) == PermissionNone:
		refusal = errNoPermission("no approved call permission from the recipient")
	case st.live != nil || st.pending:
		refusal = errDuplicateCall("a call is already ongoing with the receiver")
	default:
		if n, free := st.callUsageLocked(now, s.cfg.MaxConnectedCallsPerDay); n >= s.cfg.MaxConnectedCallsPerDay {
			refusal = errCallLimit(fmt.Sprintf("%d connected business-initiated calls in 24 h (max %d); the next call is allowed at %d",
				n, s.cfg.MaxConnectedCallsPerDay, free.Unix()))
		}
	}
	if refusal != nil {
		s.mu.Unlock()
		g.fail(refusal, "")
		return
	}
	st.pending = true
	u := st.u
	s.mu.Unlock()

	c, answer, err := s.answerBIC(g.r.Context(), st, u, offer, req.BizOpaqueCallbackData)
	s.mu.Lock()
	st.pending = false
	if err == nil && s.closing {
		err = fmt.Errorf("simulator closing")
	}
	if err != nil {
		s.mu.Unlock()
		if c != nil {
			c.closeMedia()
		}
		bad("SDP validation error: %v", err)
		return
	}
	st.live = c
	st.callsPlaced++
	st.calls = append(st.calls, c)
	close(st.wake)
	st.wake = make(chan struct{})
	s.calls[c.id] = c
	s.wg.Add(1)
	s.mu.Unlock()
	for _, v := range violations {
		c.violation(v)
	}
	c.log.Info("business-initiated call", zap.String("to", u.WaID), zap.String("to_user_id", u.BSUID), zap.Int("answer_bytes", len(answer)))
	writeJSON(g.w, map[string]any{"messaging_product": "whatsapp", "calls": []map[string]string{{"id": c.id}}})
	go c.runBIC()
}

// answerBIC makes the call and Meta's answer to the business's offer.
func (s *Sim) answerBIC(ctx context.Context, st *userState, u User, offer, opaque string) (*Call, string, error) {
	loop, err := s.loopFor(loopKey{tone: u.ToneHz, wav: u.WAVFile, frameMs: 20})
	if err != nil {
		return nil, "", err
	}
	opts := CallOptions{
		From: u.WaID, FromUserID: u.BSUID, ProfileName: u.ProfileName,
		ToneHz: u.ToneHz, WAVFile: u.WAVFile, Duration: u.TalkFor, FrameMs: 20,
		Digits: u.Digits, DigitsAfter: u.DigitsAfter, KeepAudio: u.KeepAudio,
	}
	c := s.newCall(opts, loop, directionBIC)
	c.bic = &bicCall{user: u, st: st}
	c.offerSDP = offer
	c.bizOpaque = opaque
	c.rep.BizOpaqueCallbackData = opaque
	role := webrtc.DTLSRoleClient // a=setup:active
	if u.DTLSRole == DTLSPassive {
		role = webrtc.DTLSRoleServer
	}
	answer, err := c.setupAnswer(ctx, offer, role)
	if err != nil {
		return c, "", err
	}
	c.answerSDP = answer
	return c, answer, nil
}

// checkOffer lists the Meta media rules a business's offer breaks, and
// what makes it unusable (no audio, no Opus).
func checkOffer(sdp string) (violations []string, fatal string) {
	var fps, sha256, audioLines, candidates int
	var setups []string
	opus, lite := false, false
	for _, l := range strings.Split(sdp, "\r\n") {
		low := strings.ToLower(l)
		switch {
		case strings.HasPrefix(l, "a=fingerprint:"):
			fps++
			if strings.HasPrefix(low, "a=fingerprint:sha-256 ") {
				sha256++
			}
		case strings.HasPrefix(l, "a=setup:"):
			setups = append(setups, strings.TrimSpace(strings.TrimPrefix(l, "a=setup:")))
		case strings.HasPrefix(l, "m=audio "):
			audioLines++
		case strings.HasPrefix(l, "a=candidate:"):
			candidates++
		case strings.HasPrefix(low, "a=rtpmap:") && strings.Contains(low, " opus/48000"):
			opus = true
		case l == "a=ice-lite":
			lite = true
		case strings.HasPrefix(l, "a=ptime:") && strings.TrimSpace(strings.TrimPrefix(l, "a=ptime:")) != "20":
			violations = append(violations, fmt.Sprintf("sdp: offer asks %s; Meta's leg runs at ptime 20 ms", l))
		}
	}
	switch {
	case audioLines == 0:
		return violations, "the offer has no audio m-line"
	case !opus:
		return violations, "the offer has no opus/48000/2"
	}
	if fps != 1 || sha256 != 1 {
		violations = append(violations, fmt.Sprintf("sdp: offer has %d a=fingerprint line(s), %d sha-256; Meta wants exactly one a=fingerprint:sha-256", fps, sha256))
	}
	for _, s := range setups {
		if s != "actpass" {
			violations = append(violations, fmt.Sprintf("sdp: offer has a=setup:%s; an offer says actpass (RFC 8842) and Meta picks the role", s))
			break
		}
	}
	if audioLines != 1 {
		violations = append(violations, fmt.Sprintf("sdp: offer has %d audio m-lines, want exactly one", audioLines))
	}
	if candidates == 0 {
		violations = append(violations, "sdp: offer has no a=candidate (Meta does not trickle: it never learns more)")
	}
	if lite {
		violations = append(violations, "sdp: offer claims a=ice-lite; Meta is ICE-lite, so the business must be a full, controlling ICE agent")
	}
	return violations, ""
}

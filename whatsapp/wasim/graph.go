package wasim

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// maxGraphBody bounds a Graph request body; maxMediaBody a media upload
// (Meta's limit for audio, 16 MB).
const (
	maxGraphBody = 1 << 20
	maxMediaBody = 16 << 20
)

// actionRequest is the body of POST /{version}/{phone_number_id}/calls:
// an action on a call (call_id) or a business-initiated call (connect, to
// or recipient).
type actionRequest struct {
	MessagingProduct      string         `json:"messaging_product"`
	CallID                string         `json:"call_id"`
	Action                string         `json:"action"`
	To                    string         `json:"to"`
	Recipient             string         `json:"recipient"`
	Session               *actionSession `json:"session"`
	BizOpaqueCallbackData string         `json:"biz_opaque_callback_data"`
}

type actionSession struct {
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

// graphError is Graph's error object.
type graphError struct {
	status  int
	code    int
	subcode int // error_subcode, written when not 0
	message string
	details string
}

func (e *graphError) Error() string { return e.message }

func badRequest(format string, args ...any) *graphError {
	msg := fmt.Sprintf(format, args...)
	return &graphError{status: http.StatusBadRequest, code: 100, message: "(#100) " + msg, details: msg}
}

// errNoObject is Graph's answer to a request on an id it does not know
// (code 100, subcode 33).
func errNoObject(method, id string) *graphError {
	msg := fmt.Sprintf("Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation", strings.ToLower(method), id)
	return &graphError{status: http.StatusBadRequest, code: 100, subcode: 33, message: msg, details: msg}
}

func writeGraphError(w http.ResponseWriter, e *graphError) {
	typ := "OAuthException"
	obj := map[string]any{
		"message":    e.message,
		"type":       typ,
		"code":       e.code,
		"error_data": map[string]any{"messaging_product": "whatsapp", "details": e.details},
		"fbtrace_id": "A" + randomID(16),
	}
	if e.subcode != 0 {
		obj["error_subcode"] = e.subcode
	}
	body := map[string]any{"error": obj}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", `OAuth "Facebook Platform" "invalid_request"`)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeSuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"messaging_product":"whatsapp","success":true}`+"\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// graphRequest is one Graph request being served: its body, and whom a
// broken rule is blamed on.
type graphRequest struct {
	s    *Sim
	w    http.ResponseWriter
	r    *http.Request
	body []byte
	call *Call            // the call named in the body, if it is one of ours
	rec  *SettingsRequest // a settings or media upload request: what SettingsRequests shows
}

func (g *graphRequest) blame(msg string) {
	if g.call != nil {
		g.call.violation(msg)
	} else {
		g.s.violation(msg)
	}
}

// fail answers e and records violation ("" records none: Meta refuses a
// request that breaks no rule, such as a call without permission).
func (g *graphRequest) fail(e *graphError, violation string) {
	if violation != "" {
		g.blame(violation)
	}
	g.s.log.Debug("graph request refused", zap.String("path", g.r.URL.Path), zap.Int("code", e.code), zap.String("error", e.message))
	writeGraphError(g.w, e)
}

// Graph routes: the endpoint under /{version}/{phone_number_id}/ and the
// methods it takes; "object" is GET /{version}/{media_id} and "attachments"
// the media download URL.
var graphRoutes = map[string][]string{
	"calls":            {http.MethodPost},
	"call_permissions": {http.MethodGet},
	"messages":         {http.MethodPost},
	"settings":         {http.MethodGet, http.MethodPost},
	"media":            {http.MethodPost},
	"object":           {http.MethodGet},
	"attachments":      {http.MethodGet},
}

// serveGraph is the simulated Graph API:
//
//	POST /{version}/{phone_number_id}/calls             call actions; connect (R6)
//	GET  /{version}/{phone_number_id}/call_permissions  permission state (R5)
//	POST /{version}/{phone_number_id}/messages          permission requests (R4)
//	POST /{version}/{phone_number_id}/settings          calling settings (R1)
//	GET  /{version}/{phone_number_id}/settings          calling settings (R2)
//	POST /{version}/{phone_number_id}/media             voicemail announcement upload (R3)
//	GET  /{version}/{media_id}                          media URL (Meta's media API)
//	GET  /whatsapp_business/attachments/?mid=…          media download (bearer token)
func (s *Sim) serveGraph(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	endpoint := ""
	switch {
	case len(parts) == 3 && parts[0] != "" && parts[1] != "":
		endpoint = parts[2]
	case len(parts) == 2 && parts[0] == "whatsapp_business" && parts[1] == "attachments":
		endpoint = "attachments"
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		endpoint = "object"
	}
	var rec *SettingsRequest
	if (endpoint == "settings" || endpoint == "media") && len(parts) == 3 {
		rec = &SettingsRequest{Method: r.Method, Endpoint: endpoint, PhoneNumberID: parts[1], Query: r.URL.RawQuery}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		w = sw
		defer func() {
			rec.Status = sw.status
			s.mu.Lock()
			s.settingsRq = append(s.settingsRq, *rec)
			s.mu.Unlock()
		}()
	}
	limit := int64(maxGraphBody)
	if endpoint == "media" {
		limit = maxMediaBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeGraphError(w, badRequest("could not read the request body"))
		return
	}
	if rec != nil && endpoint == "settings" && r.Method == http.MethodPost {
		rec.Body = body
	}
	// Whom to blame: the call named in the body, if it is one of ours.
	var req actionRequest
	var jsonErr error
	if endpoint != "media" {
		jsonErr = json.Unmarshal(body, &req)
	}
	g := &graphRequest{s: s, w: w, r: r, body: body, call: s.call(req.CallID), rec: rec}

	methods := graphRoutes[endpoint]
	if methods == nil {
		g.fail(badRequest("Unknown path components: %s", r.URL.Path), fmt.Sprintf("graph: request to unknown path %s %s", r.Method, r.URL.Path))
		return
	}
	if !bearerOK(r.Header.Get("Authorization"), s.cfg.AccessToken) {
		g.fail(&graphError{status: http.StatusUnauthorized, code: 190, message: "Invalid OAuth access token - Cannot parse access token", details: "bad or missing bearer token"},
			"graph: missing or wrong bearer access token")
		return
	}
	if !slices.Contains(methods, r.Method) {
		g.fail(badRequest("Unsupported %s request", strings.ToLower(r.Method)), fmt.Sprintf("graph: %s %s (%s is %s)", r.Method, r.URL.Path, endpoint, strings.Join(methods, " or ")))
		return
	}
	switch endpoint {
	case "object":
		s.serveMediaURL(g, parts[1])
		return
	case "attachments":
		s.serveMediaDownload(g)
		return
	case "settings", "media":
		// Any business number the simulator knows (SetNumber).
		if !s.knownNumber(parts[1]) {
			g.fail(errNoObject(r.Method, parts[1]), fmt.Sprintf("graph: phone number id %q in the path is not a business number of the simulator", parts[1]))
			return
		}
	default:
		if parts[1] != s.cfg.PhoneNumberID {
			g.fail(errNoObject(r.Method, parts[1]), fmt.Sprintf("graph: phone number id %q in the path is not the business number %q", parts[1], s.cfg.PhoneNumberID))
			return
		}
	}
	if int64(len(body)) > limit {
		g.fail(badRequest("request body too large"), fmt.Sprintf("graph: request body over %d bytes", limit))
		return
	}
	switch endpoint {
	case "call_permissions":
		s.servePermissions(g)
		return
	case "messages":
		s.serveMessages(g)
		return
	case "settings":
		if r.Method == http.MethodGet {
			s.serveGetSettings(g, parts[1])
		} else {
			s.servePostSettings(g, parts[1])
		}
		return
	case "media":
		s.serveMediaUpload(g, parts[1])
		return
	}
	if jsonErr != nil {
		g.fail(badRequest("Invalid JSON body: %v", jsonErr), fmt.Sprintf("graph: body is not the calls JSON object: %v", jsonErr))
		return
	}
	if req.MessagingProduct != "whatsapp" {
		g.fail(badRequest("The parameter messaging_product is required and must be \"whatsapp\""), fmt.Sprintf("graph: messaging_product %q, want \"whatsapp\"", req.MessagingProduct))
		return
	}
	if req.Action == "connect" {
		if s.outage(req.Action) {
			writeGraphError(w, &graphError{status: http.StatusServiceUnavailable, code: 2, message: "Service temporarily unavailable", details: "simulated outage"})
			return
		}
		s.handleConnect(g, &req)
		return
	}
	if req.CallID == "" {
		g.fail(badRequest("The parameter call_id is required"), "graph: call_id missing")
		return
	}
	switch req.Action {
	case "pre_accept", "accept", "reject", "terminate":
	default:
		g.fail(badRequest("Invalid parameter action %q", req.Action), fmt.Sprintf("graph: action %q is not connect, pre_accept, accept, reject or terminate", req.Action))
		return
	}
	c := g.call
	if c == nil {
		g.fail(badRequest("Invalid call_id %q: no such call", req.CallID), fmt.Sprintf("graph: %s for unknown call id %q", req.Action, req.CallID))
		return
	}
	if s.outage(req.Action) {
		s.log.Debug("graph outage: request failed on purpose", zap.String("call_id", c.id), zap.String("action", req.Action))
		writeGraphError(w, &graphError{status: http.StatusServiceUnavailable, code: 2, message: "Service temporarily unavailable", details: "simulated outage"})
		return
	}
	if e := c.handleAction(&req); e != nil {
		s.log.Debug("graph action refused", zap.String("call_id", c.id), zap.String("action", req.Action), zap.String("error", e.message))
		writeGraphError(w, e)
		return
	}
	writeSuccess(w)
}

func bearerOK(header, token string) bool {
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

// handleAction applies one Graph action to the call, enforcing Meta's
// order: pre_accept → accept, reject only before accept, terminate after
// pre_accept or accept, nothing after the end.
func (c *Call) handleAction(req *actionRequest) *graphError {
	c.sigMu.Lock()
	defer c.sigMu.Unlock()
	c.mu.Lock()
	c.rep.ActionsReceived = append(c.rep.ActionsReceived, req.Action)
	state, end := c.state, c.end
	prevSDP := c.answerSDP
	c.mu.Unlock()

	refuse := func(violation string, format string, args ...any) *graphError {
		c.violation(violation)
		return badRequest(format, args...)
	}
	if state == StateEnded {
		if req.Action == "terminate" && !end.byBusiness {
			// The user (or Meta) ended the call while the business was
			// hanging up too: Meta answers with an error, but the race is
			// not the business's fault.
			return badRequest("Call %s is no longer active", c.id)
		}
		return refuse(fmt.Sprintf("graph: %s after the call ended (%s)", req.Action, end.outcome), "Call %s is no longer active", c.id)
	}

	if c.bic != nil {
		return c.handleBICAction(req, state)
	}
	switch req.Action {
	case "pre_accept", "accept":
		sdp, e := c.sessionSDP(req)
		if e != nil {
			return e
		}
		if req.Action == "pre_accept" {
			switch state {
			case StateAccepted:
				return refuse("graph: pre_accept after accept", "Call %s is already accepted", c.id)
			case StatePreAccepted:
				if sdp == prevSDP {
					return nil // a retried pre_accept: harmless
				}
				return refuse("graph: pre_accept repeated with a different SDP answer", "Call %s is already pre-accepted with another session", c.id)
			}
			if e := c.applyAnswer(sdp); e != nil {
				return e
			}
			c.mu.Lock()
			c.state = StatePreAccepted
			c.answerSDP = sdp
			c.rep.PreAcceptAt = time.Now()
			c.mu.Unlock()
			return nil
		}
		// accept
		if len(req.BizOpaqueCallbackData) > 512 {
			return refuse("graph: biz_opaque_callback_data longer than 512 characters", "biz_opaque_callback_data is limited to 512 characters")
		}
		switch state {
		case StateAccepted:
			return refuse("graph: accept repeated", "Call %s is already accepted", c.id)
		case StatePreAccepted:
			if sdp != prevSDP {
				return refuse("graph: accept SDP differs from the pre_accept SDP", "The session in accept must be the one sent in pre_accept")
			}
		default:
			if e := c.applyAnswer(sdp); e != nil {
				return e
			}
		}
		c.mu.Lock()
		c.state = StateAccepted
		c.answerSDP = sdp
		c.bizOpaque = req.BizOpaqueCallbackData
		c.rep.BizOpaqueCallbackData = req.BizOpaqueCallbackData
		c.rep.AcceptAt = time.Now()
		c.mu.Unlock()
		c.sim.noteConnected(c.opts.From, c.opts.FromUserID)
		if !c.external() && c.mediaGo() {
			go c.send()
		}
		return nil

	case "reject":
		if state == StateAccepted {
			return refuse("graph: reject after accept (use terminate)", "Call %s is already accepted: terminate it instead", c.id)
		}
		c.finish(endSpec{outcome: OutcomeRejected, status: statusFailed, webhook: true, byBusiness: true})
		return nil

	default: // terminate
		if state == StateOffered {
			return refuse("graph: terminate before pre_accept or accept (use reject)", "Call %s is not connected: reject it instead", c.id)
		}
		c.finish(endSpec{outcome: OutcomeTerminatedByBusiness, status: statusCompleted, webhook: true, byBusiness: true})
		return nil
	}
}

// sessionSDP checks the session object of pre_accept/accept and returns the
// SDP with normalised line ends.
func (c *Call) sessionSDP(req *actionRequest) (string, *graphError) {
	switch {
	case req.Session == nil:
		c.violation(fmt.Sprintf("graph: %s without a session object", req.Action))
		return "", badRequest("The parameter session is required for %s", req.Action)
	case req.Session.SDPType != "answer":
		c.violation(fmt.Sprintf("graph: %s session.sdp_type %q, want \"answer\"", req.Action, req.Session.SDPType))
		return "", badRequest("session.sdp_type must be \"answer\"")
	case strings.TrimSpace(req.Session.SDP) == "":
		c.violation(fmt.Sprintf("graph: %s with an empty session.sdp", req.Action))
		return "", badRequest("session.sdp is required")
	}
	return normalizeSDP(req.Session.SDP), nil
}

// applyAnswer checks the business's answer against Meta's media rules and
// sets it as the remote description, which starts ICE and DTLS.
func (c *Call) applyAnswer(sdp string) *graphError {
	for _, v := range checkAnswer(sdp, offeredG711(c.offerSDP)...) {
		c.violation(v)
	}
	if c.external() {
		if c.opts.OnAnswer != nil {
			c.opts.OnAnswer(sdp)
		}
		c.mu.Lock()
		c.remoteSet = true
		c.mu.Unlock()
		return nil
	}
	err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	if err != nil {
		c.violation(fmt.Sprintf("sdp: the answer was refused: %v", err))
		return badRequest("Invalid SDP answer: %v", err)
	}
	codec, _, _ := answerAudio(sdp)
	c.mu.Lock()
	c.remoteSet = true
	c.rep.Codec = "opus"
	if codec != "opus" && codec != "" && slices.Contains(offeredG711(c.offerSDP), codec) {
		c.g711, c.rep.Codec = codec, codec
	}
	c.mu.Unlock()
	return nil
}

// checkAnswer lists the Meta media rules the answer breaks; g711 are the
// G.711 codecs the offer had beside Opus, which the answer may pick
// instead.
func checkAnswer(sdp string, g711 ...string) []string {
	var v []string
	var fps, sha256, audioLines, candidates int
	var setups []string
	opus, lite := false, false
	for _, l := range strings.Split(sdp, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=fingerprint:"):
			fps++
			if strings.HasPrefix(strings.ToLower(l), "a=fingerprint:sha-256 ") {
				sha256++
			}
		case strings.HasPrefix(l, "a=setup:"):
			setups = append(setups, strings.TrimSpace(strings.TrimPrefix(l, "a=setup:")))
		case strings.HasPrefix(l, "m="):
			if strings.HasPrefix(l, "m=audio ") {
				audioLines++
			}
		case strings.HasPrefix(l, "a=candidate:"):
			candidates++
		case strings.HasPrefix(strings.ToLower(l), "a=rtpmap:111 opus/48000"):
			opus = true
		case l == "a=ice-lite":
			lite = true
		case strings.HasPrefix(l, "a=ptime:") && strings.TrimSpace(strings.TrimPrefix(l, "a=ptime:")) != "20":
			v = append(v, fmt.Sprintf("sdp: answer asks %s; Meta's leg runs at ptime 20 ms", l))
		}
	}
	if fps != 1 || sha256 != 1 {
		v = append(v, fmt.Sprintf("sdp: answer has %d a=fingerprint line(s), %d sha-256; Meta wants exactly one a=fingerprint:sha-256", fps, sha256))
	}
	if len(setups) == 0 {
		v = append(v, "sdp: answer has no a=setup; Meta expects a=setup:active (the business is the DTLS client)")
	}
	for _, s := range setups {
		if s != "active" {
			v = append(v, fmt.Sprintf("sdp: answer has a=setup:%s; Meta expects a=setup:active (the business is the DTLS client)", s))
			break
		}
	}
	if audioLines != 1 {
		v = append(v, fmt.Sprintf("sdp: answer has %d audio m-lines, want exactly one", audioLines))
	}
	if name, _, err := answerAudio(sdp); err == nil && name != "opus" {
		if !slices.Contains(g711, name) {
			v = append(v, fmt.Sprintf("sdp: answer takes %s, which the offer did not have", name))
		}
	} else if !opus {
		v = append(v, "sdp: answer does not take opus/48000 on payload type 111")
	}
	if candidates == 0 {
		v = append(v, "sdp: answer has no a=candidate (Meta does not trickle: it never learns more)")
	}
	if lite {
		v = append(v, "sdp: answer claims a=ice-lite; Meta is ICE-lite, so the business must be a full, controlling ICE agent")
	}
	return v
}

// normalizeSDP gives an SDP CRLF line ends and a final CRLF.
func normalizeSDP(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.TrimRight(s, "\n")
	return strings.ReplaceAll(s, "\n", "\r\n") + "\r\n"
}

// outage says whether this request of action falls in Config.GraphOutage.
func (s *Sim) outage(action string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outages == nil {
		s.outages = map[string]int{}
	}
	if s.outages[action] >= s.cfg.GraphOutage[action] {
		return false
	}
	s.outages[action]++
	return true
}

// statusWriter remembers the HTTP status answered.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

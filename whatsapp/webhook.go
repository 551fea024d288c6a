package whatsapp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// WebhookResult classifies what the webhook handler did with a request or
// with one event of it, for metrics.
type WebhookResult string

const (
	// Per event of a signed POST.
	WebhookAccepted  WebhookResult = "accepted"  // queued for OnCall/OnStatus/OnPermissionReply/OnAccountEvent/OnVoicemail
	WebhookDuplicate WebhookResult = "duplicate" // same (call id, event), same reply message id, same account change or voicemail call id, seen within DedupeTTL
	WebhookStale     WebhookResult = "stale"     // older than the newest event of the same call, or settings older than the number's newest
	// Per request.
	WebhookBadSignature WebhookResult = "bad_signature" // 401, nothing dispatched
	WebhookMalformed    WebhookResult = "malformed"     // unreadable, oversized or not JSON (also per event: no call id)
	WebhookIgnored      WebhookResult = "ignored"       // signed and valid but without events for the gateway (messages, …)
	WebhookVerified     WebhookResult = "verified"      // GET handshake answered
	WebhookVerifyFailed WebhookResult = "verify_failed" // GET handshake refused
	// Per request passed on to WebhookConfig.Forward, reported later from
	// the forwarding goroutines.
	WebhookForwarded      WebhookResult = "forwarded"       // the forward URL answered 2xx
	WebhookForwardFailed  WebhookResult = "forward_failed"  // no 2xx after the retries, or a 3xx/4xx
	WebhookForwardDropped WebhookResult = "forward_dropped" // not forwarded: queue full, shutting down, or a bad forward URL
)

// WebhookConfig configures NewWebhookHandler.
type WebhookConfig struct {
	VerifyToken string // GET hub.verify_token; empty refuses every handshake
	AppSecret   string // HMAC key of X-Hub-Signature-256; empty refuses every POST

	// OnCall receives each new call event, on a worker goroutine, never
	// while the HTTP request is being answered. Events of one call are
	// delivered in arrival order, one at a time.
	OnCall func(CallEvent)
	// OnStatus, optional, receives value.statuses[] entries of type "call"
	// (business-initiated calls) the same way.
	OnStatus func(StatusEvent)
	// OnPermissionReply, optional, receives call permission replies (W8)
	// the same way, once per message id within DedupeTTL, those of one user
	// in arrival order. When nil, replies are not the gateway's: they are
	// forwarded like other messages.
	OnPermissionReply func(PermissionReply)
	// OnAccountEvent, optional, receives the account events (W11
	// account_settings_update, W12 account_update) the same way: once per
	// change (per restriction) within DedupeTTL, all in arrival order, a
	// settings change older than the number's newest dropped as stale. When set, the changes about calling are consumed
	// (not forwarded); the others (partner, ban, messaging restrictions)
	// are delivered and forwarded too. When nil, account changes are
	// forwarded like other content.
	OnAccountEvent func(AccountEvent)
	// OnVoicemail, optional, receives voicemails (W9) the same way, once
	// per call id within DedupeTTL, in order with that call's events. When
	// nil, voicemails are forwarded like other messages.
	OnVoicemail func(Voicemail)
	// Forward, optional, passes on what the gateway does not consume (see
	// ForwardConfig): Meta sends an app's webhooks to one callback URL.
	Forward *ForwardConfig
	// OnResult, optional, is called for each request or event result, and
	// for each forwarding result from the forwarding goroutines; it may be
	// called concurrently and must be cheap.
	OnResult func(WebhookResult)
	// Logger; nil means no logging. The secret, the verify token and the
	// signature are never logged.
	Logger *zap.Logger

	MaxBodyBytes int64         // default 1 MiB
	DedupeTTL    time.Duration // default 10 min
	// Timeout bounds one POST from its headers to its answer: reading the
	// body (a sender that trickles it is cut off), checking and parsing it.
	// Default 10 s, well inside the time Meta waits for an answer.
	Timeout time.Duration
}

const (
	defaultMaxBody    = 1 << 20
	defaultDedupeTTL  = 10 * time.Minute
	defaultTimeout    = 10 * time.Second
	webhookWorkers    = 8
	webhookQueueDepth = 256
)

// WebhookHandler is the http.Handler for Meta's webhook endpoint: the GET
// verification handshake and signed POST deliveries.
type WebhookHandler struct {
	cfg       WebhookConfig
	log       *zap.Logger
	secret    []byte
	tokenHash [sha256.Size]byte
	filter    *eventFilter
	fwd       *forwarder // nil without WebhookConfig.Forward

	mu       sync.RWMutex // guards closed against enqueue
	closed   bool
	queues   []chan webhookJob
	workers  sync.WaitGroup
	overflow sync.WaitGroup
}

type webhookJob struct {
	call      *CallEvent
	status    *StatusEvent
	reply     *PermissionReply
	account   *AccountEvent
	voicemail *Voicemail
}

// NewWebhookHandler returns a handler with its dispatch workers running.
// Close stops them.
func NewWebhookHandler(cfg WebhookConfig) *WebhookHandler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = defaultMaxBody
	}
	if cfg.DedupeTTL <= 0 {
		cfg.DedupeTTL = defaultDedupeTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	h := &WebhookHandler{
		cfg:       cfg,
		log:       cfg.Logger,
		secret:    []byte(cfg.AppSecret),
		tokenHash: sha256.Sum256([]byte(cfg.VerifyToken)),
		filter:    newEventFilter(cfg.DedupeTTL, defaultDedupeMax, nil),
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if cfg.AppSecret == "" {
		h.log.Error("webhook app secret is empty: every POST will be refused")
	}
	if cfg.VerifyToken == "" {
		h.log.Warn("webhook verify token is empty: every verification handshake will be refused")
	}
	if cfg.Forward != nil {
		h.fwd = newForwarder(*cfg.Forward, h.log, h.result)
	}
	h.queues = make([]chan webhookJob, webhookWorkers)
	for i := range h.queues {
		q := make(chan webhookJob, webhookQueueDepth)
		h.queues[i] = q
		h.workers.Add(1)
		go h.work(q)
	}
	return h
}

// Close stops accepting POSTs (they get 503, so Meta retries), delivers
// what is already queued and waits for the workers.
func (h *WebhookHandler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.overflow.Wait()
	for _, q := range h.queues {
		close(q)
	}
	h.workers.Wait()
	if h.fwd != nil {
		h.fwd.close()
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		h.serveVerify(w, r)
	case http.MethodPost:
		h.serveEvent(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *WebhookHandler) result(res WebhookResult) {
	if h.cfg.OnResult != nil {
		h.cfg.OnResult(res)
	}
}

// serveVerify answers the subscription handshake:
// ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=….
func (h *WebhookHandler) serveVerify(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	mode, challenge := q.Get("hub.mode"), q.Get("hub.challenge")
	given := sha256.Sum256([]byte(q.Get("hub.verify_token")))
	tokenOK := h.cfg.VerifyToken != "" && subtle.ConstantTimeCompare(given[:], h.tokenHash[:]) == 1
	if mode != "subscribe" || !tokenOK || challenge == "" {
		h.log.Warn("webhook verification refused",
			zap.String("remote", r.RemoteAddr), zap.String("mode", mode),
			zap.Bool("token_ok", tokenOK), zap.Bool("has_challenge", challenge != ""))
		h.result(WebhookVerifyFailed)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	h.log.Info("webhook verification answered", zap.String("remote", r.RemoteAddr))
	h.result(WebhookVerified)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, challenge)
}

func (h *WebhookHandler) serveEvent(w http.ResponseWriter, r *http.Request) {
	h.mu.RLock()
	closed := h.closed
	h.mu.RUnlock()
	if closed {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	log := h.log.With(zap.String("remote", r.RemoteAddr))
	// One bound for the whole request: the body must have arrived, and been
	// checked and parsed, by the deadline.
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	// Not every ResponseWriter can (httptest.ResponseRecorder cannot); the
	// context check after parsing still holds there.
	_ = http.NewResponseController(w).SetReadDeadline(deadline)
	if r.ContentLength > h.cfg.MaxBodyBytes {
		log.Warn("webhook body too large", zap.Int64("content_length", r.ContentLength))
		h.result(WebhookMalformed)
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			log.Warn("webhook body too large", zap.Int64("limit", tooBig.Limit))
			h.result(WebhookMalformed)
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			log.Warn("webhook body not received in time", zap.Duration("timeout", h.cfg.Timeout))
			h.result(WebhookMalformed)
			http.Error(w, "body not received in time", http.StatusRequestTimeout)
			return
		}
		log.Warn("webhook body unreadable", zap.Error(err))
		h.result(WebhookMalformed)
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if why := h.checkSignature(r.Header.Get("X-Hub-Signature-256"), body); why != "" {
		log.Warn("webhook signature refused", zap.String("why", why), zap.Int("body_bytes", len(body)))
		h.result(WebhookBadSignature)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	evs, err := ParseWebhookEvents(body)
	if err != nil {
		// Signed by Meta yet unreadable: retrying will not fix it, but say so.
		log.Error("webhook body is not a readable envelope", zap.Error(err), zap.Int("body_bytes", len(body)))
		h.result(WebhookMalformed)
		http.Error(w, "malformed body", http.StatusBadRequest)
		return
	}
	if err := ctx.Err(); err != nil {
		// Nothing admitted yet, so Meta's retry is not taken for a duplicate.
		log.Warn("webhook request took too long: refused for a retry", zap.Error(err),
			zap.Duration("timeout", h.cfg.Timeout), zap.Int("body_bytes", len(body)))
		h.result(WebhookMalformed)
		http.Error(w, "took too long", http.StatusServiceUnavailable)
		return
	}
	replies, accounts, voicemails := evs.PermissionReplies, evs.AccountEvents, evs.Voicemails
	// Without a consumer, replies, account events and voicemails are
	// someone else's: forwarded, not admitted.
	forward := evs.Other ||
		(len(replies) > 0 && h.cfg.OnPermissionReply == nil) ||
		(len(accounts) > 0 && h.cfg.OnAccountEvent == nil) ||
		(len(voicemails) > 0 && h.cfg.OnVoicemail == nil)
	if h.cfg.OnPermissionReply == nil {
		replies = nil
	}
	if h.cfg.OnAccountEvent == nil {
		accounts = nil
	}
	if h.cfg.OnVoicemail == nil {
		voicemails = nil
	}
	if len(evs.Calls) == 0 && len(evs.Statuses) == 0 && len(replies) == 0 && len(accounts) == 0 && len(voicemails) == 0 {
		log.Debug("webhook without events for the gateway", zap.Int("body_bytes", len(body)), zap.Bool("forward", forward))
		h.result(WebhookIgnored)
		w.WriteHeader(http.StatusOK)
		h.forward(forward, body, r.Header)
		return
	}
	var jobs []webhookJob
	for i := range evs.Calls {
		ev := &evs.Calls[i]
		res := h.admit(ev.CallID, ev.Event, ev.Timestamp, ev.Event == "terminate")
		log.Info("webhook call event", zap.String("call_id", ev.CallID), zap.String("event", ev.Event),
			zap.String("direction", ev.Direction), zap.String("phone_number_id", ev.PhoneNumberID),
			zap.Time("timestamp", ev.Timestamp), zap.String("result", string(res)))
		h.result(res)
		if res == WebhookAccepted {
			jobs = append(jobs, webhookJob{call: ev})
		}
	}
	for i := range evs.Statuses {
		st := &evs.Statuses[i]
		// Statuses are only de-duplicated: their timestamps must not make a
		// business-initiated call's connect (Meta's answer) look stale. Their
		// key has its own prefix, apart from the call's connect and terminate.
		res := WebhookMalformed
		if !blankID(st.CallID) { // an entry without an id names no call: refused
			res = h.admit("status\x00"+st.CallID, st.Status, time.Time{}, true)
		}
		log.Info("webhook call status", zap.String("call_id", st.CallID), zap.String("status", st.Status),
			zap.String("result", string(res)))
		h.result(res)
		if res == WebhookAccepted {
			jobs = append(jobs, webhookJob{status: st})
		}
	}
	for i := range replies {
		pr := &replies[i]
		// Keyed by the reply's message id (wamid), apart from every call key.
		res := WebhookMalformed
		if !blankID(pr.MessageID) {
			res = h.admit("reply\x00"+pr.MessageID, "call_permission_reply", time.Time{}, true)
		}
		log.Info("webhook call permission reply", zap.String("message_id", pr.MessageID),
			zap.String("response", pr.Response), zap.Bool("permanent", pr.Permanent),
			zap.String("source", pr.Source), zap.String("result", string(res)))
		h.result(res)
		if res == WebhookAccepted {
			jobs = append(jobs, webhookJob{reply: pr})
		}
	}
	for i := range accounts {
		ae := &accounts[i]
		res := h.admitAccount(ae)
		log.Info("webhook account event", zap.String("field", ae.Field), zap.String("event", ae.Event),
			zap.String("phone_number_id", ae.PhoneNumberID), zap.String("phone_number", ae.PhoneNumber),
			zap.String("violation_type", ae.ViolationType), zap.String("restriction_type", ae.RestrictionType),
			zap.Time("expiration", ae.Expiration), zap.String("result", string(res)))
		h.result(res)
		if res == WebhookAccepted {
			jobs = append(jobs, webhookJob{account: ae})
		}
	}
	for i := range voicemails {
		vm := &voicemails[i]
		// Keyed by the call id, apart from the call's own events; a
		// voicemail without a media id has nothing to fetch.
		res := WebhookMalformed
		if !blankID(vm.CallID) && !blankID(vm.MediaID) {
			res = h.admit("voicemail\x00"+vm.CallID, "voicemail", time.Time{}, true)
		}
		log.Info("webhook voicemail", zap.String("call_id", vm.CallID), zap.String("media_id", vm.MediaID),
			zap.String("phone_number_id", vm.PhoneNumberID), zap.String("result", string(res)))
		h.result(res)
		if res == WebhookAccepted {
			jobs = append(jobs, webhookJob{voicemail: vm})
		}
	}
	// Answer first (the response is written when this returns), queue
	// without blocking.
	w.WriteHeader(http.StatusOK)
	for _, j := range jobs {
		h.enqueue(j)
	}
	h.forward(forward, body, r.Header)
}

// forward hands a signed, well-formed body to the forwarder, if it has
// content the gateway does not consume and forwarding is configured.
func (h *WebhookHandler) forward(other bool, body []byte, header http.Header) {
	if other && h.fwd != nil {
		h.fwd.enqueue(body, header)
	}
}

func (h *WebhookHandler) admit(callID, event string, ts time.Time, neverStale bool) WebhookResult {
	if blankID(callID) || event == "" {
		return WebhookMalformed
	}
	switch h.filter.check(callID, event, ts, neverStale) {
	case verdictDuplicate:
		return WebhookDuplicate
	case verdictStale:
		return WebhookStale
	}
	return WebhookAccepted
}

// admitAccount de-duplicates an account event by its change (Meta's
// retries repeat it). A settings change (W11) of a number older than the
// newest seen for it is stale: applying it would undo a newer one.
func (h *WebhookHandler) admitAccount(ae *AccountEvent) WebhookResult {
	if ae.key == "" {
		return WebhookMalformed
	}
	if ae.Field == fieldAccountSettingsUpdate && ae.PhoneNumberID != "" {
		return h.admit("settings\x00"+ae.PhoneNumberID, ae.key, ae.Timestamp, false)
	}
	return h.admit("account\x00"+ae.key, "account", time.Time{}, true)
}

// blankID is true for an event's id that names no call: empty or only
// blanks.
func blankID(id string) bool { return strings.TrimSpace(id) == "" }

// checkSignature returns "" when header is "sha256=<hex HMAC-SHA256 of body
// keyed with the app secret>", else why not (never the header itself).
func (h *WebhookHandler) checkSignature(header string, body []byte) string {
	if len(h.secret) == 0 {
		return "no app secret configured"
	}
	if header == "" {
		return "missing X-Hub-Signature-256"
	}
	const prefix = "sha256="
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return "signature is not sha256="
	}
	got, err := hex.DecodeString(strings.TrimSpace(header[len(prefix):]))
	if err != nil || len(got) != sha256.Size {
		return "signature is not 32 bytes of hex"
	}
	mac := hmac.New(sha256.New, h.secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return "signature mismatch"
	}
	return ""
}

// enqueue hands a job to the worker of its call (so one call's events stay
// in order) without blocking the request. A full queue spills into a
// goroutine that waits for room, rather than losing a terminate.
func (h *WebhookHandler) enqueue(j webhookJob) {
	var id zap.Field // for the logs
	var key string   // picks the worker
	switch {
	case j.call != nil:
		id, key = zap.String("call_id", j.call.CallID), j.call.CallID
	case j.status != nil:
		id, key = zap.String("call_id", j.status.CallID), j.status.CallID
	case j.voicemail != nil: // after the call's events, on their worker
		id, key = zap.String("call_id", j.voicemail.CallID), j.voicemail.CallID
	case j.account != nil: // all account events in order: they are rare
		id, key = zap.String("field", j.account.Field), "account"
	default: // one user's replies in order: keyed by the user
		id, key = zap.String("message_id", j.reply.MessageID), "reply\x00"+j.reply.From+"\x00"+j.reply.FromUserID
	}
	hs := fnv.New32a()
	_, _ = io.WriteString(hs, key)
	q := h.queues[hs.Sum32()%uint32(len(h.queues))]

	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		h.log.Warn("webhook closed: event not delivered", id)
		return
	}
	select {
	case q <- j:
	default:
		h.log.Warn("webhook dispatch queue full: delivery delayed", id)
		h.overflow.Add(1)
		go func() {
			defer h.overflow.Done()
			q <- j
		}()
	}
}

func (h *WebhookHandler) work(q <-chan webhookJob) {
	defer h.workers.Done()
	for j := range q {
		h.deliver(j)
	}
}

func (h *WebhookHandler) deliver(j webhookJob) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("webhook event handler panicked", zap.String("panic", fmt.Sprint(p)), zap.Stack("stack"))
		}
	}()
	switch {
	case j.call != nil && h.cfg.OnCall != nil:
		h.cfg.OnCall(*j.call)
	case j.status != nil && h.cfg.OnStatus != nil:
		h.cfg.OnStatus(*j.status)
	case j.reply != nil && h.cfg.OnPermissionReply != nil:
		h.cfg.OnPermissionReply(*j.reply)
	case j.account != nil && h.cfg.OnAccountEvent != nil:
		h.cfg.OnAccountEvent(*j.account)
	case j.voicemail != nil && h.cfg.OnVoicemail != nil:
		h.cfg.OnVoicemail(*j.voicemail)
	}
}

package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// GraphConfig configures NewGraphClient.
type GraphConfig struct {
	BaseURL     string        // default "https://graph.facebook.com"
	Version     string        // default "v23.0"
	AccessToken string        // sent as Bearer; never logged nor put in errors
	Timeout     time.Duration // per attempt, default 10s
	// MaxRetries is how many times a failed attempt is repeated, on network
	// errors (timeouts included) and 5xx only, never on 4xx, except that a
	// connect, a message or a media upload is repeated only when it
	// provably did nothing (see Connect), a media download only while
	// nothing was written, and the BIC, settings and media requests also
	// after Meta throttled them (GraphError.Throttled). 0 means the default, 2 (so up to 3 attempts);
	// negative means no retry.
	MaxRetries int
	Backoff    time.Duration // first wait between attempts, default 200ms, doubling, with jitter
	HTTPClient *http.Client  // optional
	Logger     *zap.Logger   // nil = nop
	// OnRequest, optional, is called once per request when it is over, with
	// the action ("pre_accept", "accept", "reject", "terminate", "connect",
	// "call_permissions", "permission_request", "permission_template",
	// "settings_get", "settings_update", "voicemail_upload", "media_url",
	// "media_download"), a
	// result (GraphResultOK, …) and the total time including retries and
	// rate-limit waits. It is not called for arguments refused before
	// anything is sent.
	OnRequest func(action, result string, d time.Duration)
}

// Results passed to GraphConfig.OnRequest.
const (
	GraphResultOK           = "ok"
	GraphResultGraphError   = "graph_error"   // non-2xx answer (last attempt)
	GraphResultNetworkError = "network_error" // no answer (last attempt), per-attempt timeout included
	GraphResultBadResponse  = "bad_response"  // 2xx without success:true
	GraphResultCanceled     = "canceled"      // the caller's context ended
)

const (
	defaultGraphBaseURL = "https://graph.facebook.com"
	defaultGraphVersion = "v23.0"
	defaultGraphTimeout = 10 * time.Second
	defaultGraphRetries = 2
	defaultGraphBackoff = 200 * time.Millisecond
	maxGraphBackoff     = 10 * time.Second
	maxGraphRespBody    = 1 << 20
	// MaxBizOpaqueLen is the longest biz_opaque_callback_data Meta takes.
	MaxBizOpaqueLen = 512
)

// ErrUnexpectedResponse is wrapped by the error of a request that got a 2xx
// answer without what it expects ({"success":true} for the call actions, a
// call or message id, a permission).
var ErrUnexpectedResponse = errors.New("graph api answered 2xx without the expected result")

// GraphClient sends call actions (pre_accept, accept, reject, terminate),
// business-initiated calls (connect), call permission requests, calling
// settings and media requests to the WhatsApp Cloud API. It is safe for
// concurrent use.
type GraphClient struct {
	base       string // scheme://host[/path], no trailing slash
	version    string
	token      string
	timeout    time.Duration
	maxRetries int
	backoff    time.Duration
	http       *http.Client
	log        *zap.Logger
	onRequest  func(action, result string, d time.Duration)
	// permLimiter keeps R5 within Meta's rate limit, per phone number id.
	permLimiter *windowLimiter
}

// NewGraphClient applies the defaults of GraphConfig.
func NewGraphClient(cfg GraphConfig) *GraphClient {
	c := &GraphClient{
		base:       strings.TrimRight(cfg.BaseURL, "/"),
		version:    strings.Trim(cfg.Version, "/"),
		token:      cfg.AccessToken,
		timeout:    cfg.Timeout,
		maxRetries: cfg.MaxRetries,
		backoff:    cfg.Backoff,
		http:       cfg.HTTPClient,
		log:        cfg.Logger,
		onRequest:  cfg.OnRequest,

		permLimiter: newWindowLimiter(callPermissionsPerWindow, callPermissionsWindow),
	}
	if c.base == "" {
		c.base = defaultGraphBaseURL
	}
	if c.version == "" {
		c.version = defaultGraphVersion
	}
	if c.version[0] >= '0' && c.version[0] <= '9' {
		c.version = "v" + c.version
	}
	if c.timeout <= 0 {
		c.timeout = defaultGraphTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = defaultGraphRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.backoff <= 0 {
		c.backoff = defaultGraphBackoff
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c
}

type callSession struct {
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

// callActionBody is the JSON of POST /{phone-number-id}/calls, fields in
// Meta's documented order.
type callActionBody struct {
	MessagingProduct      string       `json:"messaging_product"`
	CallID                string       `json:"call_id"`
	Action                string       `json:"action"`
	Session               *callSession `json:"session,omitempty"`
	BizOpaqueCallbackData string       `json:"biz_opaque_callback_data,omitempty"`
}

// PreAccept sends pre_accept with the SDP answer: ICE and DTLS come up, no
// media flows yet.
func (c *GraphClient) PreAccept(ctx context.Context, phoneNumberID, callID, sdpAnswer string) error {
	return c.callAction(ctx, phoneNumberID, callActionBody{
		CallID: callID, Action: "pre_accept",
		Session: &callSession{SDPType: "answer", SDP: sdpAnswer},
	})
}

// Accept sends accept with the same SDP answer as PreAccept and, if not
// empty, bizOpaque (at most 512 characters; Meta echoes it in the terminate
// webhook).
func (c *GraphClient) Accept(ctx context.Context, phoneNumberID, callID, sdpAnswer, bizOpaque string) error {
	return c.callAction(ctx, phoneNumberID, callActionBody{
		CallID: callID, Action: "accept",
		Session:               &callSession{SDPType: "answer", SDP: sdpAnswer},
		BizOpaqueCallbackData: bizOpaque,
	})
}

// Reject refuses a call that was not accepted.
func (c *GraphClient) Reject(ctx context.Context, phoneNumberID, callID string) error {
	return c.callAction(ctx, phoneNumberID, callActionBody{CallID: callID, Action: "reject"})
}

// Terminate ends a pre-accepted or accepted call.
func (c *GraphClient) Terminate(ctx context.Context, phoneNumberID, callID string) error {
	return c.callAction(ctx, phoneNumberID, callActionBody{CallID: callID, Action: "terminate"})
}

func (c *GraphClient) callAction(ctx context.Context, phoneNumberID string, body callActionBody) error {
	body.MessagingProduct = "whatsapp"
	wrap := func(err error) error {
		return fmt.Errorf("whatsapp %s of call %s: %w", body.Action, body.CallID, err)
	}
	switch {
	case phoneNumberID == "":
		return wrap(errors.New("no phone number id"))
	case body.CallID == "":
		return wrap(errors.New("no call id"))
	case body.Session != nil && strings.TrimSpace(body.Session.SDP) == "":
		return wrap(errors.New("empty SDP answer"))
	case utf8.RuneCountInString(body.BizOpaqueCallbackData) > MaxBizOpaqueLen:
		return wrap(fmt.Errorf("biz_opaque_callback_data is %d characters, more than %d",
			utf8.RuneCountInString(body.BizOpaqueCallbackData), MaxBizOpaqueLen))
	case c.token == "":
		return wrap(errors.New("no access token configured"))
	}
	payload, err := encodeJSON(body)
	if err != nil {
		return wrap(err)
	}
	// pre_accept, accept, reject and terminate name their call: a repeat
	// cannot act twice, so any failed attempt may be repeated.
	gr := &graphRequest{
		action: body.Action, method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "calls",
		payload: payload, replayable: true, decode: decodeSuccess,
	}
	log := c.log.With(zap.String("action", body.Action), zap.String("call_id", body.CallID),
		zap.String("phone_number_id", phoneNumberID))
	if err := c.do(ctx, gr, log); err != nil {
		return wrap(err)
	}
	return nil
}

// encodeJSON marshals v without HTML escaping (Meta takes "<" and "&" as
// they are) and without the encoder's trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// graphRequest is one Graph API request as do, send and attempt make it.
type graphRequest struct {
	action        string // OnRequest's action and the logs'
	method        string
	phoneNumberID string     // the first path element: a phone number id, or a media id
	edge          string     // "calls", "messages", "call_permissions", "settings", "media"; "" for none
	query         url.Values // nil for none
	payload       []byte     // JSON body (or contentType's); nil for a GET
	// contentType of payload; "" is application/json.
	contentType string
	// rawURL, if set, is requested instead of the Graph API path (a media
	// download URL Meta gave). Errors never quote it: it is signed.
	rawURL string
	// replayable: the request may be repeated after any failed attempt
	// (network error, timeout, 5xx), because a repeat cannot act twice.
	// When false, an attempt is repeated only when it provably did nothing:
	// the request never left whole (refused connection, DNS or TLS
	// failure), or Meta throttled it (see throttleRetry).
	replayable bool
	// throttleRetry: an answer saying Meta throttled the request (HTTP 429,
	// codes 4, 613, 80007, 130429) is repeated after at least
	// throttleMinWait. A throttled request was refused before processing.
	throttleRetry bool
	// limiter, if set, is waited on before every attempt.
	limiter *windowLimiter
	// decode reads a 2xx answer; an error from it wraps
	// ErrUnexpectedResponse and is never retried.
	decode func(body []byte) error
	// stream, if set, reads a 2xx answer instead of decode, from its
	// unread body. On failure, retry says whether another attempt may
	// help (a read failed before anything was passed on); an error
	// wrapping ErrUnexpectedResponse or ErrMediaTooLarge is an unexpected
	// answer, any other a network error.
	stream func(resp *http.Response) (retry bool, err error)
}

// ErrOutcomeUnknown is wrapped by the error of a request that may have been
// carried out although it failed: a connect or a message sent whose answer
// never came (timeout, connection lost after the request went out), came as
// a 5xx, or was unreadable. Such a request is not repeated (a call placed
// twice rings twice); Meta's webhooks tell what happened.
var ErrOutcomeUnknown = errors.New("the request reached the graph api but its outcome is unknown")

// do sends gr, reports it to OnRequest and logs its failure.
func (c *GraphClient) do(ctx context.Context, gr *graphRequest, log *zap.Logger) error {
	endpoint := gr.rawURL
	if endpoint == "" {
		endpoint = c.base + "/" + c.version + "/" + url.PathEscape(gr.phoneNumberID)
		if gr.edge != "" {
			endpoint += "/" + gr.edge
		}
		if len(gr.query) > 0 {
			endpoint += "?" + gr.query.Encode()
		}
	}
	start := time.Now()
	result, attempts, err := c.send(ctx, endpoint, gr, log)
	d := time.Since(start)
	if c.onRequest != nil {
		c.onRequest(gr.action, result, d)
	}
	if err != nil {
		log.Warn("graph call action failed", zap.String("result", result), zap.Int("attempts", attempts),
			zap.Duration("took", d), zap.Error(err))
		return err
	}
	log.Debug("graph call action done", zap.Int("attempts", attempts), zap.Duration("took", d))
	return nil
}

// throttleMinWait is the least wait before repeating a throttled request:
// Meta counts its rate limits over windows of a second or more (R5: "5
// requests in a one-second window").
const throttleMinWait = time.Second

// send makes up to 1+maxRetries attempts. It returns the OnRequest result,
// the number of attempts and the error of the last one.
func (c *GraphClient) send(ctx context.Context, endpoint string, gr *graphRequest, log *zap.Logger) (string, int, error) {
	for attempt := 1; ; attempt++ {
		if gr.limiter != nil {
			if err := gr.limiter.wait(ctx, gr.phoneNumberID); err != nil {
				return GraphResultCanceled, attempt - 1, fmt.Errorf("waiting for the rate limit: %w", err)
			}
		}
		out := c.attempt(ctx, endpoint, gr)
		if out.err == nil {
			return GraphResultOK, attempt, nil
		}
		if ctx.Err() != nil {
			return GraphResultCanceled, attempt, out.err
		}
		if !out.retry || attempt > c.maxRetries {
			return out.result, attempt, out.err
		}
		wait := c.backoffFor(attempt)
		if out.throttled {
			wait = max(wait, throttleMinWait)
		}
		log.Warn("graph call action attempt failed, retrying", zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.Error(out.err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return GraphResultCanceled, attempt, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), out.err)
		case <-t.C:
		}
	}
}

// backoffFor is the wait after failed attempt n (1-based): backoff·2^(n-1),
// capped, with half of it random.
func (c *GraphClient) backoffFor(n int) time.Duration {
	d := c.backoff
	for i := 1; i < n && d < maxGraphBackoff; i++ {
		d *= 2
	}
	d = min(d, maxGraphBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// attemptOutcome is what one attempt gives: the OnRequest result, the
// error, whether another attempt may help and whether Meta throttled it.
type attemptOutcome struct {
	result    string
	err       error
	retry     bool
	throttled bool
}

// writeTrace follows one attempt's request onto the wire (net/http/httptrace).
type writeTrace struct {
	traced atomic.Bool // the transport reports to httptrace (GetConn seen)
	wrote  atomic.Bool // the whole request was written (WroteRequest without error)
}

// unsent reports whether the attempt provably sent no whole request: the
// transport traced it and never finished writing it. HTTP framing
// (Content-Length, or HTTP/2's END_STREAM) keeps a server from acting on a
// request it did not receive whole. A transport that does not trace proves
// nothing.
func (w *writeTrace) unsent() bool { return w.traced.Load() && !w.wrote.Load() }

// attempt makes one request.
func (c *GraphClient) attempt(ctx context.Context, endpoint string, gr *graphRequest) attemptOutcome {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var wt writeTrace
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GetConn: func(string) { wt.traced.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wt.wrote.Store(true)
			}
		},
	})
	var body io.Reader
	if gr.payload != nil {
		body = bytes.NewReader(gr.payload)
	}
	req, err := http.NewRequestWithContext(actx, gr.method, endpoint, body)
	if err != nil {
		return attemptOutcome{result: GraphResultNetworkError, err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if gr.payload != nil {
		ct := gr.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if gr.stream == nil {
		req.Header.Set("Accept", "application/json")
	}
	// No Idempotency-Key header: net/http would then replay a POST on its
	// own after a lost connection (Request.isReplayable).
	resp, err := c.http.Do(req)
	if err != nil && gr.rawURL != "" {
		err = hideURL(err)
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; a connect already sent may still ring.
			if !gr.replayable && !wt.unsent() {
				return attemptOutcome{result: GraphResultCanceled, err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())}
			}
			return attemptOutcome{result: GraphResultCanceled, err: ctx.Err()}
		}
		err = c.scrub(err)
		if gr.replayable || wt.unsent() {
			return attemptOutcome{result: GraphResultNetworkError, err: err, retry: true}
		}
		return attemptOutcome{result: GraphResultNetworkError, err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)}
	}
	defer resp.Body.Close()
	if gr.stream != nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return c.streamOutcome(ctx, gr, resp)
	}
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxGraphRespBody))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
			if !gr.replayable {
				err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			return attemptOutcome{result: GraphResultCanceled, err: err}
		}
		err = fmt.Errorf("reading HTTP %d answer: %w", resp.StatusCode, c.scrub(err))
		if !gr.replayable {
			err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return attemptOutcome{result: GraphResultNetworkError, err: err, retry: gr.replayable}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ge := parseGraphError(resp.StatusCode, respBody, c.token)
		throttled := ge.Throttled()
		out := attemptOutcome{result: GraphResultGraphError, err: ge, throttled: throttled}
		switch {
		case throttled && gr.throttleRetry:
			out.retry = true
		case resp.StatusCode >= 500 && gr.replayable:
			out.retry = true
		case resp.StatusCode >= 500:
			// A 5xx does not prove that nothing was done: a proxy's 502/504
			// may follow a backend that went on, and Meta may fail after
			// acting. Repeating a connect could ring the user twice.
			out.err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, ge)
		}
		return out
	}
	if err := gr.decode(respBody); err != nil {
		// A 2xx carrying Meta's error object is a Graph error.
		if ge := graphErrorIn(resp.StatusCode, respBody, c.token); ge != nil {
			return attemptOutcome{result: GraphResultGraphError, err: ge}
		}
		err = fmt.Errorf("%w: HTTP %d: %w: %s", ErrUnexpectedResponse, resp.StatusCode, err,
			snippet([]byte(redact(string(respBody), c.token))))
		if !gr.replayable {
			err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return attemptOutcome{result: GraphResultBadResponse, err: err}
	}
	return attemptOutcome{result: GraphResultOK}
}

// streamOutcome hands a 2xx answer to gr.stream.
func (c *GraphClient) streamOutcome(ctx context.Context, gr *graphRequest, resp *http.Response) attemptOutcome {
	retry, err := gr.stream(resp)
	if err == nil {
		return attemptOutcome{result: GraphResultOK}
	}
	if ctx.Err() != nil {
		return attemptOutcome{result: GraphResultCanceled, err: ctx.Err()}
	}
	err = c.scrub(err)
	if errors.Is(err, ErrUnexpectedResponse) || errors.Is(err, ErrMediaTooLarge) {
		return attemptOutcome{result: GraphResultBadResponse, err: err}
	}
	return attemptOutcome{result: GraphResultNetworkError, err: err, retry: gr.replayable && retry}
}

// hideURL drops the URL net/http quotes in its errors (url.Error).
func hideURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s media URL: %w", ue.Op, ue.Err)
	}
	return err
}

// graphErrorIn returns Meta's error object if a 2xx body carries one.
func graphErrorIn(status int, body []byte, secret string) *GraphError {
	var w struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &w) == nil && w.Error != nil {
		return parseGraphError(status, body, secret)
	}
	return nil
}

// decodeSuccess reads the call actions' answer, {"success":true}.
func decodeSuccess(body []byte) error {
	var ok struct {
		Success *bool `json:"success"`
	}
	if err := json.Unmarshal(body, &ok); err != nil {
		return errors.New("not JSON")
	}
	if ok.Success == nil || !*ok.Success {
		return errors.New("no success:true")
	}
	return nil
}

// scrubbedError hides the access token should a transport error quote it,
// and still unwraps to the original.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (c *GraphClient) scrub(err error) error {
	if c.token == "" || !strings.Contains(err.Error(), c.token) {
		return err
	}
	return &scrubbedError{msg: redact(err.Error(), c.token), err: err}
}

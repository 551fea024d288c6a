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
	"net/url"
	"strings"
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
	// errors (timeouts included) and 5xx only, never on 4xx. 0 means the
	// default, 2 (so up to 3 attempts); negative means no retry.
	MaxRetries int
	Backoff    time.Duration // first wait between attempts, default 200ms, doubling, with jitter
	HTTPClient *http.Client  // optional
	Logger     *zap.Logger   // nil = nop
	// OnRequest, optional, is called once per action when it is over, with
	// the action ("pre_accept", "accept", "reject", "terminate"), a result
	// (GraphResultOK, …) and the total time including retries. It is not
	// called for arguments refused before anything is sent.
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

// ErrUnexpectedResponse is wrapped by the error of an action that got a 2xx
// answer without {"success":true}.
var ErrUnexpectedResponse = errors.New("graph api answered 2xx without success:true")

// GraphClient sends call actions (pre_accept, accept, reject, terminate) to
// the WhatsApp Cloud API. It is safe for concurrent use.
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
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return wrap(err)
	}
	payload := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	endpoint := c.base + "/" + c.version + "/" + url.PathEscape(phoneNumberID) + "/calls"
	log := c.log.With(zap.String("action", body.Action), zap.String("call_id", body.CallID),
		zap.String("phone_number_id", phoneNumberID))

	start := time.Now()
	result, attempts, err := c.send(ctx, endpoint, payload, log)
	d := time.Since(start)
	if c.onRequest != nil {
		c.onRequest(body.Action, result, d)
	}
	if err != nil {
		fields := []zap.Field{zap.String("result", result), zap.Int("attempts", attempts),
			zap.Duration("took", d), zap.Error(err)}
		log.Warn("graph call action failed", fields...)
		return wrap(err)
	}
	log.Debug("graph call action done", zap.Int("attempts", attempts), zap.Duration("took", d))
	return nil
}

// send makes up to 1+maxRetries attempts. It returns the OnRequest result,
// the number of attempts and the error of the last one.
func (c *GraphClient) send(ctx context.Context, endpoint string, payload []byte, log *zap.Logger) (string, int, error) {
	for attempt := 1; ; attempt++ {
		result, retry, err := c.attempt(ctx, endpoint, payload)
		if err == nil {
			return GraphResultOK, attempt, nil
		}
		if ctx.Err() != nil {
			return GraphResultCanceled, attempt, err
		}
		if !retry || attempt > c.maxRetries {
			return result, attempt, err
		}
		wait := c.backoffFor(attempt)
		log.Warn("graph call action attempt failed, retrying", zap.Int("attempt", attempt),
			zap.Duration("wait", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return GraphResultCanceled, attempt, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), err)
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

// attempt makes one request. retry says whether another attempt may help.
func (c *GraphClient) attempt(ctx context.Context, endpoint string, payload []byte) (result string, retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return GraphResultNetworkError, false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return GraphResultCanceled, false, ctx.Err()
		}
		return GraphResultNetworkError, true, c.scrub(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGraphRespBody))
	if err != nil {
		if ctx.Err() != nil {
			return GraphResultCanceled, false, ctx.Err()
		}
		return GraphResultNetworkError, true, fmt.Errorf("reading HTTP %d answer: %w", resp.StatusCode, c.scrub(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return GraphResultGraphError, resp.StatusCode >= 500, parseGraphError(resp.StatusCode, body, c.token)
	}
	var ok struct {
		Success *bool `json:"success"`
		Error   *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &ok) == nil {
		if ok.Success != nil && *ok.Success {
			return GraphResultOK, false, nil
		}
		if ok.Error != nil {
			return GraphResultGraphError, false, parseGraphError(resp.StatusCode, body, c.token)
		}
	}
	return GraphResultBadResponse, false, fmt.Errorf("%w: HTTP %d %s", ErrUnexpectedResponse, resp.StatusCode,
		snippet([]byte(redact(string(body), c.token))))
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

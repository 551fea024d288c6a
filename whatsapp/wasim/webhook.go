package wasim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Webhook delivery bounds. Meta times out at about 20 s and retries; the
// simulator retries twice on a non-200 answer or a transport error.
const (
	webhookAttemptTimeout = 10 * time.Second
	webhookAttempts       = 3
)

var webhookBackoff = []time.Duration{250 * time.Millisecond, time.Second}

// The webhook JSON, written here from Meta's documentation on purpose rather
// than shared with the gateway's parser.
type envelope struct {
	Object string  `json:"object"`
	Entry  []entry `json:"entry"`
}

type entry struct {
	ID      string   `json:"id"`
	Changes []change `json:"changes"`
}

type change struct {
	Field string      `json:"field"`
	Value changeValue `json:"value"`
}

// changeValue is one change's value: calls[] (connect, terminate),
// statuses[] (BIC call statuses) or messages[] (the messages field).
type changeValue struct {
	MessagingProduct string           `json:"messaging_product"`
	Metadata         metadata         `json:"metadata"`
	Contacts         []contact        `json:"contacts,omitempty"`
	Calls            []webhookCall    `json:"calls,omitempty"`
	Statuses         []webhookStatus  `json:"statuses,omitempty"`
	Messages         []webhookMessage `json:"messages,omitempty"`
}

type metadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

type contact struct {
	Profile profile `json:"profile"`
	WaID    string  `json:"wa_id,omitempty"`
	UserID  string  `json:"user_id,omitempty"`
}

type profile struct {
	Name string `json:"name"`
}

type webhookCall struct {
	ID                    string          `json:"id"`
	From                  string          `json:"from,omitempty"`
	To                    string          `json:"to,omitempty"`
	FromUserID            string          `json:"from_user_id,omitempty"`
	ToUserID              string          `json:"to_user_id,omitempty"`
	Event                 string          `json:"event"`
	Direction             string          `json:"direction"`
	Timestamp             string          `json:"timestamp"`
	Session               *webhookSession `json:"session,omitempty"`
	Status                string          `json:"status,omitempty"`
	StartTime             string          `json:"start_time,omitempty"`
	EndTime               string          `json:"end_time,omitempty"`
	Duration              *int64          `json:"duration,omitempty"`
	BizOpaqueCallbackData string          `json:"biz_opaque_callback_data,omitempty"`
	CTAPayload            string          `json:"cta_payload,omitempty"`
	DeeplinkPayload       string          `json:"deeplink_payload,omitempty"`
	Errors                []webhookError  `json:"errors,omitempty"`
}

type webhookSession struct {
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

type webhookError struct {
	Code      int       `json:"code"`
	Message   string    `json:"message"`
	ErrorData errorData `json:"error_data"`
}

type errorData struct {
	Details string `json:"details"`
}

// webhookStatus is one statuses[] entry of a business-initiated call (W3).
type webhookStatus struct {
	ID                    string `json:"id"`
	Type                  string `json:"type"`
	Status                string `json:"status"`
	Timestamp             string `json:"timestamp"`
	RecipientID           string `json:"recipient_id,omitempty"`
	RecipientUserID       string `json:"recipient_user_id,omitempty"`
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
}

// webhookMessage is one messages[] entry: the user's
// call_permission_reply (W8) or a voicemail (W9, an audio message).
type webhookMessage struct {
	From        string              `json:"from,omitempty"`
	FromUserID  string              `json:"from_user_id,omitempty"`
	ID          string              `json:"id"`
	Timestamp   string              `json:"timestamp"`
	Type        string              `json:"type"`
	Context     *messageContext     `json:"context,omitempty"`
	Interactive *messageInteractive `json:"interactive,omitempty"`
	Audio       *messageMedia       `json:"audio,omitempty"`
}

// messageMedia is the media of an inbound media message: the media id
// (GET /{media_id} gives its URL), its SHA-256 in base64 and MIME type.
type messageMedia struct {
	ID       string `json:"id"`
	SHA256   string `json:"sha256"`
	MimeType string `json:"mime_type"`
}

type messageContext struct {
	From string `json:"from,omitempty"`
	ID   string `json:"id"`
}

type messageInteractive struct {
	Type                string               `json:"type"`
	CallPermissionReply *callPermissionReply `json:"call_permission_reply,omitempty"`
}

type callPermissionReply struct {
	Response            string `json:"response"`
	IsPermanent         *bool  `json:"is_permanent,omitempty"`
	ExpirationTimestamp string `json:"expiration_timestamp,omitempty"`
	ResponseSource      string `json:"response_source"`
}

// Terminate statuses.
const (
	statusCompleted = "COMPLETED"
	statusFailed    = "FAILED"
)

// envelopeFor wraps one calls[] entry the way Meta does; a connect carries
// the user in contacts[].
func (s *Sim) envelopeFor(c *Call, wc webhookCall) envelope {
	v := changeValue{Calls: []webhookCall{wc}}
	if wc.Event == "connect" {
		v.Contacts = []contact{c.contact()}
	}
	return s.envelope("calls", v)
}

// envelope wraps one change value of field the way Meta does.
func (s *Sim) envelope(field string, v changeValue) envelope {
	return s.envelopeAt(field, v, metadata{DisplayPhoneNumber: s.cfg.DisplayPhoneNumber, PhoneNumberID: s.cfg.PhoneNumberID})
}

// envelopeAt wraps one change value of field for the business number md.
func (s *Sim) envelopeAt(field string, v changeValue, md metadata) envelope {
	v.MessagingProduct = "whatsapp"
	v.Metadata = md
	return envelope{
		Object: "whatsapp_business_account",
		Entry:  []entry{{ID: s.cfg.WABAID, Changes: []change{{Field: field, Value: v}}}},
	}
}

// Sign returns the X-Hub-Signature-256 value for body: "sha256=" + hex HMAC-SHA256.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// deliveryError describes a webhook Meta could not deliver.
type deliveryError struct {
	event    string
	status   int
	attempts int
	err      error
}

func (e *deliveryError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s webhook not delivered after %d attempt(s): %v", e.event, e.attempts, e.err)
	}
	return fmt.Sprintf("%s webhook answered HTTP %d after %d attempt(s)", e.event, e.status, e.attempts)
}

// webhookShuffleDelay bounds the random delay of each copy of a webhook
// under Config.WebhookShuffle (0 to this, inclusive).
const webhookShuffleDelay = 50 * time.Millisecond

// webhookCopiesGrace is how long Close lets the webhook copies still being
// posted finish before it cancels them (a variable: tests shorten it).
var webhookCopiesGrace = 2 * time.Second

// postWebhook delivers one webhook: Config.WebhookCopies copies of body
// signed with secret, each retried on a non-200 answer (attempts bounds
// each copy's tries; each try has its own timeout). It is nil when any copy
// was answered 200; when none was, the error is the one copy's
// *deliveryError, or the copies' joined (errors.Join, one per copy).
//
// Without Config.WebhookShuffle the copies are posted one after the other
// and postWebhook returns once all are done. With it they are posted
// concurrently, each after a random delay of 0–50 ms, and postWebhook
// returns as soon as one is answered 200: the others carry on in the
// background (Close gives them a grace period, then cancels them and waits),
// so they may arrive after the next webhook, as Meta's duplicates may.
func (s *Sim) postWebhook(ctx context.Context, event, secret string, body []byte, attempts int) error {
	copies := max(s.cfg.WebhookCopies, 1)
	name := func(i int) string {
		if copies == 1 {
			return event
		}
		return fmt.Sprintf("%s (copy %d of %d)", event, i+1, copies)
	}
	var errs []error
	if !s.cfg.WebhookShuffle {
		for i := range copies {
			if err := s.postCopy(ctx, name(i), secret, body, attempts); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) < copies {
			return nil
		}
		return joinCopies(errs)
	}
	results := make(chan error, copies)
	for i := range copies {
		s.goCopy(func() {
			t := time.NewTimer(rand.N(webhookShuffleDelay + 1))
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				results <- &deliveryError{event: name(i), err: ctx.Err()}
				return
			}
			results <- s.postCopy(ctx, name(i), secret, body, attempts)
		})
	}
	for range copies {
		err := <-results
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return joinCopies(errs)
}

// joinCopies is the error of a webhook none of whose copies was delivered.
func joinCopies(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// webhookFailures splits postWebhook's error into one line per copy.
func webhookFailures(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// goCopy runs f on a goroutine Close waits for; once Close no longer waits
// (the simulator is closed), f runs on the caller's.
func (s *Sim) goCopy(f func()) {
	s.mu.Lock()
	if s.copiesClosed {
		s.mu.Unlock()
		f()
		return
	}
	s.copies.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.copies.Done()
		f()
	}()
}

// postCopy posts one copy of a webhook, retrying on a non-200 answer.
func (s *Sim) postCopy(ctx context.Context, event, secret string, body []byte, attempts int) error {
	de := &deliveryError{event: event}
	for i := 0; i < attempts; i++ {
		if i > 0 {
			d := webhookBackoff[min(i-1, len(webhookBackoff)-1)]
			select {
			case <-time.After(d):
			case <-ctx.Done():
				de.err = ctx.Err()
				return de
			}
		}
		de.attempts = i + 1
		status, err := s.postOnce(ctx, secret, body)
		de.status, de.err = status, err
		if err == nil && status == http.StatusOK {
			return nil
		}
		s.log.Debug("webhook attempt failed", zap.String("event", event), zap.Int("status", status), zap.Error(err))
	}
	return de
}

func (s *Sim) postOnce(ctx context.Context, secret string, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, webhookAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facebookexternalua")
	req.Header.Set("X-Hub-Signature-256", Sign(secret, body))
	resp, err := s.httpc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// verifySubscription performs Meta's webhook verification handshake.
func (s *Sim) verifySubscription(ctx context.Context) error {
	challenge := strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	u, _ := url.Parse(s.cfg.WebhookURL)
	q := u.Query()
	q.Set("hub.mode", "subscribe")
	q.Set("hub.verify_token", s.cfg.VerifyToken)
	q.Set("hub.challenge", challenge)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, webhookAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return fmt.Errorf("wasim: webhook verification: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != challenge {
		return fmt.Errorf("wasim: webhook verification failed: HTTP %d, body does not echo hub.challenge", resp.StatusCode)
	}
	return nil
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled
	}
	return b
}

func unixString(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

package cluster

// The internal event channel: an instance that receives a webhook for a
// call another instance owns POSTs the event to that owner.
//
// HTTP rather than Redis pub/sub: the sender learns at once whether the
// owner took the event (pub/sub is fire-and-forget, and lost while the
// subscriber reconnects), and it is one hop, with no broker in the
// media-critical path.
//
// A request carries
//
//	X-Wagateway-Cluster-Time:      the sender's clock, unix milliseconds
//	X-Wagateway-Cluster-Signature: "v1=" + hex(HMAC-SHA256(secret, time + "\n" + body))
//
// The receiver takes it when the signature matches, its time is within
// 30 s of the receiver's clock and the same (time, signature) was not seen
// within that window. Delivery is at least once: a retry after an answer
// that was lost delivers the event again, as Meta's own retries do.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/internal/ratelog"
)

// PeerPath is the path of the internal event channel on an instance's
// advertised URL.
const PeerPath = "/cluster/v1/events"

const (
	peerTimeHeader = "X-Wagateway-Cluster-Time"
	peerSigHeader  = "X-Wagateway-Cluster-Signature"
	peerSigPrefix  = "v1="

	// peerMaxBody is the largest event body taken.
	peerMaxBody = 64 << 10
	// peerWindow is how far a request's time may be from the receiver's
	// clock, either way; a (time, signature) is remembered that long.
	peerWindow = 30 * time.Second
	// peerReplayCap bounds the (time, signature) pairs remembered. When
	// that many are within the window, requests are refused with 503 (the
	// sender retries) rather than forgetting one (which would let it be
	// replayed). 65536 is about 1000 events a second across the cluster.
	peerReplayCap = 1 << 16
	// peerSweepEvery is how often, at most, expired pairs are dropped
	// while the cache is not full.
	peerSweepEvery = time.Second
	// peerLogEvery: at most one line about refused requests this often.
	peerLogEvery = 10 * time.Second
	// peerDefaultAttemptTimeout bounds one attempt when NewPeerClient is given
	// none.
	peerDefaultAttemptTimeout = 2 * time.Second
)

// peerRetryWaits are the waits between Send's attempts: len+1 attempts in
// all. A variable so that tests can shorten them.
var peerRetryWaits = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, 2700 * time.Millisecond}

// peerSign is the signature header's value for a time and body.
func peerSign(secret []byte, ms int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(strconv.AppendInt(nil, ms, 10))
	m.Write([]byte{'\n'})
	m.Write(body)
	return peerSigPrefix + hex.EncodeToString(m.Sum(nil))
}

// PeerClient sends events to other instances. It is safe for concurrent
// use; one per process is enough (it keeps connections to the peers open).
type PeerClient struct {
	secret         []byte
	attemptTimeout time.Duration
	http           *http.Client
	// lastMs is the last time sent: each request gets a later one, so that
	// two sends of the same body (or two attempts of one send) within one
	// millisecond are not taken for a replay of each other.
	lastMs atomic.Int64
}

// NewPeerClient makes a client signing with secret (which must not be
// empty: Send fails without one). attemptTimeout bounds each attempt,
// connecting included (2 s when ≤ 0). No proxy from the environment is
// used: the peers are the cluster's own instances.
func NewPeerClient(secret []byte, attemptTimeout time.Duration) *PeerClient {
	if attemptTimeout <= 0 {
		attemptTimeout = peerDefaultAttemptTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 16
	return &PeerClient{
		secret:         bytes.Clone(secret),
		attemptTimeout: attemptTimeout,
		http: &http.Client{
			Transport: tr,
			// A redirect is an answer like any other non-2xx one: the
			// signed request is not re-sent elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// stamp is the time for the next request: now in unix ms, or one more
// than the last one sent when that is not earlier.
func (p *PeerClient) stamp() int64 {
	for {
		last, now := p.lastMs.Load(), time.Now().UnixMilli()
		if now <= last {
			now = last + 1
		}
		if p.lastMs.CompareAndSwap(last, now) {
			return now
		}
	}
}

// errPeerPermanent marks an answer not worth retrying.
var errPeerPermanent = errors.New("refused")

// Send POSTs body to baseURL+PeerPath and returns nil once a peer answered
// 2xx. 400, 401, 403 and 413 are not retried; any other answer, a
// transport error or an attempt's timeout is, after 100 ms, 300 ms, 900 ms
// and 2.7 s (five attempts in all), unless ctx ends first: then Send
// returns at once, with an error that wraps ctx's. Each attempt is signed
// afresh with its own time.
func (p *PeerClient) Send(ctx context.Context, baseURL string, body []byte) error {
	url := strings.TrimRight(baseURL, "/") + PeerPath
	if len(p.secret) == 0 {
		return fmt.Errorf("cluster: send event to %s: no secret", url)
	}
	var last error
	attempts := 0
	for {
		attempts++
		last = p.attempt(ctx, url, body)
		if last == nil {
			return nil
		}
		if errors.Is(last, errPeerPermanent) {
			return fmt.Errorf("cluster: send event to %s: %w", url, last)
		}
		if attempts > len(peerRetryWaits) || !peerSleep(ctx, peerRetryWaits[attempts-1]) {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cluster: send event to %s: %w after %d attempt(s), last: %v", url, err, attempts, last)
	}
	return fmt.Errorf("cluster: send event to %s: gave up after %d attempts: %w", url, attempts, last)
}

// peerSleep waits d, or less when ctx ends first: then it is false.
func peerSleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attempt is one POST; nil on 2xx, an error wrapping errPeerPermanent when
// the answer says a retry cannot succeed.
func (p *PeerClient) attempt(ctx context.Context, url string, body []byte) error {
	actx, cancel := context.WithTimeout(ctx, p.attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPeerPermanent, err)
	}
	ms := p.stamp()
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(peerTimeHeader, strconv.FormatInt(ms, 10))
	req.Header.Set(peerSigHeader, peerSign(p.secret, ms, body))
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Why, for the error; the rest drained (bounded) so that the
	// connection is reused.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	why := resp.Status
	if s := strings.TrimSpace(string(msg)); s != "" {
		why += ": " + s
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: %s", errPeerPermanent, why)
	}
	return errors.New(why)
}

// peerHandler is NewPeerHandler's handler.
type peerHandler struct {
	secret []byte
	handle func(ctx context.Context, body []byte) error
	log    *zap.Logger
	refuse *ratelog.Limiter // refusals' log lines
	failed *ratelog.Limiter // handle's errors' log lines

	// Tests change these before the first request.
	now func() time.Time
	max int // peerReplayCap

	mu        sync.Mutex
	seen      map[peerReplayKey]int64 // → expiry, unix ms
	lastSweep time.Time
}

// peerReplayKey is a request's time and signature.
type peerReplayKey struct {
	ms  int64
	sig [sha256.Size]byte
}

// NewPeerHandler serves POST PeerPath: it checks a request as Send signs
// it and passes its body to handle. Answers: 204 when handle returned nil,
// 500 when it failed; refusals: 404 (other path), 405 (other method), 413
// (body over 64 KiB), 400 (time or signature header missing or malformed),
// 401 (signature mismatch, or no secret), 403 (time more than 30 s from
// this clock, either way), 409 (the same time and signature seen within
// the window: a replay) and 503 (too many requests within the window to
// remember them all). Refusals are logged at most one line per 10 s, never
// with the secret or the signature. secret must not be empty: without one
// every request is refused.
func NewPeerHandler(secret []byte, handle func(ctx context.Context, body []byte) error, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return &peerHandler{
		secret: bytes.Clone(secret),
		handle: handle,
		log:    log,
		refuse: ratelog.New(peerLogEvery, nil),
		failed: ratelog.New(peerLogEvery, nil),
		now:    time.Now,
		max:    peerReplayCap,
		seen:   make(map[peerReplayKey]int64),
	}
}

func (h *peerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != PeerPath {
		h.refused(w, r, http.StatusNotFound, "unknown path")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refused(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if r.ContentLength > peerMaxBody {
		h.refused(w, r, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, peerMaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refused(w, r, http.StatusRequestEntityTooLarge, "body too large")
		} else {
			h.refused(w, r, http.StatusBadRequest, "body unreadable")
		}
		return
	}
	ms, err := strconv.ParseInt(r.Header.Get(peerTimeHeader), 10, 64)
	if err != nil || ms <= 0 {
		h.refused(w, r, http.StatusBadRequest, "time header missing or malformed")
		return
	}
	sh := r.Header.Get(peerSigHeader)
	var sig [sha256.Size]byte
	if !strings.HasPrefix(sh, peerSigPrefix) || hex.EncodedLen(len(sig)) != len(sh)-len(peerSigPrefix) {
		h.refused(w, r, http.StatusBadRequest, "signature header missing or malformed")
		return
	}
	if _, err := hex.Decode(sig[:], []byte(sh[len(peerSigPrefix):])); err != nil {
		h.refused(w, r, http.StatusBadRequest, "signature header missing or malformed")
		return
	}
	if len(h.secret) == 0 {
		h.refused(w, r, http.StatusUnauthorized, "no secret configured")
		return
	}
	m := hmac.New(sha256.New, h.secret)
	m.Write(strconv.AppendInt(nil, ms, 10))
	m.Write([]byte{'\n'})
	m.Write(body)
	if !hmac.Equal(sig[:], m.Sum(nil)) {
		h.refused(w, r, http.StatusUnauthorized, "signature mismatch")
		return
	}
	// The signature first: a stale time then means clocks apart, not a
	// wrong secret.
	now := h.now()
	if skew := now.UnixMilli() - ms; skew > peerWindow.Milliseconds() || skew < -peerWindow.Milliseconds() {
		h.refused(w, r, http.StatusForbidden, "time outside the window", zap.Duration("skew", time.Duration(skew)*time.Millisecond))
		return
	}
	switch h.remember(peerReplayKey{ms: ms, sig: sig}, now) {
	case peerRememberReplay:
		h.refused(w, r, http.StatusConflict, "replayed request")
		return
	case peerRememberFull:
		h.refused(w, r, http.StatusServiceUnavailable, "replay cache full")
		return
	}
	if err := h.handle(r.Context(), body); err != nil {
		if ok, suppressed := h.failed.Allow(); ok {
			h.log.Warn("cluster event not handled", zap.String("remote", r.RemoteAddr), zap.Error(err),
				zap.Int("suppressed_since_last", suppressed), zap.Duration("log_every", peerLogEvery))
		}
		http.Error(w, "event not handled", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// refused answers status with why and logs it, rate-limited.
func (h *peerHandler) refused(w http.ResponseWriter, r *http.Request, status int, why string, extra ...zap.Field) {
	if ok, suppressed := h.refuse.Allow(); ok {
		fields := append([]zap.Field{zap.String("reason", why), zap.Int("status", status),
			zap.String("remote", r.RemoteAddr), zap.String("method", r.Method), zap.String("path", r.URL.Path)}, extra...)
		fields = append(fields, zap.Int("suppressed_since_last", suppressed), zap.Duration("log_every", peerLogEvery))
		h.log.Warn("cluster event refused", fields...)
	}
	http.Error(w, why, status)
}

type peerRemember int

const (
	peerRememberNew peerRemember = iota
	peerRememberReplay
	peerRememberFull
)

// remember records k until its time leaves the window; it says whether k
// was already there, or there is no room for it.
func (h *peerHandler) remember(k peerReplayKey, now time.Time) peerRemember {
	h.mu.Lock()
	defer h.mu.Unlock()
	nowMs := now.UnixMilli()
	if exp, ok := h.seen[k]; ok && exp >= nowMs {
		return peerRememberReplay
	}
	if len(h.seen) >= h.max || now.Sub(h.lastSweep) >= peerSweepEvery {
		for key, exp := range h.seen {
			if exp < nowMs {
				delete(h.seen, key)
			}
		}
		h.lastSweep = now
		if len(h.seen) >= h.max {
			return peerRememberFull
		}
	}
	h.seen[k] = k.ms + peerWindow.Milliseconds()
	return peerRememberNew
}

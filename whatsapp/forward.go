package whatsapp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ForwardConfig makes the webhook handler pass on the deliveries it does
// not consume entirely. Meta sends all of an app's webhooks to one callback
// URL, so without this the gateway would swallow the chat messages,
// message statuses and account updates meant for another application.
//
// A delivery is forwarded when its signature holds, its body is a readable
// envelope, and it carries anything the gateway does not consume
// (WebhookEvents.Other, or replies, account events or voicemails without
// their callback: OnPermissionReply, OnAccountEvent, OnVoicemail). It is POSTed
// to URL after Meta got its 200, byte for byte, with Meta's
// X-Hub-Signature-256 (and X-Hub-Signature, Content-Type) unchanged, so the
// receiver checks it with the app secret as if Meta had sent it. A body
// carrying call events and other content is both handled and forwarded.
type ForwardConfig struct {
	URL     string        // http or https; where the other application's webhook listens
	Timeout time.Duration // per attempt, default 10 s
	// MaxQueue bounds the bodies waiting to be forwarded, MaxQueueBytes
	// their total size; beyond either a body is dropped (forward_dropped).
	// Defaults 256 (at most 65536) and 16 MiB.
	MaxQueue      int
	MaxQueueBytes int64
	// MaxRetries is how many times an attempt is repeated after a network
	// error or a 5xx; a 3xx or 4xx answer is final. 0 means 3; negative
	// means none.
	MaxRetries int
	Backoff    time.Duration // first wait between attempts, default 500 ms, doubling, with jitter
	Workers    int           // bodies forwarded at once, default 2
	HTTPClient *http.Client  // optional; the default follows no redirect
	Logger     *zap.Logger   // nil: the handler's
}

const (
	defaultForwardTimeout    = 10 * time.Second
	defaultForwardQueue      = 256
	maxForwardQueue          = 1 << 16
	defaultForwardQueueBytes = 16 << 20
	defaultForwardRetries    = 3
	defaultForwardBackoff    = 500 * time.Millisecond
	maxForwardBackoff        = 10 * time.Second
	defaultForwardWorkers    = 2
	// forwardWarnEvery spaces the warnings of drops and failures: a dead
	// receiver must not flood the log.
	forwardWarnEvery = 30 * time.Second
	// forwardVia names the gateway in the Via header it adds (RFC 9110
	// §7.6.3); a body that already passed maxForwardHops gateways is not
	// forwarded again, so a forward URL pointing back at a gateway cannot
	// loop.
	forwardVia     = "wagateway"
	maxForwardHops = 4
)

// The headers forwarded as Meta sent them. X-Hub-Signature is Meta's older
// SHA-1 signature, still sent beside X-Hub-Signature-256.
var forwardedHeaders = []string{"Content-Type", "X-Hub-Signature-256", "X-Hub-Signature"}

type forwardJob struct {
	body   []byte
	header http.Header
}

type forwarder struct {
	cfg    ForwardConfig
	target string // URL without userinfo and query, for the logs
	bad    error  // the URL is unusable: everything is dropped
	log    *zap.Logger
	client *http.Client
	result func(WebhookResult)

	ctx    context.Context // canceled when close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards queue sends, queued, closed
	queue  chan forwardJob
	queued int64 // bytes queued or being forwarded
	closed bool

	dropWarn, failWarn warnLimiter
}

func newForwarder(cfg ForwardConfig, log *zap.Logger, result func(WebhookResult)) *forwarder {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultForwardTimeout
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = defaultForwardQueue
	}
	cfg.MaxQueue = min(cfg.MaxQueue, maxForwardQueue) // the channel is allocated whole
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = defaultForwardQueueBytes
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = defaultForwardRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = defaultForwardBackoff
	}
	if cfg.Workers <= 0 {
		cfg.Workers = defaultForwardWorkers
	}
	if cfg.Logger != nil {
		log = cfg.Logger
	}
	f := &forwarder{cfg: cfg, log: log, client: cfg.HTTPClient, result: result,
		queue: make(chan forwardJob, cfg.MaxQueue)}
	if f.client == nil {
		f.client = &http.Client{
			// A redirected POST turns into a GET without the body: a
			// redirect is an answer, not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.target, f.bad = checkForwardURL(cfg.URL)
	if f.bad != nil {
		f.log.Error("webhook forwarding misconfigured: what the gateway does not consume will be dropped", zap.Error(f.bad))
		return f
	}
	for range cfg.Workers {
		f.wg.Add(1)
		go f.work()
	}
	return f
}

// checkForwardURL returns the URL as it may be logged (no userinfo, no
// query: either may hold a credential), or why it cannot be used.
func checkForwardURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("forward URL does not parse") // err would quote it
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("forward URL must be an absolute http or https URL, not scheme %q host %q", u.Scheme, u.Host)
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath(), nil
}

// enqueue takes a copy of the headers to forward and queues the body
// without blocking; a full queue drops it.
func (f *forwarder) enqueue(body []byte, in http.Header) {
	if forwardHops(in) >= maxForwardHops {
		f.drop(fmt.Sprintf("already forwarded %d times (Via): a forwarding loop?", maxForwardHops))
		return
	}
	if f.bad != nil {
		f.drop("forward URL misconfigured")
		return
	}
	h := make(http.Header, len(forwardedHeaders)+1)
	for _, k := range forwardedHeaders {
		if v := in.Values(k); len(v) > 0 {
			h[k] = append([]string(nil), v...)
		}
	}
	via := append([]string(nil), in.Values("Via")...)
	h["Via"] = append(via, "1.1 "+forwardVia)

	f.mu.Lock()
	why := ""
	switch {
	case f.closed:
		why = "shutting down"
	case len(f.queue) >= cap(f.queue):
		why = "queue full"
	case f.queued+int64(len(body)) > f.cfg.MaxQueueBytes:
		why = "queue bytes full"
	default:
		select {
		case f.queue <- forwardJob{body: body, header: h}: // never blocks: room checked under mu
			f.queued += int64(len(body))
		default:
			why = "queue full"
		}
	}
	f.mu.Unlock()
	if why != "" {
		f.drop(why)
	}
}

// forwardHops counts the gateways a request already passed (Via).
func forwardHops(h http.Header) int {
	n := 0
	for _, v := range h.Values("Via") {
		for _, hop := range strings.Split(v, ",") {
			fields := strings.Fields(hop)
			if len(fields) >= 2 && fields[1] == forwardVia {
				n++
			}
		}
	}
	return n
}

func (f *forwarder) drop(why string) {
	f.result(WebhookForwardDropped)
	if ok, suppressed := f.dropWarn.allow(time.Now()); ok {
		f.log.Warn("webhook not forwarded", zap.String("why", why), zap.String("forward_url", f.target),
			zap.Int("also_dropped_since_last_warning", suppressed))
	}
}

func (f *forwarder) work() {
	defer f.wg.Done()
	for j := range f.queue {
		if f.ctx.Err() != nil {
			f.result(WebhookForwardDropped) // close gave up waiting
		} else {
			f.deliver(j)
		}
		f.mu.Lock()
		f.queued -= int64(len(j.body))
		f.mu.Unlock()
	}
}

// deliver POSTs one body, repeating after network errors and 5xx.
func (f *forwarder) deliver(j forwardJob) {
	var last string
	for attempt := 1; ; attempt++ {
		status, err := f.attempt(j)
		switch {
		case err == nil && status >= 200 && status <= 299:
			f.result(WebhookForwarded)
			return
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("HTTP %d", status)
		}
		retry := err != nil || status >= 500
		if !retry || attempt > f.cfg.MaxRetries || f.ctx.Err() != nil {
			break
		}
		t := time.NewTimer(f.backoffFor(attempt))
		select {
		case <-f.ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	f.result(WebhookForwardFailed)
	if ok, suppressed := f.failWarn.allow(time.Now()); ok {
		f.log.Warn("webhook forwarding failed", zap.String("forward_url", f.target), zap.String("last_error", last),
			zap.Int("body_bytes", len(j.body)), zap.Int("also_failed_since_last_warning", suppressed))
	}
}

// attempt makes one POST. Its error never quotes the URL (which may hold
// a credential).
func (f *forwarder) attempt(j forwardJob) (int, error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.cfg.URL, bytes.NewReader(j.body))
	if err != nil {
		return 0, errors.New("cannot build the request")
	}
	for k, v := range j.header {
		req.Header[k] = v
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	// Read a little so the connection can be reused; the answer is not ours.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (f *forwarder) backoffFor(n int) time.Duration {
	d := f.cfg.Backoff
	for i := 1; i < n && d < maxForwardBackoff; i++ {
		d *= 2
	}
	d = min(d, maxForwardBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// close stops taking bodies, lets the queued ones go out for up to one
// Timeout, then cancels the rest (counted forward_dropped, or
// forward_failed when cut off mid-attempt) and waits for the workers.
func (f *forwarder) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.queue)
	left := len(f.queue)
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(f.cfg.Timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		f.log.Warn("webhook forwarding: shutting down with bodies not yet forwarded",
			zap.Int("queued_at_close", left), zap.String("forward_url", f.target))
		f.cancel()
		<-done
	}
	f.cancel()
}

// warnLimiter lets a warning through at most once per forwardWarnEvery
// and counts the ones it held back.
type warnLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (w *warnLimiter) allow(now time.Time) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.last.IsZero() && now.Sub(w.last) < forwardWarnEvery {
		w.suppressed++
		return false, 0
	}
	n := w.suppressed
	w.last, w.suppressed = now, 0
	return true, n
}

package whatsapp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fwdReceiver is the other application's webhook on 127.0.0.1: it records
// what it gets and checks Meta's signature with the app secret, as the
// application would.
type fwdReceiver struct {
	srv      *httptest.Server
	attempts atomic.Int32
	mu       sync.Mutex
	got      []recordedRequest
	badSig   int
}

func newFwdReceiver(t *testing.T, reply func(n int, w http.ResponseWriter, r *http.Request)) *fwdReceiver {
	t.Helper()
	f := &fwdReceiver{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(f.attempts.Add(1))
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, recordedRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
		if !hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte(sign(body, testAppSecret))) {
			f.badSig++
		}
		f.mu.Unlock()
		if reply != nil {
			reply(n, w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fwdReceiver) received() ([]recordedRequest, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.got...), f.badSig
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countResults(results []WebhookResult, want WebhookResult) int {
	n := 0
	for _, r := range results {
		if r == want {
			n++
		}
	}
	return n
}

func (r *hookRig) resultsNow() []WebhookResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]WebhookResult(nil), r.results...)
}

func forwardTo(url string, mod func(*ForwardConfig)) func(*WebhookConfig) {
	return func(c *WebhookConfig) {
		fc := &ForwardConfig{URL: url, Timeout: 2 * time.Second, Backoff: time.Millisecond}
		if mod != nil {
			mod(fc)
		}
		c.Forward = fc
	}
}

func TestForwardByteIdenticalAndSigned(t *testing.T) {
	recv := newFwdReceiver(t, nil)
	r := newHookRig(t, forwardTo(recv.srv.URL+"/hook", nil))
	body := readTestdata(t, "webhook-messages.json") // indented, \u00e9 escapes: any re-encoding shows
	sig := sign(body, testAppSecret)
	mac := hmac.New(sha1.New, []byte(testAppSecret))
	mac.Write(body)
	sig1 := "sha1=" + hex.EncodeToString(mac.Sum(nil))
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+"/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("X-Hub-Signature-256", sig)
	req.Header.Set("X-Hub-Signature", sig1)
	req.Header.Set("X-Other", "not forwarded")
	if code, _ := r.do(req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	waitFor(t, "the forward", func() bool { got, _ := recv.received(); return len(got) == 1 })
	got, badSig := recv.received()
	f := got[0]
	if f.Method != http.MethodPost || f.Path != "/hook" {
		t.Errorf("%s %s", f.Method, f.Path)
	}
	if !bytes.Equal(f.Body, body) {
		t.Errorf("body altered:\n got %q\nwant %q", f.Body, body)
	}
	if badSig != 0 {
		t.Error("the receiver's check of X-Hub-Signature-256 with the app secret fails")
	}
	for k, want := range map[string]string{"X-Hub-Signature-256": sig, "X-Hub-Signature": sig1,
		"Content-Type": "application/json; charset=UTF-8", "Via": "1.1 wagateway", "X-Other": ""} {
		if v := f.Header.Get(k); v != want {
			t.Errorf("%s: %q, want %q", k, v, want)
		}
	}
	_, _, results := r.drain()
	if fmt.Sprint(results) != fmt.Sprint([]WebhookResult{WebhookIgnored, WebhookForwarded}) {
		t.Errorf("results %v", results)
	}
}

// A body with a call event and a chat message: the call is handled and the
// body forwarded whole.
func TestForwardMixedBodyHandledAndForwarded(t *testing.T) {
	recv := newFwdReceiver(t, nil)
	r := newHookRig(t, forwardTo(recv.srv.URL, nil))
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[` +
		`{"field":"calls","value":{"metadata":{"phone_number_id":"P"},"calls":[{"id":"wacid.MIX","event":"connect","timestamp":"7","direction":"USER_INITIATED","from":"1"}]}},` +
		`{"field":"messages","value":{"metadata":{"phone_number_id":"P"},"messages":[{"id":"wamid.T","from":"1","type":"text","text":{"body":"hello"}}]}}]}]}`)
	if code := r.postSigned(body); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	waitFor(t, "the forward", func() bool { got, _ := recv.received(); return len(got) == 1 })
	calls, _, results := r.drain()
	if len(calls) != 1 || calls[0].CallID != "wacid.MIX" {
		t.Errorf("calls %v", calls)
	}
	if got, _ := recv.received(); !bytes.Equal(got[0].Body, body) {
		t.Errorf("forwarded %q", got[0].Body)
	}
	if fmt.Sprint(results) != fmt.Sprint([]WebhookResult{WebhookAccepted, WebhookForwarded}) {
		t.Errorf("results %v", results)
	}
}

// What the gateway consumes entirely is not forwarded; replies are when
// nothing consumes them.
func TestForwardOnlyWhatIsNotConsumed(t *testing.T) {
	recv := newFwdReceiver(t, nil)
	r := newHookRig(t, func(c *WebhookConfig) {
		forwardTo(recv.srv.URL, nil)(c)
		c.OnPermissionReply = func(PermissionReply) {}
	})
	for _, b := range [][]byte{
		readTestdata(t, "webhook-connect.json"),
		readTestdata(t, "webhook-bic-terminate.json"),
		bicBody("wacid.F", "RINGING", 1),
		readTestdata(t, "webhook-permission-reply.json"),
	} {
		if code := r.postSigned(b); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	_, _, results := r.drain()
	if got, _ := recv.received(); len(got) != 0 {
		t.Errorf("%d consumed bodies forwarded", len(got))
	}
	if n := countResults(results, WebhookForwarded) + countResults(results, WebhookForwardDropped); n != 0 {
		t.Errorf("results %v", results)
	}

	recv2 := newFwdReceiver(t, nil)
	r2 := newHookRig(t, forwardTo(recv2.srv.URL, nil)) // no OnPermissionReply
	r2.postSigned(readTestdata(t, "webhook-permission-reply.json"))
	waitFor(t, "the reply's forward", func() bool { got, _ := recv2.received(); return len(got) == 1 })
	r2.drain()
}

// Bodies that fail the signature, or are not readable envelopes, are never
// forwarded.
func TestForwardNeverUnsignedOrMalformed(t *testing.T) {
	recv := newFwdReceiver(t, nil)
	r := newHookRig(t, forwardTo(recv.srv.URL, nil))
	body := readTestdata(t, "webhook-messages.json")
	if code, _ := r.post(body, sign(body, "not-the-secret")); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d", code)
	}
	if code, _ := r.post(body, ""); code != http.StatusUnauthorized {
		t.Errorf("unsigned: %d", code)
	}
	tampered := bytes.Replace(body, []byte("hi"), []byte("ho"), 1)
	if code, _ := r.post(tampered, sign(body, testAppSecret)); code != http.StatusUnauthorized {
		t.Errorf("tampered: %d", code)
	}
	if code := r.postSigned([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages"`)); code != http.StatusBadRequest {
		t.Errorf("malformed: %d", code)
	}
	_, _, results := r.drain() // waits for the forwarder too
	if got, _ := recv.received(); len(got) != 0 {
		t.Errorf("%d bodies forwarded", len(got))
	}
	if n := countResults(results, WebhookForwarded) + countResults(results, WebhookForwardDropped) +
		countResults(results, WebhookForwardFailed); n != 0 {
		t.Errorf("results %v", results)
	}
}

// Meta's 200 never waits for the forward.
func TestForwardDoesNotDelayTheAnswer(t *testing.T) {
	release := make(chan struct{})
	recv := newFwdReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	})
	r := newHookRig(t, forwardTo(recv.srv.URL, func(fc *ForwardConfig) { fc.Timeout = 10 * time.Second }))
	start := time.Now()
	if code := r.postSigned(readTestdata(t, "webhook-messages.json")); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v while the receiver hung", d)
	}
	waitFor(t, "the forward to arrive", func() bool { return recv.attempts.Load() == 1 })
	close(release)
	_, _, results := r.drain()
	if countResults(results, WebhookForwarded) != 1 {
		t.Errorf("results %v", results)
	}
}

func TestForwardRetriesOn5xxNotOn4xx(t *testing.T) {
	body := readTestdata(t, "webhook-messages.json")
	t.Run("5xx then 200", func(t *testing.T) {
		recv := newFwdReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			if n < 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})
		r := newHookRig(t, forwardTo(recv.srv.URL, nil))
		r.postSigned(body)
		waitFor(t, "three attempts", func() bool { return recv.attempts.Load() == 3 })
		_, _, results := r.drain()
		if countResults(results, WebhookForwarded) != 1 || countResults(results, WebhookForwardFailed) != 0 {
			t.Errorf("results %v", results)
		}
		got, badSig := recv.received()
		for _, g := range got {
			if !bytes.Equal(g.Body, body) {
				t.Error("a retry's body differs")
			}
		}
		if badSig != 0 {
			t.Error("signature lost on a retry")
		}
	})
	t.Run("5xx until the retries run out", func(t *testing.T) {
		recv := newFwdReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(502) })
		r := newHookRig(t, forwardTo(recv.srv.URL, func(fc *ForwardConfig) { fc.MaxRetries = 2 }))
		r.postSigned(body)
		_, _, results := r.drain()
		if n := recv.attempts.Load(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
		if countResults(results, WebhookForwardFailed) != 1 {
			t.Errorf("results %v", results)
		}
	})
	for _, status := range []int{400, 401, 404, 429, 302} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			recv := newFwdReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				if status == 302 {
					http.Redirect(w, r, "/elsewhere", status)
					return
				}
				w.WriteHeader(status)
			})
			r := newHookRig(t, forwardTo(recv.srv.URL, nil))
			r.postSigned(body)
			_, _, results := r.drain()
			if n := recv.attempts.Load(); n != 1 {
				t.Errorf("%d attempts, want 1 (redirects not followed)", n)
			}
			if countResults(results, WebhookForwardFailed) != 1 {
				t.Errorf("results %v", results)
			}
		})
	}
}

// One worker busy, a queue of two: of five more bodies, two wait and three
// are dropped, with one warning; the queue's bytes are bounded too.
func TestForwardQueueBound(t *testing.T) {
	release := make(chan struct{})
	recv := newFwdReceiver(t, func(n int, _ http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
	})
	r := newHookRig(t, forwardTo(recv.srv.URL, func(fc *ForwardConfig) {
		fc.Workers = 1
		fc.MaxQueue = 2
	}))
	body := readTestdata(t, "webhook-messages.json")
	r.postSigned(body)
	waitFor(t, "the first forward in flight", func() bool { return recv.attempts.Load() == 1 })
	for range 5 {
		if code := r.postSigned(body); code != http.StatusOK {
			t.Fatalf("status %d: a full forward queue must not refuse Meta", code)
		}
	}
	if n := countResults(r.resultsNow(), WebhookForwardDropped); n != 3 {
		t.Errorf("%d dropped, want 3", n)
	}
	close(release)
	_, _, results := r.drain()
	if n := countResults(results, WebhookForwarded); n != 3 {
		t.Errorf("%d forwarded, want 3: %v", n, results)
	}
	if n := r.logs.FilterMessage("webhook not forwarded").Len(); n != 1 {
		t.Errorf("%d drop warnings, want 1 (rate-limited)", n)
	}

	// Bytes: room for one body, in flight or queued.
	release2 := make(chan struct{})
	recv2 := newFwdReceiver(t, func(n int, _ http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			select {
			case <-release2:
			case <-time.After(5 * time.Second):
			}
		}
	})
	r2 := newHookRig(t, forwardTo(recv2.srv.URL, func(fc *ForwardConfig) {
		fc.Workers = 1
		fc.MaxQueueBytes = int64(len(body)) + 10
	}))
	r2.postSigned(body)
	waitFor(t, "the first forward in flight", func() bool { return recv2.attempts.Load() == 1 })
	r2.postSigned(body)
	if n := countResults(r2.resultsNow(), WebhookForwardDropped); n != 1 {
		t.Errorf("bytes bound: %d dropped, want 1", n)
	}
	close(release2)
	r2.drain()
}

// A forward URL that leads back to a gateway cannot loop: after
// maxForwardHops gateways (Via) a body is no longer forwarded.
func TestForwardLoopGuard(t *testing.T) {
	recv := newFwdReceiver(t, nil)
	r := newHookRig(t, forwardTo(recv.srv.URL, nil))
	body := readTestdata(t, "webhook-messages.json")
	post := func(via ...string) {
		req, _ := http.NewRequest(http.MethodPost, r.srv.URL, bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sign(body, testAppSecret))
		for _, v := range via {
			req.Header.Add("Via", v)
		}
		r.do(req)
	}
	post("1.1 wagateway, 1.1 wagateway", "1.0 proxy, 1.1 wagateway") // three: passes
	post("1.1 wagateway, 1.1 wagateway", "1.1 wagateway, 1.1 wagateway")
	_, _, results := r.drain()
	got, _ := recv.received()
	if len(got) != 1 || countResults(results, WebhookForwardDropped) != 1 {
		t.Fatalf("%d forwarded, results %v", len(got), results)
	}
	if v := got[0].Header.Values("Via"); strings.Join(v, ", ") != "1.1 wagateway, 1.1 wagateway, 1.0 proxy, 1.1 wagateway, 1.1 wagateway" {
		t.Errorf("Via %q", v)
	}
}

// Neither the forward URL's credentials nor the app secret nor a signature
// reach the logs; a bad URL drops everything, loudly.
func TestForwardSecretsNotLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	r := newHookRig(t, forwardTo("http://user:hunter2@"+addr+"/hook?token=sekrit", func(fc *ForwardConfig) { fc.MaxRetries = 1 }))
	body := readTestdata(t, "webhook-messages.json")
	sig := sign(body, testAppSecret)
	r.post(body, sig)
	_, _, results := r.drain()
	if countResults(results, WebhookForwardFailed) != 1 {
		t.Errorf("results %v", results)
	}
	if r.logs.FilterMessage("webhook forwarding failed").Len() != 1 {
		t.Error("the failure is not logged")
	}
	for _, e := range r.logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, s := range []string{"hunter2", "sekrit", testAppSecret, strings.TrimPrefix(sig, "sha256=")} {
			if strings.Contains(line, s) {
				t.Errorf("log line leaks %q: %s", s, line)
			}
		}
	}

	bad := newHookRig(t, forwardTo("ftp://"+addr+"/x", nil))
	bad.postSigned(body)
	_, _, results = bad.drain()
	if fmt.Sprint(results) != fmt.Sprint([]WebhookResult{WebhookIgnored, WebhookForwardDropped}) {
		t.Errorf("bad URL: results %v", results)
	}
	if bad.logs.FilterMessageSnippet("misconfigured").Len() == 0 {
		t.Error("a bad forward URL is not logged")
	}
}

// Close waits for queued forwards at most about one Timeout, whatever the
// receiver does; what did not go out is counted.
func TestForwardCloseBounded(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	recv := newFwdReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	r := newHookRig(t, forwardTo(recv.srv.URL, func(fc *ForwardConfig) {
		fc.Timeout = 300 * time.Millisecond
		fc.MaxRetries = 5
		fc.Backoff = 100 * time.Millisecond
		fc.Workers = 1
	}))
	for range 3 {
		r.postSigned(readTestdata(t, "webhook-messages.json"))
	}
	start := time.Now()
	_, _, results := r.drain()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	if n := countResults(results, WebhookForwardFailed) + countResults(results, WebhookForwardDropped); n != 3 {
		t.Errorf("results %v: want the 3 bodies counted failed or dropped", results)
	}
}

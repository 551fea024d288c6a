package whatsapp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	testAppSecret   = "app-secret-3f9c1e77d2"
	testVerifyToken = "verify-token-81ab0c"
)

func sign(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// hookRig is a webhook handler behind a real HTTP server on 127.0.0.1 that
// records everything it dispatches and reports.
type hookRig struct {
	t       *testing.T
	h       *WebhookHandler
	srv     *httptest.Server
	logs    *observer.ObservedLogs
	mu      sync.Mutex
	calls   []CallEvent
	stats   []StatusEvent
	results []WebhookResult
}

func newHookRig(t *testing.T, mod func(*WebhookConfig)) *hookRig {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	r := &hookRig{t: t, logs: logs}
	cfg := WebhookConfig{
		VerifyToken: testVerifyToken,
		AppSecret:   testAppSecret,
		Logger:      zap.New(core),
		OnCall: func(ev CallEvent) {
			r.mu.Lock()
			r.calls = append(r.calls, ev)
			r.mu.Unlock()
		},
		OnStatus: func(st StatusEvent) {
			r.mu.Lock()
			r.stats = append(r.stats, st)
			r.mu.Unlock()
		},
		OnResult: func(res WebhookResult) {
			r.mu.Lock()
			r.results = append(r.results, res)
			r.mu.Unlock()
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	r.h = NewWebhookHandler(cfg)
	r.srv = httptest.NewServer(r.h)
	t.Cleanup(func() {
		r.srv.Close()
		_ = r.h.Close()
	})
	return r
}

// post sends body with the given signature header ("" = no header).
func (r *hookRig) post(body []byte, sig string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.srv.URL+"/webhook", bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	return r.do(req)
}

func (r *hookRig) postSigned(body []byte) int {
	r.t.Helper()
	code, _ := r.post(body, sign(body, testAppSecret))
	return code
}

func (r *hookRig) do(req *http.Request) (int, string) {
	r.t.Helper()
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// drain closes the handler, which waits until every queued event has been
// delivered, and returns what was delivered and reported.
func (r *hookRig) drain() ([]CallEvent, []StatusEvent, []WebhookResult) {
	_ = r.h.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.stats, r.results
}

func TestVerifyHandshake(t *testing.T) {
	r := newHookRig(t, nil)
	get := func(q url.Values) (int, string, string) {
		resp, err := r.srv.Client().Get(r.srv.URL + "/webhook?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
	}
	code, body, ctype := get(url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {testVerifyToken}, "hub.challenge": {"1158201444"}})
	if code != 200 || body != "1158201444" || !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("good handshake: %d %q %q", code, body, ctype)
	}
	for name, q := range map[string]url.Values{
		"wrong token":    {"hub.mode": {"subscribe"}, "hub.verify_token": {testVerifyToken + "x"}, "hub.challenge": {"1"}},
		"token prefix":   {"hub.mode": {"subscribe"}, "hub.verify_token": {testVerifyToken[:5]}, "hub.challenge": {"1"}},
		"no token":       {"hub.mode": {"subscribe"}, "hub.challenge": {"1"}},
		"wrong mode":     {"hub.mode": {"unsubscribe"}, "hub.verify_token": {testVerifyToken}, "hub.challenge": {"1"}},
		"no mode":        {"hub.verify_token": {testVerifyToken}, "hub.challenge": {"1"}},
		"no challenge":   {"hub.mode": {"subscribe"}, "hub.verify_token": {testVerifyToken}},
		"nothing at all": {},
	} {
		if code, body, _ := get(q); code != http.StatusForbidden || strings.Contains(body, testVerifyToken) {
			t.Errorf("%s: %d %q, want 403", name, code, body)
		}
	}
	_, _, results := r.drain()
	want := []WebhookResult{WebhookVerified}
	for range 7 {
		want = append(want, WebhookVerifyFailed)
	}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v", results)
	}
}

func TestVerifyRefusedWithoutConfiguredToken(t *testing.T) {
	r := newHookRig(t, func(c *WebhookConfig) { c.VerifyToken = "" })
	resp, err := r.srv.Client().Get(r.srv.URL + "/?hub.mode=subscribe&hub.verify_token=&hub.challenge=5")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("empty token configured: %d, want 403", resp.StatusCode)
	}
}

func TestSignatureChecked(t *testing.T) {
	body := readTestdata(t, "webhook-connect.json")
	good := sign(body, testAppSecret)
	hexPart := strings.TrimPrefix(good, "sha256=")
	cases := map[string]string{
		"missing":         "",
		"other secret":    sign(body, "not-the-secret"),
		"sha1 prefix":     "sha1=" + hexPart,
		"no prefix":       hexPart,
		"md5sum= prefix":  "md5sum=" + hexPart, // as long as "sha256="
		"truncated":       good[:len(good)-2],
		"not hex":         "sha256=" + strings.Repeat("zz", 32),
		"one bit off":     "sha256=" + flipLastHex(hexPart),
		"signature of {}": sign([]byte("{}"), testAppSecret),
	}
	for name, sig := range cases {
		t.Run(name, func(t *testing.T) {
			r := newHookRig(t, nil)
			if code, _ := r.post(body, sig); code != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", code)
			}
			calls, _, results := r.drain()
			if len(calls) != 0 {
				t.Errorf("%d events dispatched", len(calls))
			}
			if !reflect.DeepEqual(results, []WebhookResult{WebhookBadSignature}) {
				t.Errorf("results %v", results)
			}
		})
	}
	t.Run("tampered body", func(t *testing.T) {
		r := newHookRig(t, nil)
		tampered := bytes.Replace(body, []byte("support_cta_7"), []byte("support_cta_8"), 1)
		if code, _ := r.post(tampered, good); code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", code)
		}
		if calls, _, _ := r.drain(); len(calls) != 0 {
			t.Errorf("%d events dispatched", len(calls))
		}
	})
	t.Run("good, upper-case hex", func(t *testing.T) {
		r := newHookRig(t, nil)
		if code, _ := r.post(body, "sha256="+strings.ToUpper(hexPart)); code != http.StatusOK {
			t.Errorf("status %d, want 200", code)
		}
		if calls, _, _ := r.drain(); len(calls) != 1 {
			t.Errorf("%d events dispatched, want 1", len(calls))
		}
	})
	t.Run("no secret configured", func(t *testing.T) {
		r := newHookRig(t, func(c *WebhookConfig) { c.AppSecret = "" })
		if code, _ := r.post(body, sign(body, "")); code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", code)
		}
	})
}

func flipLastHex(h string) string {
	last := h[len(h)-1]
	if last == '0' {
		last = '1'
	} else {
		last = '0'
	}
	return h[:len(h)-1] + string(last)
}

func TestWebhookDeliversMetaEnvelopeAsynchronously(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan CallEvent, 1)
	r := newHookRig(t, func(c *WebhookConfig) {
		c.OnCall = func(ev CallEvent) {
			entered <- ev
			<-release // a slow consumer must not hold the HTTP answer
		}
	})
	body := readTestdata(t, "webhook-connect.json")
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL, bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", sign(body, testAppSecret))
	client := r.srv.Client()
	client.Timeout = 3 * time.Second // a handler waiting on OnCall fails here
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answer took %v", d)
	}
	var ev CallEvent
	select {
	case ev = <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("OnCall not called")
	}
	close(release)
	want, _ := ParseWebhook(body)
	if !reflect.DeepEqual(ev, want[0]) {
		t.Errorf("delivered %+v\nwant %+v", ev, want[0])
	}
	if ev.SDP != string(readTestdata(t, "meta-offer.sdp")) {
		t.Error("SDP altered on the way")
	}
}

func TestWebhookDropsDuplicates(t *testing.T) {
	r := newHookRig(t, nil)
	body := readTestdata(t, "webhook-connect.json")
	for range 3 {
		if code := r.postSigned(body); code != http.StatusOK {
			t.Fatalf("status %d, want 200 for a duplicate too", code)
		}
	}
	calls, _, results := r.drain()
	if len(calls) != 1 {
		t.Errorf("%d dispatches, want 1", len(calls))
	}
	want := []WebhookResult{WebhookAccepted, WebhookDuplicate, WebhookDuplicate}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

func TestWebhookDropsStaleConnectAfterTerminate(t *testing.T) {
	r := newHookRig(t, nil)
	// Delivery order reversed: terminate (t=…520) first, then the connect
	// (t=…400) of the same call.
	if code := r.postSigned(readTestdata(t, "webhook-terminate.json")); code != http.StatusOK {
		t.Fatal(code)
	}
	if code := r.postSigned(readTestdata(t, "webhook-connect.json")); code != http.StatusOK {
		t.Fatal(code)
	}
	calls, _, results := r.drain()
	if len(calls) != 1 || calls[0].Event != "terminate" {
		t.Errorf("dispatched %v, want only the terminate", eventNames(calls))
	}
	if want := []WebhookResult{WebhookAccepted, WebhookStale}; !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

func callBody(callID, event string, ts int64) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls",
	"value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
	"calls":[{"id":%q,"event":%q,"timestamp":"%d","from":"13175551234","direction":"USER_INITIATED"}]}}]}]}`,
		callID, event, ts)
}

func TestWebhookTerminateNeverStale(t *testing.T) {
	r := newHookRig(t, nil)
	r.postSigned(callBody("wacid.T1", "connect", 2000))
	r.postSigned(callBody("wacid.T1", "terminate", 1000)) // older clock, still delivered
	calls, _, results := r.drain()
	if got := eventNames(calls); !reflect.DeepEqual(got, []string{"connect", "terminate"}) {
		t.Errorf("dispatched %v", got)
	}
	if want := []WebhookResult{WebhookAccepted, WebhookAccepted}; !reflect.DeepEqual(results, want) {
		t.Errorf("results %v", results)
	}
}

func TestWebhookKeepsOrderOfOneCall(t *testing.T) {
	r := newHookRig(t, nil)
	for i := range 20 {
		id := fmt.Sprintf("wacid.O%d", i)
		r.postSigned(callBody(id, "connect", 100))
		r.postSigned(callBody(id, "terminate", 101))
	}
	calls, _, _ := r.drain()
	if len(calls) != 40 {
		t.Fatalf("%d dispatches, want 40", len(calls))
	}
	pos := map[string]int{}
	for i, c := range calls {
		pos[c.CallID+"/"+c.Event] = i
	}
	for i := range 20 {
		id := fmt.Sprintf("wacid.O%d", i)
		if pos[id+"/connect"] > pos[id+"/terminate"] {
			t.Errorf("%s: terminate delivered before connect", id)
		}
	}
}

func eventNames(evs []CallEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Event)
	}
	return out
}

func TestWebhookStatusesAndNonCallBodies(t *testing.T) {
	r := newHookRig(t, nil)
	if code := r.postSigned(readTestdata(t, "webhook-messages.json")); code != http.StatusOK {
		t.Errorf("messages webhook: %d, want 200", code)
	}
	if code := r.postSigned(readTestdata(t, "webhook-bic-status.json")); code != http.StatusOK {
		t.Errorf("status webhook: %d", code)
	}
	r.postSigned(readTestdata(t, "webhook-bic-status.json")) // repeated delivery
	calls, stats, results := r.drain()
	if len(calls) != 0 {
		t.Errorf("%d calls", len(calls))
	}
	var got []string
	for _, s := range stats {
		got = append(got, s.CallID+"/"+s.Status)
	}
	if want := []string{"wacid.BIC0001/RINGING", "wacid.BIC0001/ACCEPTED"}; !reflect.DeepEqual(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	want := []WebhookResult{WebhookIgnored, WebhookAccepted, WebhookAccepted, WebhookDuplicate, WebhookDuplicate}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

func TestWebhookMalformedAndLimits(t *testing.T) {
	r := newHookRig(t, func(c *WebhookConfig) { c.MaxBodyBytes = 4096 })
	bad := []byte(`{"object":"whatsapp_business_account","entry":[`)
	if code := r.postSigned(bad); code != http.StatusBadRequest {
		t.Errorf("signed garbage: %d, want 400", code)
	}
	big := append(callBody("wacid.BIG", "connect", 1), bytes.Repeat([]byte(" "), 5000)...)
	if code := r.postSigned(big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d, want 413", code)
	}
	// Oversized without Content-Length (chunked): stopped while reading.
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL, io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("X-Hub-Signature-256", sign(big, testAppSecret))
	if code, _ := r.do(req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked: %d, want 413", code)
	}
	if code := r.postSigned(callBody("", "connect", 1)); code != http.StatusOK {
		t.Errorf("call without id: %d", code)
	}
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		req, _ := http.NewRequest(m, r.srv.URL, nil)
		if code, _ := r.do(req); code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, code)
		}
	}
	calls, _, results := r.drain()
	if len(calls) != 0 {
		t.Errorf("%d dispatched", len(calls))
	}
	want := []WebhookResult{WebhookMalformed, WebhookMalformed, WebhookMalformed, WebhookMalformed}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

func TestWebhookSurvivesPanickingConsumer(t *testing.T) {
	var mu sync.Mutex
	var got []string
	r := newHookRig(t, func(c *WebhookConfig) {
		c.OnCall = func(ev CallEvent) {
			if strings.HasPrefix(ev.CallID, "wacid.BOOM") {
				panic("consumer bug")
			}
			mu.Lock()
			got = append(got, ev.CallID)
			mu.Unlock()
		}
	})
	// 16 calls over 8 workers: every worker meets panics; all but BOOM must
	// still arrive.
	for i := range 16 {
		r.postSigned(callBody(fmt.Sprintf("wacid.BOOM%d", i), "connect", 1))
		r.postSigned(callBody(fmt.Sprintf("wacid.OK%d", i), "connect", 1))
	}
	r.drain()
	if len(got) != 16 {
		t.Errorf("%d delivered after panics, want 16", len(got))
	}
}

func TestWebhookAfterClose(t *testing.T) {
	r := newHookRig(t, nil)
	_ = r.h.Close()
	if code := r.postSigned(callBody("wacid.LATE", "connect", 1)); code != http.StatusServiceUnavailable {
		t.Errorf("after Close: %d, want 503", code)
	}
}

func TestWebhookNeverLogsSecrets(t *testing.T) {
	r := newHookRig(t, nil)
	body := readTestdata(t, "webhook-connect.json")
	sig := sign(body, testAppSecret)
	r.post(body, sig)
	r.post(body, sign(body, "wrong"))
	r.post([]byte("{"), sign([]byte("{"), testAppSecret))
	resp, err := r.srv.Client().Get(r.srv.URL + "/?hub.mode=subscribe&hub.verify_token=" + testVerifyToken + "&hub.challenge=9")
	if err == nil {
		resp.Body.Close()
	}
	resp, err = r.srv.Client().Get(r.srv.URL + "/?hub.mode=subscribe&hub.verify_token=" + testVerifyToken + "0&hub.challenge=9")
	if err == nil {
		resp.Body.Close()
	}
	r.drain()
	if r.logs.Len() == 0 {
		t.Fatal("nothing logged: the check below would prove nothing")
	}
	secrets := []string{testAppSecret, testVerifyToken, strings.TrimPrefix(sig, "sha256="),
		strings.TrimPrefix(sign(body, "wrong"), "sha256=")}
	for _, e := range r.logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line leaks %q: %s", s, line)
			}
		}
	}
}

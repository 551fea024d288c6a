package whatsapp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Regression tests for the parser edges found by fuzzing (issue 13, item 8).

// A signed statuses[] entry of type "call" without an id, and a calls[]
// entry without one, name no call: refused (malformed), never dispatched.
func TestWebhookEventWithoutIDRefused(t *testing.T) {
	r := newHookRig(t, nil)
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{
	  "metadata":{"phone_number_id":"P"},
	  "calls":[{"event":"connect","timestamp":"5"},{"id":"  ","event":"terminate"}],
	  "statuses":[{"type":"call","status":"RINGING","timestamp":"5"},{"id":"","type":"call","status":"ACCEPTED"}]}}]}]}`)
	if code := r.postSigned(body); code != http.StatusOK {
		t.Errorf("signed body: %d, want 200", code)
	}
	calls, stats, results := r.drain()
	if len(calls) != 0 || len(stats) != 0 {
		t.Fatalf("dispatched %d calls and %d statuses without an id", len(calls), len(stats))
	}
	want := []WebhookResult{WebhookMalformed, WebhookMalformed, WebhookMalformed, WebhookMalformed}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

// A terminate's duration of 9227000000 s overflowed time.Duration to a
// negative value; absurd, non-finite and negative durations read as unknown
// (0), sane ones as they are.
func TestDurationBounded(t *testing.T) {
	for dur, want := range map[string]time.Duration{
		`9227000000`:      0,
		`"9227000000"`:    0,
		`1e300`:           0,
		`"+Inf"`:          0,
		`"NaN"`:           0,
		`-7`:              0,
		`86401`:           0,
		`"110"`:           110 * time.Second,
		`86400`:           24 * time.Hour,
		`2.5`:             2500 * time.Millisecond,
		`null`:            0,
		`"not a number"`:  0,
		`"  "`:            0,
		`"9223372036.86"`: 0,
	} {
		body := `{"entry":[{"changes":[{"value":{"calls":[{"id":"wacid.D","event":"terminate","duration":` + dur + `}]}}]}]}`
		evs, err := ParseWebhook([]byte(body))
		if err != nil {
			t.Errorf("duration %s: %v", dur, err)
			continue
		}
		if len(evs) != 1 || evs[0].Duration != want {
			t.Errorf("duration %s: got %v, want %v", dur, evs[0].Duration, want)
		}
	}
}

// mergeErrors was quadratic: 40k distinct errors (and as many repeats) now
// merge in well under a second, in order, without repeats.
func TestMergeErrorsLinear(t *testing.T) {
	const n = 40000
	a := make([]CallError, n)
	for i := range a {
		a[i] = CallError{Code: i, Message: "m", Details: "d"}
	}
	start := time.Now()
	out := mergeErrors(a, a)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("merging %d errors took %v", 2*n, d)
	}
	if len(out) != n || out[0].Code != 0 || out[n-1].Code != n-1 {
		t.Errorf("merged %d errors, want %d in order", len(out), n)
	}
	if got := mergeErrors(nil, nil); got != nil {
		t.Errorf("no errors merged to %v", got)
	}
}

// The body that took 46 s of CPU: a signed ~575 KiB body with 40k errors.
// Answered at once now, and each event keeps at most maxWireErrors of a
// list.
func TestWebhookManyErrorsFast(t *testing.T) {
	r := newHookRig(t, nil)
	var b strings.Builder
	b.WriteString(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":"wacid.E","event":"terminate","errors":[`)
	for i := range 20000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"code":%d}`, i)
	}
	b.WriteString(`]}],"errors":[`)
	for i := range 20000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"code":%d}`, 20000+i)
	}
	b.WriteString(`]}}]}]}`)
	body := []byte(b.String())
	start := time.Now()
	if code := r.postSigned(body); code != http.StatusOK {
		t.Fatalf("signed body: %d", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a %d KiB body with 40k errors took %v", len(body)>>10, d)
	}
	calls, _, _ := r.drain()
	if len(calls) != 1 || len(calls[0].Errors) != 2*maxWireErrors {
		t.Fatalf("got %d calls, errors %d", len(calls), len(calls[0].Errors))
	}
}

// More call events than MaxWebhookEvents in one body: refused whole (no
// half dispatch), and the N calls × N value errors product is never built.
func TestWebhookTooManyEventsRefused(t *testing.T) {
	r := newHookRig(t, nil)
	var b strings.Builder
	b.WriteString(`{"entry":[{"changes":[{"value":{"calls":[`)
	for i := range MaxWebhookEvents + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"wacid.%d","event":"connect"}`, i)
	}
	b.WriteString(`]}}]}]}`)
	if code := r.postSigned([]byte(b.String())); code != http.StatusBadRequest {
		t.Errorf("%d calls in one body: %d, want 400", MaxWebhookEvents+1, code)
	}
	calls, _, results := r.drain()
	if len(calls) != 0 || len(results) != 1 || results[0] != WebhookMalformed {
		t.Errorf("dispatched %d, results %v", len(calls), results)
	}
}

// A sender that announces a body and trickles it is cut off at the
// handler's Timeout (408), and nothing is dispatched.
func TestWebhookSlowBodyTimedOut(t *testing.T) {
	r := newHookRig(t, func(c *WebhookConfig) { c.Timeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := callBody("wacid.SLOW", "connect", 1)
	fmt.Fprintf(conn, "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n%s",
		sign(body, testAppSecret), len(body), body[:10])
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("trickled body: %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v, bound 300ms", d)
	}
	calls, _, results := r.drain()
	if len(calls) != 0 || len(results) != 1 || results[0] != WebhookMalformed {
		t.Errorf("dispatched %d, results %v", len(calls), results)
	}
}

// A request whose processing outlives the Timeout (here 1 ns, on a
// ResponseWriter without read deadlines) is refused with 503 before any
// event is admitted, so Meta's retry is delivered, not taken for a
// duplicate.
func TestWebhookProcessingDeadline(t *testing.T) {
	var got []string
	h := NewWebhookHandler(WebhookConfig{AppSecret: testAppSecret, Timeout: time.Nanosecond,
		OnCall: func(ev CallEvent) { got = append(got, ev.CallID) }})
	body := callBody("wacid.LATE", "connect", 1)
	post := func() int {
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sign(body, testAppSecret))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	if code := post(); code != http.StatusServiceUnavailable {
		t.Errorf("past its deadline: %d, want 503", code)
	}
	h.cfg.Timeout = time.Minute
	if code := post(); code != http.StatusOK {
		t.Errorf("the retry: %d, want 200", code)
	}
	_ = h.Close()
	if len(got) != 1 || got[0] != "wacid.LATE" {
		t.Errorf("delivered %v, want the retry once", got)
	}
}

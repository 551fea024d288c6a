package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

var peerTestSecret = []byte("peer-secret-0123456789")

// peerFastRetries shortens Send's waits for the test (the tests changing
// them do not run in parallel).
func peerFastRetries(t *testing.T, waits ...time.Duration) {
	t.Helper()
	old := peerRetryWaits
	if len(waits) == 0 {
		waits = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond}
	}
	peerRetryWaits = waits
	t.Cleanup(func() { peerRetryWaits = old })
}

// peerRecorder is a handle func that keeps what it was given.
type peerRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
	err    error
}

func (rc *peerRecorder) handle(_ context.Context, body []byte) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.bodies = append(rc.bodies, bytes.Clone(body))
	return rc.err
}

func (rc *peerRecorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bodies)
}

// peerTestServer serves a handler with secret on 127.0.0.1; the logs are
// observed.
func peerTestServer(t *testing.T, secret []byte, rc *peerRecorder) (*httptest.Server, *peerHandler, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	h := NewPeerHandler(secret, rc.handle, zap.New(core)).(*peerHandler)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server not on 127.0.0.1: %s", srv.URL)
	}
	return srv, h, logs
}

// peerPost sends a request as a peer would, with the given time and
// signature headers ("" leaves one out).
func peerPost(t *testing.T, method, url, ms, sig string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ms != "" {
		req.Header.Set(peerTimeHeader, ms)
	}
	if sig != "" {
		req.Header.Set(peerSigHeader, sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func peerMs(tm time.Time) string { return strconv.FormatInt(tm.UnixMilli(), 10) }

func TestPeerSendDelivers(t *testing.T) {
	rc := &peerRecorder{}
	srv, _, logs := peerTestServer(t, peerTestSecret, rc)
	c := NewPeerClient(peerTestSecret, time.Second)
	body := []byte(`{"call_id":"wacid.1","event":"terminate"}`)
	if err := c.Send(context.Background(), srv.URL+"/", body); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// The same body again at once is a new event, not a replay.
	if err := c.Send(context.Background(), srv.URL, body); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if rc.count() != 2 || !bytes.Equal(rc.bodies[0], body) || !bytes.Equal(rc.bodies[1], body) {
		t.Fatalf("handled %q, want the body twice", rc.bodies)
	}
	if logs.Len() != 0 {
		t.Errorf("logged on success: %v", logs.All())
	}
}

func TestPeerHandlerSignedByHand(t *testing.T) {
	rc := &peerRecorder{}
	srv, _, _ := peerTestServer(t, peerTestSecret, rc)
	body := []byte("event")
	ms := time.Now().UnixMilli()
	if code := peerPost(t, http.MethodPost, srv.URL+PeerPath, strconv.FormatInt(ms, 10), peerSign(peerTestSecret, ms, body), body); code != http.StatusNoContent {
		t.Fatalf("status %d, want 204", code)
	}
	if rc.count() != 1 {
		t.Fatalf("handled %d, want 1", rc.count())
	}
}

func TestPeerHandlerRefuses(t *testing.T) {
	rc := &peerRecorder{}
	srv, _, logs := peerTestServer(t, peerTestSecret, rc)
	url := srv.URL + PeerPath
	body := []byte(`{"call_id":"wacid.2"}`)
	now := time.Now()
	ms := now.UnixMilli()
	good := peerSign(peerTestSecret, ms, body)
	sig := func(tm time.Time) string { return peerSign(peerTestSecret, tm.UnixMilli(), body) }

	cases := []struct {
		name           string
		method, url    string
		ms, sig        string
		body           []byte
		want           int
		wantNoRefusals bool
	}{
		{"wrong secret", http.MethodPost, url, peerMs(now), peerSign([]byte("other secret"), ms, body), body, http.StatusUnauthorized, false},
		{"tampered body", http.MethodPost, url, peerMs(now), good, []byte(`{"call_id":"wacid.3"}`), http.StatusUnauthorized, false},
		{"tampered time", http.MethodPost, url, strconv.FormatInt(ms+1, 10), good, body, http.StatusUnauthorized, false},
		{"stale time", http.MethodPost, url, peerMs(now.Add(-31 * time.Second)), sig(now.Add(-31 * time.Second)), body, http.StatusForbidden, false},
		{"future time", http.MethodPost, url, peerMs(now.Add(31 * time.Second)), sig(now.Add(31 * time.Second)), body, http.StatusForbidden, false},
		{"no signature", http.MethodPost, url, peerMs(now), "", body, http.StatusBadRequest, false},
		{"no time", http.MethodPost, url, "", good, body, http.StatusBadRequest, false},
		{"time not a number", http.MethodPost, url, "soon", good, body, http.StatusBadRequest, false},
		{"signature not hex", http.MethodPost, url, peerMs(now), "v1=" + strings.Repeat("zz", 32), body, http.StatusBadRequest, false},
		{"signature other scheme", http.MethodPost, url, peerMs(now), "v2=" + good[3:], body, http.StatusBadRequest, false},
		{"signature short", http.MethodPost, url, peerMs(now), good[:len(good)-2], body, http.StatusBadRequest, false},
		{"oversized body", http.MethodPost, url, peerMs(now), peerSign(peerTestSecret, ms, make([]byte, peerMaxBody+1)), make([]byte, peerMaxBody+1), http.StatusRequestEntityTooLarge, false},
		{"wrong method", http.MethodPut, url, peerMs(now), good, body, http.StatusMethodNotAllowed, false},
		{"GET", http.MethodGet, url, peerMs(now), good, nil, http.StatusMethodNotAllowed, false},
		{"wrong path", http.MethodPost, srv.URL + "/cluster/v1/event", peerMs(now), good, body, http.StatusNotFound, false},
		{"root", http.MethodPost, srv.URL + "/", peerMs(now), good, body, http.StatusNotFound, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if code := peerPost(t, tc.method, tc.url, tc.ms, tc.sig, tc.body); code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
		})
	}
	if rc.count() != 0 {
		t.Fatalf("handle called %d times on refused requests", rc.count())
	}
	// A body of exactly the limit is taken.
	max := bytes.Repeat([]byte("x"), peerMaxBody)
	if code := peerPost(t, http.MethodPost, url, peerMs(now), peerSign(peerTestSecret, ms, max), max); code != http.StatusNoContent {
		t.Errorf("body of %d bytes: status %d, want 204", peerMaxBody, code)
	}
	// Rate-limited: one line for all those refusals; never the secret or a
	// signature.
	if logs.Len() != 1 {
		t.Errorf("%d log lines for %d refusals, want 1", logs.Len(), len(cases))
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, string(peerTestSecret)) || strings.Contains(line, good[3:]) {
			t.Errorf("log line shows the secret or a signature: %s", line)
		}
	}
}

func TestPeerHandlerWindowEdge(t *testing.T) {
	rc := &peerRecorder{}
	srv, h, _ := peerTestServer(t, peerTestSecret, rc)
	now := time.UnixMilli(1_800_000_000_000)
	h.now = func() time.Time { return now }
	body := []byte("e")
	for _, d := range []time.Duration{-30 * time.Second, 30 * time.Second} {
		tm := now.Add(d)
		if code := peerPost(t, http.MethodPost, srv.URL+PeerPath, peerMs(tm), peerSign(peerTestSecret, tm.UnixMilli(), body), body); code != http.StatusNoContent {
			t.Errorf("time %v from now: status %d, want 204", d, code)
		}
	}
}

func TestPeerHandlerReplay(t *testing.T) {
	rc := &peerRecorder{}
	srv, h, _ := peerTestServer(t, peerTestSecret, rc)
	var mu sync.Mutex
	now := time.UnixMilli(1_800_000_000_000)
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	body := []byte("event")
	ms := h.now().UnixMilli()
	sig := peerSign(peerTestSecret, ms, body)
	url := srv.URL + PeerPath
	if code := peerPost(t, http.MethodPost, url, strconv.FormatInt(ms, 10), sig, body); code != http.StatusNoContent {
		t.Fatalf("first: status %d, want 204", code)
	}
	advance(10 * time.Second)
	if code := peerPost(t, http.MethodPost, url, strconv.FormatInt(ms, 10), sig, body); code != http.StatusConflict {
		t.Errorf("replay: status %d, want 409", code)
	}
	advance(20 * time.Second) // exactly at the window's edge: still remembered
	if code := peerPost(t, http.MethodPost, url, strconv.FormatInt(ms, 10), sig, body); code != http.StatusConflict {
		t.Errorf("replay at the edge: status %d, want 409", code)
	}
	advance(time.Millisecond) // past it: stale
	if code := peerPost(t, http.MethodPost, url, strconv.FormatInt(ms, 10), sig, body); code != http.StatusForbidden {
		t.Errorf("replay after the window: status %d, want 403", code)
	}
	if rc.count() != 1 {
		t.Errorf("handled %d, want 1", rc.count())
	}
}

func TestPeerHandlerReplayCacheBounded(t *testing.T) {
	rc := &peerRecorder{}
	srv, h, _ := peerTestServer(t, peerTestSecret, rc)
	var mu sync.Mutex
	now := time.UnixMilli(1_800_000_000_000)
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h.max = 4
	url := srv.URL + PeerPath
	send := func(i int) int {
		body := []byte(fmt.Sprintf("event %d", i))
		ms := h.now().UnixMilli()
		return peerPost(t, http.MethodPost, url, strconv.FormatInt(ms, 10), peerSign(peerTestSecret, ms, body), body)
	}
	for i := 0; i < 4; i++ {
		if code := send(i); code != http.StatusNoContent {
			t.Fatalf("event %d: status %d, want 204", i, code)
		}
		advance(time.Second)
	}
	if code := send(4); code != http.StatusServiceUnavailable {
		t.Fatalf("over the cap: status %d, want 503", code)
	}
	if n := len(h.seen); n != 4 {
		t.Errorf("%d remembered, want 4", n)
	}
	// Once the first ones leave the window there is room again, and they
	// are forgotten.
	advance(peerWindow - 2*time.Second)
	if code := send(5); code != http.StatusNoContent {
		t.Fatalf("after the first expired: status %d, want 204", code)
	}
	advance(peerWindow + time.Second)
	if code := send(6); code != http.StatusNoContent {
		t.Fatalf("after all expired: status %d, want 204", code)
	}
	h.mu.Lock()
	n := len(h.seen)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("%d remembered after all expired, want 1", n)
	}
	if rc.count() != 6 {
		t.Errorf("handled %d, want 6", rc.count())
	}
}

func TestPeerHandleError(t *testing.T) {
	rc := &peerRecorder{err: errors.New("no such call")}
	srv, _, logs := peerTestServer(t, peerTestSecret, rc)
	peerFastRetries(t)
	err := NewPeerClient(peerTestSecret, time.Second).Send(context.Background(), srv.URL, []byte("e"))
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("Send: %v, want an error with 500", err)
	}
	// 500 is retried; each attempt is signed afresh, so none is taken for
	// a replay.
	if n := rc.count(); n != 5 {
		t.Errorf("handled %d times, want 5", n)
	}
	if logs.FilterMessage("cluster event not handled").Len() != 1 {
		t.Errorf("handle errors logged: %v", logs.All())
	}
}

// peerStatusServer answers each attempt with the next status of codes (the
// last one repeated) and counts the attempts.
func peerStatusServer(t *testing.T, codes ...int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if r.URL.Path != PeerPath || r.Header.Get(peerTimeHeader) == "" || !strings.HasPrefix(r.Header.Get(peerSigHeader), "v1=") {
			t.Errorf("request %s %s without the headers", r.Method, r.URL.Path)
		}
		w.WriteHeader(codes[min(i, len(codes)-1)])
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestPeerSendRetries(t *testing.T) {
	peerFastRetries(t)
	srv, n := peerStatusServer(t, 503, 503, 502, 204)
	if err := NewPeerClient(peerTestSecret, time.Second).Send(context.Background(), srv.URL, []byte("e")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n.Load() != 4 {
		t.Errorf("%d attempts, want 4", n.Load())
	}
}

func TestPeerSendNotRetried(t *testing.T) {
	peerFastRetries(t)
	for _, code := range []int{400, 401, 403, 413} {
		srv, n := peerStatusServer(t, code)
		err := NewPeerClient(peerTestSecret, time.Second).Send(context.Background(), srv.URL, []byte("e"))
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(code)) {
			t.Errorf("%d: Send: %v, want an error naming it", code, err)
		}
		if n.Load() != 1 {
			t.Errorf("%d: %d attempts, want 1", code, n.Load())
		}
	}
}

func TestPeerSendGivesUp(t *testing.T) {
	peerFastRetries(t)
	for _, code := range []int{503, 500, 409, 404} {
		srv, n := peerStatusServer(t, code)
		err := NewPeerClient(peerTestSecret, time.Second).Send(context.Background(), srv.URL, []byte("e"))
		if err == nil || !strings.Contains(err.Error(), "5 attempts") {
			t.Errorf("%d: Send: %v, want it to give up after 5 attempts", code, err)
		}
		if n.Load() != 5 {
			t.Errorf("%d: %d attempts, want 5", code, n.Load())
		}
	}
}

func TestPeerSendWaits(t *testing.T) {
	// The real schedule's shape, scaled down: the waits are honoured.
	peerFastRetries(t, 10*time.Millisecond, 30*time.Millisecond, 90*time.Millisecond, 270*time.Millisecond)
	srv, _ := peerStatusServer(t, 503)
	start := time.Now()
	_ = NewPeerClient(peerTestSecret, time.Second).Send(context.Background(), srv.URL, []byte("e"))
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v, want about 400 ms", d)
	}
	if len(peerRetryWaits) != 4 {
		t.Fatal("the schedule is 4 waits")
	}
}

func TestPeerSendDefaultSchedule(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, 2700 * time.Millisecond}
	if fmt.Sprint(peerRetryWaits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", peerRetryWaits, want)
	}
}

func TestPeerSendTransportErrorRetried(t *testing.T) {
	peerFastRetries(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connection refused from now on
	start := time.Now()
	err := NewPeerClient(peerTestSecret, time.Second).Send(context.Background(), url, []byte("e"))
	if err == nil || !strings.Contains(err.Error(), "5 attempts") {
		t.Errorf("Send: %v, want it to give up after 5 attempts", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestPeerSendAttemptTimeout(t *testing.T) {
	peerFastRetries(t)
	var n atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so that the server sees the client go
		if n.Add(1) < 3 {
			select { // hang until the client gives the attempt up
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	defer close(release)
	if err := NewPeerClient(peerTestSecret, 100*time.Millisecond).Send(context.Background(), srv.URL, []byte("e")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n.Load() != 3 {
		t.Errorf("%d attempts, want 3", n.Load())
	}
}

func TestPeerSendCancelDuringWait(t *testing.T) {
	peerFastRetries(t, time.Minute, time.Minute, time.Minute, time.Minute)
	srv, n := peerStatusServer(t, 503)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for n.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	err := NewPeerClient(peerTestSecret, time.Second).Send(ctx, srv.URL, []byte("e"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned %v after the start, want at once after the cancel", d)
	}
	if n.Load() != 1 {
		t.Errorf("%d attempts, want 1", n.Load())
	}
}

func TestPeerSendCancelDuringAttempt(t *testing.T) {
	peerFastRetries(t)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // so that the server sees the client go
		n.Add(1)
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := NewPeerClient(peerTestSecret, 10*time.Second).Send(ctx, srv.URL, []byte("e"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %v", d)
	}
	if n.Load() != 1 {
		t.Errorf("%d attempts, want 1", n.Load())
	}
	// A ctx already ended: at most the one attempt, which fails at once.
	if err := NewPeerClient(peerTestSecret, time.Second).Send(ctx, srv.URL, []byte("e")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send with an ended ctx: %v", err)
	}
}

func TestPeerSendNoSecret(t *testing.T) {
	srv, n := peerStatusServer(t, 204)
	if err := NewPeerClient(nil, time.Second).Send(context.Background(), srv.URL, []byte("e")); err == nil {
		t.Error("Send without a secret succeeded")
	}
	if n.Load() != 0 {
		t.Errorf("%d attempts without a secret", n.Load())
	}
	rc := &peerRecorder{}
	hsrv, _, _ := peerTestServer(t, nil, rc)
	ms := time.Now().UnixMilli()
	if code := peerPost(t, http.MethodPost, hsrv.URL+PeerPath, strconv.FormatInt(ms, 10), peerSign(nil, ms, []byte("e")), []byte("e")); code != http.StatusUnauthorized {
		t.Errorf("handler without a secret: status %d, want 401", code)
	}
	if rc.count() != 0 {
		t.Error("handler without a secret handled an event")
	}
}

func TestPeerSendConcurrent(t *testing.T) {
	rc := &peerRecorder{}
	srv, _, logs := peerTestServer(t, peerTestSecret, rc)
	c := NewPeerClient(peerTestSecret, 2*time.Second)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.Send(context.Background(), srv.URL, []byte("same body")) // same body, same instant
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if rc.count() != n {
		t.Errorf("handled %d, want %d (none taken for a replay)", rc.count(), n)
	}
	if logs.Len() != 0 {
		t.Errorf("logged: %v", logs.All())
	}
}

func TestPeerHandlerOversizedChunked(t *testing.T) {
	rc := &peerRecorder{}
	srv, _, _ := peerTestServer(t, peerTestSecret, rc)
	body := make([]byte, peerMaxBody+1)
	ms := time.Now().UnixMilli()
	// No Content-Length: the limit is found while reading.
	req, err := http.NewRequest(http.MethodPost, srv.URL+PeerPath, struct{ io.Reader }{bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(peerTimeHeader, strconv.FormatInt(ms, 10))
	req.Header.Set(peerSigHeader, peerSign(peerTestSecret, ms, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("content length %d, status %d, want chunked and 413", req.ContentLength, resp.StatusCode)
	}
	if rc.count() != 0 {
		t.Error("handled an oversized body")
	}
}

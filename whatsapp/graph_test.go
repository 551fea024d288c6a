package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testToken = "EAAGtestTOKEN0123456789abcdefSECRET"

// graphRig is a fake Graph API on 127.0.0.1. reply decides each answer from
// the 1-based attempt number.
type graphRig struct {
	srv      *httptest.Server
	attempts atomic.Int32
	mu       sync.Mutex
	reqs     []recordedRequest
}

type recordedRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	Query        string // raw
	At           time.Time
}

func newGraphRig(t *testing.T, reply func(n int, w http.ResponseWriter, r *http.Request)) *graphRig {
	t.Helper()
	g := &graphRig{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(g.attempts.Add(1))
		body, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		g.reqs = append(g.reqs, recordedRequest{r.Method, r.URL.Path, r.Header.Clone(), body, r.URL.RawQuery, time.Now()})
		g.mu.Unlock()
		reply(n, w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *graphRig) client(mod func(*GraphConfig)) *GraphClient {
	cfg := GraphConfig{
		BaseURL:     g.srv.URL,
		AccessToken: testToken,
		Backoff:     time.Millisecond,
		Timeout:     2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	return NewGraphClient(cfg)
}

func (g *graphRig) requests() []recordedRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]recordedRequest(nil), g.reqs...)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func okReply(_ int, w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, `{"messaging_product":"whatsapp","success":true}`)
}

const metaErrorBody = `{"error":{"message":"(#138006) No approved call permission","type":"OAuthException","code":138006,` +
	`"error_subcode":2494100,"error_data":{"messaging_product":"whatsapp","details":"Call permission has not been granted"},` +
	`"fbtrace_id":"AZ3kq7Lx0cR8_example"}}`

func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Errorf("error leaks the access token: %v", err)
	}
}

func TestGraphRequestShape(t *testing.T) {
	g := newGraphRig(t, okReply)
	c := g.client(func(cfg *GraphConfig) { cfg.BaseURL += "/" })
	ctx := context.Background()
	sdp := string(readTestdata(t, "meta-offer.sdp")) // any SDP: CRLF and "/" must survive
	if err := c.PreAccept(ctx, "106540352242922", "wacid.ABC=", sdp); err != nil {
		t.Fatal(err)
	}
	if err := c.Accept(ctx, "106540352242922", "wacid.ABC=", sdp, "route=<support>&x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Accept(ctx, "106540352242922", "wacid.ABC=", sdp, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Reject(ctx, "106540352242922", "wacid.ABC="); err != nil {
		t.Fatal(err)
	}
	if err := c.Terminate(ctx, "106540352242922", "wacid.ABC="); err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests", len(reqs))
	}
	session := map[string]any{"sdp_type": "answer", "sdp": sdp}
	want := []map[string]any{
		{"messaging_product": "whatsapp", "call_id": "wacid.ABC=", "action": "pre_accept", "session": session},
		{"messaging_product": "whatsapp", "call_id": "wacid.ABC=", "action": "accept", "session": session,
			"biz_opaque_callback_data": "route=<support>&x"},
		{"messaging_product": "whatsapp", "call_id": "wacid.ABC=", "action": "accept", "session": session},
		{"messaging_product": "whatsapp", "call_id": "wacid.ABC=", "action": "reject"},
		{"messaging_product": "whatsapp", "call_id": "wacid.ABC=", "action": "terminate"},
	}
	for i, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/v23.0/106540352242922/calls" {
			t.Errorf("req %d: %s %s", i, r.Method, r.Path)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("req %d: Authorization %q", i, got)
		}
		if got := r.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("req %d: Content-Type %q", i, got)
		}
		var got map[string]any
		if err := json.Unmarshal(r.Body, &got); err != nil {
			t.Fatalf("req %d: body not JSON: %v\n%s", i, err, r.Body)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("req %d body:\n got %v\nwant %v", i, got, want[i])
		}
	}
	// Field order as Meta documents it, and no HTML escaping of the opaque data.
	if b := string(reqs[1].Body); !strings.HasPrefix(b, `{"messaging_product":"whatsapp","call_id":"wacid.ABC=","action":"accept","session":{"sdp_type":"answer","sdp":"v=0\r\n`) ||
		!strings.HasSuffix(b, `"biz_opaque_callback_data":"route=<support>&x"}`) {
		t.Errorf("raw body: %s", b)
	}
}

func TestGraphVersionAndPathEscaping(t *testing.T) {
	g := newGraphRig(t, okReply)
	c := g.client(func(cfg *GraphConfig) { cfg.Version = "24.0" })
	if err := c.Terminate(context.Background(), "12/34", "wacid.X"); err != nil {
		t.Fatal(err)
	}
	r := g.requests()[0]
	if r.Path != "/v24.0/12/34/calls" { // URL.Path is decoded; check the raw form below
		t.Errorf("path %q", r.Path)
	}
	g2 := newGraphRig(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.EscapedPath() != "/v24.0/12%2F34/calls" {
			writeJSON(w, 404, `{"error":{"message":"wrong path `+r.URL.EscapedPath()+`","code":1}}`)
			return
		}
		okReply(0, w, r)
	})
	if err := g2.client(func(cfg *GraphConfig) { cfg.Version = "24.0" }).Terminate(context.Background(), "12/34", "wacid.X"); err != nil {
		t.Error(err)
	}
}

func TestGraphErrorObject(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 400, metaErrorBody)
	})
	var results []string
	c := g.client(func(cfg *GraphConfig) {
		cfg.OnRequest = func(action, result string, _ time.Duration) { results = append(results, action+"/"+result) }
	})
	err := c.Accept(context.Background(), "106540352242922", "wacid.E1", "v=0\r\n", "")
	var ge *GraphError
	if !errors.As(err, &ge) {
		t.Fatalf("error %v (%T) does not reach *GraphError", err, err)
	}
	want := &GraphError{HTTPStatus: 400, Message: "(#138006) No approved call permission", Type: "OAuthException",
		Code: 138006, Subcode: 2494100, FBTraceID: "AZ3kq7Lx0cR8_example", Details: "Call permission has not been granted"}
	if !reflect.DeepEqual(ge, want) {
		t.Errorf("GraphError\n got %+v\nwant %+v", ge, want)
	}
	msg := err.Error()
	for _, part := range []string{"accept", "wacid.E1", "138006", "2494100", "AZ3kq7Lx0cR8_example", "No approved call permission"} {
		if !strings.Contains(msg, part) {
			t.Errorf("error %q lacks %q", msg, part)
		}
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("4xx tried %d times, want 1", n)
	}
	if !reflect.DeepEqual(results, []string{"accept/graph_error"}) {
		t.Errorf("OnRequest %v", results)
	}
	assertNoToken(t, err)
}

func TestGraphNonJSONError(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(403)
		_, _ = io.WriteString(w, "<html><body>Forbidden by proxy\n"+strings.Repeat("x", 1000)+"</body></html>")
	})
	err := g.client(nil).Reject(context.Background(), "1", "wacid.H")
	var ge *GraphError
	if !errors.As(err, &ge) {
		t.Fatalf("%v does not reach *GraphError", err)
	}
	if ge.HTTPStatus != 403 || !strings.Contains(ge.Message, "Forbidden by proxy") || len(ge.Message) > 400 ||
		strings.Contains(ge.Message, "\n") {
		t.Errorf("GraphError %+v", ge)
	}
}

func TestGraphTokenNeverInErrors(t *testing.T) {
	// Meta quotes a malformed token back; a broken proxy may echo headers.
	g := newGraphRig(t, func(n int, w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		switch n {
		case 1:
			writeJSON(w, 401, `{"error":{"message":"Malformed access token `+strings.TrimPrefix(auth, "Bearer ")+
				`","type":"OAuthException","code":190,"fbtrace_id":"T1"}}`)
		case 2:
			w.WriteHeader(400)
			_, _ = io.WriteString(w, strings.Repeat("y", 214)+"Authorization: "+auth) // token straddles the snippet cut
		default:
			writeJSON(w, 200, `{"success":false,"echo":"`+auth+`"}`)
		}
	})
	c := g.client(nil)
	for i := range 3 {
		err := c.Terminate(context.Background(), "1", "wacid.T")
		if err == nil {
			t.Fatalf("call %d: no error", i)
		}
		assertNoToken(t, err)
		if strings.Contains(err.Error(), testToken[:12]) {
			t.Errorf("call %d: part of the token in %v", i, err)
		}
		var ge *GraphError
		if errors.As(err, &ge) {
			for _, f := range []string{ge.Message, ge.Details, ge.UserMessage} {
				if strings.Contains(f, testToken[:12]) {
					t.Errorf("call %d: GraphError field leaks the token", i)
				}
			}
		}
	}
}

func TestGraph5xxRetriedThenSuccess(t *testing.T) {
	g := newGraphRig(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 3 {
			writeJSON(w, 503, `{"error":{"message":"Service temporarily unavailable","type":"OAuthException","code":2,"is_transient":true,"fbtrace_id":"R"}}`)
			return
		}
		okReply(n, w, r)
	})
	var results []string
	c := g.client(func(cfg *GraphConfig) {
		cfg.OnRequest = func(action, result string, _ time.Duration) { results = append(results, action+"/"+result) }
	})
	if err := c.PreAccept(context.Background(), "1", "wacid.R", "v=0\r\n"); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	if n := g.attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	// Each attempt sends the same body.
	reqs := g.requests()
	for _, r := range reqs[1:] {
		if string(r.Body) != string(reqs[0].Body) {
			t.Errorf("retry body differs: %s", r.Body)
		}
	}
	if !reflect.DeepEqual(results, []string{"pre_accept/ok"}) {
		t.Errorf("OnRequest %v", results)
	}
}

func TestGraph5xxGivesUpAfterMaxRetries(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 500, `{"error":{"message":"An unknown error occurred","type":"OAuthException","code":1,"fbtrace_id":"U"}}`)
	})
	err := g.client(nil).Terminate(context.Background(), "1", "wacid.U")
	var ge *GraphError
	if !errors.As(err, &ge) || ge.HTTPStatus != 500 || ge.Code != 1 {
		t.Fatalf("err %v", err)
	}
	if n := g.attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3 (MaxRetries default 2)", n)
	}
	g.attempts.Store(0)
	_ = g.client(func(cfg *GraphConfig) { cfg.MaxRetries = -1 }).Terminate(context.Background(), "1", "wacid.U")
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("MaxRetries -1: %d attempts, want 1", n)
	}
	g.attempts.Store(0)
	_ = g.client(func(cfg *GraphConfig) { cfg.MaxRetries = 4 }).Terminate(context.Background(), "1", "wacid.U")
	if n := g.attempts.Load(); n != 5 {
		t.Errorf("MaxRetries 4: %d attempts, want 5", n)
	}
}

func TestGraph4xxNotRetried(t *testing.T) {
	for _, status := range []int{400, 401, 404, 429} {
		g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, status, `{"error":{"message":"no","type":"OAuthException","code":100,"fbtrace_id":"F"}}`)
		})
		err := g.client(nil).Terminate(context.Background(), "1", "wacid.F")
		var ge *GraphError
		if !errors.As(err, &ge) || ge.HTTPStatus != status {
			t.Errorf("%d: err %v", status, err)
		}
		if n := g.attempts.Load(); n != 1 {
			t.Errorf("%d: %d attempts, want 1", status, n)
		}
	}
}

func TestGraphNetworkErrorRetried(t *testing.T) {
	// The first attempt's connection is dropped without an answer.
	g := newGraphRig(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		okReply(n, w, r)
	})
	if err := g.client(nil).Terminate(context.Background(), "1", "wacid.N"); err != nil {
		t.Fatalf("after one dropped connection: %v", err)
	}
	if n := g.attempts.Load(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
}

func TestGraphConnectionRefusedRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}}
	var result string
	c := NewGraphClient(GraphConfig{BaseURL: "http://" + addr, AccessToken: testToken, Backoff: time.Millisecond,
		HTTPClient: &http.Client{Transport: tr},
		OnRequest:  func(_, r string, _ time.Duration) { result = r }})
	err = c.Reject(context.Background(), "1", "wacid.C")
	if err == nil {
		t.Fatal("no error")
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3", n)
	}
	if result != GraphResultNetworkError {
		t.Errorf("result %q", result)
	}
	var ge *GraphError
	if errors.As(err, &ge) {
		t.Errorf("network error reported as GraphError: %v", err)
	}
	assertNoToken(t, err)
}

func TestGraphPerAttemptTimeoutRetried(t *testing.T) {
	g := newGraphRig(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select { // hang past the client's per-attempt timeout
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		okReply(n, w, r)
	})
	start := time.Now()
	err := g.client(func(cfg *GraphConfig) { cfg.Timeout = 150 * time.Millisecond }).Terminate(context.Background(), "1", "wacid.TO")
	if err != nil {
		t.Fatalf("after one timeout: %v", err)
	}
	if n := g.attempts.Load(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestGraphContextCancelStopsRetries(t *testing.T) {
	first := make(chan struct{})
	var once sync.Once
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		once.Do(func() { close(first) })
		writeJSON(w, 502, `bad gateway`)
	})
	ctx, cancel := context.WithCancel(context.Background())
	var result string
	c := g.client(func(cfg *GraphConfig) {
		cfg.Backoff = 5 * time.Second // the wait that cancel must cut short
		cfg.MaxRetries = 5
		cfg.OnRequest = func(_, r string, _ time.Duration) { result = r }
	})
	go func() {
		<-first
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	err := c.Terminate(ctx, "1", "wacid.X")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	var ge *GraphError
	if !errors.As(err, &ge) || ge.HTTPStatus != 502 {
		t.Errorf("the last attempt's error is lost: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v to stop the retries", d)
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if result != GraphResultCanceled {
		t.Errorf("result %q", result)
	}
	// Already canceled: nothing is sent.
	g.attempts.Store(0)
	if err := c.Terminate(ctx, "1", "wacid.Y"); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
	if n := g.attempts.Load(); n != 0 {
		t.Errorf("%d attempts with a dead context", n)
	}
}

func TestGraphSuccessMustBeTrue(t *testing.T) {
	for _, body := range []string{`{"success":false}`, `{}`, `ok`, ``, `{"success":"true"}`} {
		g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, body) })
		var result string
		err := g.client(func(cfg *GraphConfig) {
			cfg.OnRequest = func(_, r string, _ time.Duration) { result = r }
		}).Terminate(context.Background(), "1", "wacid.S")
		if !errors.Is(err, ErrUnexpectedResponse) {
			t.Errorf("2xx %q: err %v", body, err)
		}
		if n := g.attempts.Load(); n != 1 {
			t.Errorf("2xx %q retried", body)
		}
		if result != GraphResultBadResponse {
			t.Errorf("2xx %q: result %q", body, result)
		}
	}
}

func TestGraphRefusesBadArgumentsBeforeSending(t *testing.T) {
	g := newGraphRig(t, okReply)
	c := g.client(nil)
	ctx := context.Background()
	long := strings.Repeat("é", MaxBizOpaqueLen+1)
	for name, err := range map[string]error{
		"opaque too long": c.Accept(ctx, "1", "wacid.A", "v=0\r\n", long),
		"empty sdp":       c.PreAccept(ctx, "1", "wacid.A", ""),
		"no call id":      c.Reject(ctx, "1", ""),
		"no phone id":     c.Terminate(ctx, "", "wacid.A"),
		"no token":        NewGraphClient(GraphConfig{BaseURL: g.srv.URL}).Terminate(ctx, "1", "wacid.A"),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := g.attempts.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
	// Exactly 512 characters (multi-byte) is fine.
	if err := c.Accept(ctx, "1", "wacid.A", "v=0\r\n", strings.Repeat("é", MaxBizOpaqueLen)); err != nil {
		t.Errorf("512 characters: %v", err)
	}
}

func TestGraphDefaults(t *testing.T) {
	c := NewGraphClient(GraphConfig{AccessToken: "x"})
	if c.base != "https://graph.facebook.com" || c.version != "v23.0" || c.timeout != 10*time.Second ||
		c.maxRetries != 2 || c.backoff != 200*time.Millisecond || c.http == nil || c.log == nil {
		t.Errorf("defaults: %+v", c)
	}
	for n, want := range map[int][2]time.Duration{1: {100 * time.Millisecond, 200 * time.Millisecond},
		2: {200 * time.Millisecond, 400 * time.Millisecond}, 3: {400 * time.Millisecond, 800 * time.Millisecond},
		30: {5 * time.Second, 10 * time.Second}} {
		for range 50 {
			if d := c.backoffFor(n); d < want[0] || d > want[1] {
				t.Fatalf("backoffFor(%d) = %v, want within %v", n, d, want)
			}
		}
	}
}

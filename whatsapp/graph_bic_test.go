package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const bicPNID = "106540352242922"

func connectOK(_ int, w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, `{"messaging_product":"whatsapp","calls":[{"id":"wacid.BIC0001"}]}`)
}

// bodyOf decodes a recorded JSON body.
func bodyOf(t *testing.T, r recordedRequest) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body not JSON: %v\n%s", err, r.Body)
	}
	return m
}

func TestConnectRequestShape(t *testing.T) {
	g := newGraphRig(t, connectOK)
	c := g.client(nil)
	ctx := context.Background()
	sdp := string(readTestdata(t, "meta-offer.sdp")) // CRLF and "/" must survive
	opaque := strings.Repeat("é", MaxBizOpaqueLen-6) + "<a&b>"

	id, err := c.Connect(ctx, bicPNID, ConnectRequest{To: UserRef{WaID: "+14085551234"}, SDPOffer: sdp, BizOpaque: opaque})
	if err != nil || id != "wacid.BIC0001" {
		t.Fatalf("Connect: %q, %v", id, err)
	}
	if _, err := c.Connect(ctx, bicPNID, ConnectRequest{To: UserRef{BSUID: "US.13491208655302741918"}, SDPOffer: sdp}); err != nil {
		t.Fatal(err)
	}
	// Both given: the number wins and goes alone.
	if _, err := c.Connect(ctx, bicPNID, ConnectRequest{To: UserRef{WaID: "14085551234", BSUID: "US.1"}, SDPOffer: sdp}); err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	session := map[string]any{"sdp_type": "offer", "sdp": sdp}
	want := []map[string]any{
		{"messaging_product": "whatsapp", "to": "14085551234", "action": "connect", "session": session,
			"biz_opaque_callback_data": opaque},
		{"messaging_product": "whatsapp", "recipient": "US.13491208655302741918", "action": "connect", "session": session},
		{"messaging_product": "whatsapp", "to": "14085551234", "action": "connect", "session": session},
	}
	for i, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/v23.0/"+bicPNID+"/calls" || r.Query != "" {
			t.Errorf("req %d: %s %s?%s", i, r.Method, r.Path, r.Query)
		}
		if r.Header.Get("Authorization") != "Bearer "+testToken || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("req %d: headers %v", i, r.Header)
		}
		if got := bodyOf(t, r); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("req %d body:\n got %v\nwant %v", i, got, want[i])
		}
	}
	// Raw: documented field order, CRLF escaped as JSON does, no HTML escaping.
	if b := string(reqs[0].Body); !strings.HasPrefix(b, `{"messaging_product":"whatsapp","to":"14085551234","action":"connect","session":{"sdp_type":"offer","sdp":"v=0\r\n`) ||
		!strings.HasSuffix(b, `<a&b>"}`) {
		t.Errorf("raw body: %.200s…", b)
	}
}

func TestUserRefValidation(t *testing.T) {
	for in, want := range map[string]string{"+14085551234": "14085551234", "14085551234": "14085551234",
		"919876543210": "919876543210", "+683400": "683400", "123456789012345": "123456789012345"} {
		if got, err := waIDDigits(in); err != nil || got != want {
			t.Errorf("waIDDigits(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "+", "++14085551234", "+1 408 555 1234", "1-408-555-1234", "(408)5551234",
		"14085551234x", "０１２３４５６７", "014085551234", "+0014085551234", "12345", "1234567890123456", "14085551234\n"} {
		if _, err := waIDDigits(in); err == nil {
			t.Errorf("waIDDigits(%q) accepted", in)
		} else if !strings.Contains(err.Error(), "+14085551234") {
			t.Errorf("waIDDigits(%q): error %q does not say what to give", in, err)
		}
	}
	for _, in := range []string{"US.13491208655302741918", "JP.5550", "BR.abc_DEF-1"} {
		if err := checkBSUID(in); err != nil {
			t.Errorf("checkBSUID(%q): %v", in, err)
		}
	}
	for _, in := range []string{"US 1", "US.1/2", "US.1&x=2", "US.1\n", strings.Repeat("a", maxBSUIDLen+1)} {
		if err := checkBSUID(in); err == nil {
			t.Errorf("checkBSUID(%q) accepted", in)
		}
	}
}

func TestBICRefusesBadArgumentsBeforeSending(t *testing.T) {
	g := newGraphRig(t, connectOK)
	c := g.client(nil)
	ctx := context.Background()
	sdp := "v=0\r\n"
	num := UserRef{WaID: "14085551234"}
	_, errOpaque := c.Connect(ctx, bicPNID, ConnectRequest{To: num, SDPOffer: sdp, BizOpaque: strings.Repeat("é", MaxBizOpaqueLen+1)})
	_, errSDP := c.Connect(ctx, bicPNID, ConnectRequest{To: num, SDPOffer: " \r\n"})
	_, errNoUser := c.Connect(ctx, bicPNID, ConnectRequest{SDPOffer: sdp})
	_, errNum := c.Connect(ctx, bicPNID, ConnectRequest{To: UserRef{WaID: "408-555-1234"}, SDPOffer: sdp})
	_, errPNID := c.Connect(ctx, "", ConnectRequest{To: num, SDPOffer: sdp})
	_, errToken := NewGraphClient(GraphConfig{BaseURL: g.srv.URL}).Connect(ctx, bicPNID, ConnectRequest{To: num, SDPOffer: sdp})
	_, errPerm := c.CallPermissions(ctx, bicPNID, UserRef{BSUID: "US 1"})
	_, errText := c.SendCallPermissionRequest(ctx, bicPNID, num, "  ")
	_, errLong := c.SendCallPermissionRequest(ctx, bicPNID, num, strings.Repeat("x", maxInteractiveBodyLen+1))
	_, errTmpl := c.SendCallPermissionTemplate(ctx, bicPNID, num, "", "en_US")
	_, errLang := c.SendCallPermissionTemplate(ctx, bicPNID, num, "call_me", "")
	for name, err := range map[string]error{"opaque": errOpaque, "sdp": errSDP, "no user": errNoUser, "number": errNum,
		"pnid": errPNID, "token": errToken, "bsuid": errPerm, "text": errText, "long text": errLong,
		"template": errTmpl, "language": errLang} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if !strings.Contains(errNum.Error(), "408-555-1234") || !strings.Contains(errNum.Error(), "digits") {
		t.Errorf("number error unclear: %v", errNum)
	}
	if n := g.attempts.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
	// Exactly 512 characters is fine.
	if _, err := c.Connect(ctx, bicPNID, ConnectRequest{To: num, SDPOffer: sdp, BizOpaque: strings.Repeat("é", MaxBizOpaqueLen)}); err != nil {
		t.Errorf("512 characters: %v", err)
	}
}

// Meta's documented R6 errors come back as GraphError with code and
// details, are not retried, and are not "outcome unknown".
func TestConnectGraphErrors(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   GraphError
	}{
		{400, metaErrorBody, GraphError{HTTPStatus: 400, Message: "(#138006) No approved call permission", Type: "OAuthException",
			Code: 138006, Subcode: 2494100, FBTraceID: "AZ3kq7Lx0cR8_example", Details: "Call permission has not been granted"}},
		{400, `{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,"error_data":{"messaging_product":"whatsapp","details":"SDP Validation error: missing a=fingerprint"},"fbtrace_id":"F100"}}`,
			GraphError{HTTPStatus: 400, Message: "(#100) Invalid parameter", Type: "OAuthException", Code: 100,
				Details: "SDP Validation error: missing a=fingerprint", FBTraceID: "F100"}},
		{400, `{"error":{"message":"Business initiated calling limit reached","code":138012,"error_data":{"details":"Limit of 100 connected calls in 24 hours"},"fbtrace_id":"F12"}}`,
			GraphError{HTTPStatus: 400, Message: "Business initiated calling limit reached", Code: 138012,
				Details: "Limit of 100 connected calls in 24 hours", FBTraceID: "F12"}},
		{400, `{"error":{"message":"Business initiated calling not available","code":138013,"fbtrace_id":"F13"}}`,
			GraphError{HTTPStatus: 400, Message: "Business initiated calling not available", Code: 138013, FBTraceID: "F13"}},
		{400, `{"error":{"message":"Calling paused","code":138014,"error_data":{"details":"low call quality"},"fbtrace_id":"F14"}}`,
			GraphError{HTTPStatus: 400, Message: "Calling paused", Code: 138014, Details: "low call quality", FBTraceID: "F14"}},
		{400, `{"error":{"message":"Payment method missing","code":131044,"fbtrace_id":"F44"}}`,
			GraphError{HTTPStatus: 400, Message: "Payment method missing", Code: 131044, FBTraceID: "F44"}},
		{401, `{"error":{"message":"Malformed access token ` + testToken + `","type":"OAuthException","code":190,"fbtrace_id":"T"}}`,
			GraphError{HTTPStatus: 401, Message: "Malformed access token [REDACTED]", Type: "OAuthException", Code: 190, FBTraceID: "T"}},
	}
	for _, tc := range cases {
		g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, tc.status, tc.body) })
		var results []string
		c := g.client(func(cfg *GraphConfig) {
			cfg.OnRequest = func(a, r string, _ time.Duration) { results = append(results, a+"/"+r) }
		})
		id, err := c.Connect(context.Background(), bicPNID, ConnectRequest{To: UserRef{WaID: "14085551234"}, SDPOffer: "v=0\r\n"})
		var ge *GraphError
		if id != "" || !errors.As(err, &ge) {
			t.Fatalf("code %d: %q, %v", tc.want.Code, id, err)
		}
		if !reflect.DeepEqual(*ge, tc.want) {
			t.Errorf("GraphError\n got %+v\nwant %+v", *ge, tc.want)
		}
		if errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("code %d: a 4xx refusal reported as outcome unknown", tc.want.Code)
		}
		if n := g.attempts.Load(); n != 1 {
			t.Errorf("code %d: %d attempts, want 1", tc.want.Code, n)
		}
		if !reflect.DeepEqual(results, []string{"connect/graph_error"}) {
			t.Errorf("OnRequest %v", results)
		}
		assertNoToken(t, err)
		if !strings.Contains(err.Error(), "connect") || !strings.Contains(err.Error(), fmt.Sprint(tc.want.Code)) {
			t.Errorf("error lacks context: %v", err)
		}
	}
}

// The request went out whole and no answer came in time: Meta may have
// placed the call, so Connect is not repeated (a second call would ring
// twice) and says the outcome is unknown. Terminate, which cannot act
// twice, is repeated in the same situation (TestGraphPerAttemptTimeoutRetried).
func TestConnectNotRetriedAfterTimeout(t *testing.T) {
	g := newGraphRig(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select { // hang past the client's per-attempt timeout
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	var result string
	c := g.client(func(cfg *GraphConfig) {
		cfg.Timeout = 150 * time.Millisecond
		cfg.MaxRetries = 4
		cfg.OnRequest = func(_, r string, _ time.Duration) { result = r }
	})
	start := time.Now()
	id, err := c.Connect(context.Background(), bicPNID, ConnectRequest{To: UserRef{WaID: "14085551234"}, SDPOffer: "v=0\r\n"})
	if id != "" || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("%q, %v; want ErrOutcomeUnknown", id, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the timeout is lost: %v", err)
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("%d attempts after a timeout, want 1", n)
	}
	if result != GraphResultNetworkError {
		t.Errorf("result %q", result)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

// A connection dropped after the request was written, a 5xx, or a 2xx
// without a call id: the call may exist; one attempt each.
func TestConnectNotRetriedWhenMaybePlaced(t *testing.T) {
	for name, reply := range map[string]func(int, http.ResponseWriter, *http.Request){
		"dropped": func(_ int, w http.ResponseWriter, _ *http.Request) {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		},
		"503": func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 503, `{"error":{"message":"Service temporarily unavailable","code":2,"is_transient":true,"fbtrace_id":"R"}}`)
		},
		"504 from a proxy": func(_ int, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(504)
		},
		"2xx without id": func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 200, `{"success":true}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := newGraphRig(t, reply)
			_, err := g.client(func(cfg *GraphConfig) { cfg.MaxRetries = 4 }).Connect(context.Background(), bicPNID,
				ConnectRequest{To: UserRef{WaID: "14085551234"}, SDPOffer: "v=0\r\n"})
			if !errors.Is(err, ErrOutcomeUnknown) {
				t.Errorf("err %v, want ErrOutcomeUnknown", err)
			}
			if n := g.attempts.Load(); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
			assertNoToken(t, err)
		})
	}
}

// Nothing listens: no request ever left, so Connect is repeated, and the
// error says the call was not placed.
func TestConnectRetriedWhenNothingSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}}
	c := NewGraphClient(GraphConfig{BaseURL: "http://" + addr, AccessToken: testToken, Backoff: time.Millisecond,
		HTTPClient: &http.Client{Transport: tr}})
	_, err = c.Connect(context.Background(), bicPNID, ConnectRequest{To: UserRef{WaID: "14085551234"}, SDPOffer: "v=0\r\n"})
	if err == nil {
		t.Fatal("no error")
	}
	if errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("a refused connection reported as outcome unknown: %v", err)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3", n)
	}
}

// Meta throttled the connect (HTTP 429, or code 613 on a 400): refused
// before processing, so it is repeated, after at least a second.
func TestConnectRetriedWhenThrottled(t *testing.T) {
	for name, throttle := range map[string]func(http.ResponseWriter){
		"429": func(w http.ResponseWriter) {
			writeJSON(w, 429, `{"error":{"message":"Too many calls","code":80007,"fbtrace_id":"Z"}}`)
		},
		"613 @400": func(w http.ResponseWriter) {
			writeJSON(w, 400, `{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","code":613,"fbtrace_id":"Z"}}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			g := newGraphRig(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					throttle(w)
					return
				}
				connectOK(n, w, r)
			})
			start := time.Now()
			id, err := g.client(nil).Connect(context.Background(), bicPNID, ConnectRequest{To: UserRef{WaID: "14085551234"}, SDPOffer: "v=0\r\n"})
			if err != nil || id != "wacid.BIC0001" {
				t.Fatalf("%q, %v", id, err)
			}
			if n := g.attempts.Load(); n != 2 {
				t.Errorf("%d attempts, want 2", n)
			}
			if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
				t.Errorf("retried after %v, want about a second", d)
			}
		})
	}
}

func TestGraphErrorThrottled(t *testing.T) {
	for ge, want := range map[GraphError]bool{
		{HTTPStatus: 429}:               true,
		{HTTPStatus: 400, Code: 613}:    true,
		{HTTPStatus: 400, Code: 4}:      true,
		{HTTPStatus: 400, Code: 80007}:  true,
		{HTTPStatus: 400, Code: 130429}: true,
		{HTTPStatus: 500, Code: 613}:    false,
		{HTTPStatus: 400, Code: 138009}: false,
		{HTTPStatus: 400, Code: 100}:    false,
	} {
		if got := ge.Throttled(); got != want {
			t.Errorf("%+v: Throttled %v", ge, got)
		}
	}
}

const permissionsBody = `{"messaging_product":"whatsapp","permission":{"status":"temporary","expiration_time":1745343479},
"actions":[{"action_name":"send_call_permission_request","can_perform_action":true,
  "limits":[{"time_period":"PT24H","max_allowed":1,"current_usage":0},{"time_period":"P7D","max_allowed":2,"current_usage":1}]},
 {"action_name":"start_call","can_perform_action":false,
  "limits":[{"time_period":"PT24H","max_allowed":100,"current_usage":100,"limit_expiration_time":1745622600}]}]}`

func TestCallPermissionsShape(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, permissionsBody) })
	c := g.client(nil)
	p, err := c.CallPermissions(context.Background(), bicPNID, UserRef{WaID: "+14085551234"})
	if err != nil {
		t.Fatal(err)
	}
	want := &CallPermission{
		Status: "temporary", Expires: time.Unix(1745343479, 0).UTC(), CanCall: false, CanRequest: true,
		Actions: []PermissionAction{
			{Name: "send_call_permission_request", CanPerform: true, Limits: []PermissionLimit{
				{TimePeriod: "PT24H", Period: 24 * time.Hour, MaxAllowed: 1, CurrentUsage: 0},
				{TimePeriod: "P7D", Period: 7 * 24 * time.Hour, MaxAllowed: 2, CurrentUsage: 1}}},
			{Name: "start_call", CanPerform: false, Limits: []PermissionLimit{
				{TimePeriod: "PT24H", Period: 24 * time.Hour, MaxAllowed: 100, CurrentUsage: 100,
					LimitExpiration: time.Unix(1745622600, 0).UTC()}}},
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("permission\n got %+v\nwant %+v", p, want)
	}
	if _, err := c.CallPermissions(context.Background(), bicPNID, UserRef{BSUID: "US.13491208655302741918"}); err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	for i, wantQ := range []string{"user_wa_id=14085551234", "recipient=US.13491208655302741918"} {
		r := reqs[i]
		if r.Method != http.MethodGet || r.Path != "/v23.0/"+bicPNID+"/call_permissions" || r.Query != wantQ {
			t.Errorf("req %d: %s %s?%s, want ?%s", i, r.Method, r.Path, r.Query, wantQ)
		}
		if len(r.Body) != 0 || r.Header.Get("Content-Type") != "" || r.Header.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("req %d: body %q, headers %v", i, r.Body, r.Header)
		}
	}
}

func TestCallPermissionsAnswers(t *testing.T) {
	for body, check := range map[string]func(*CallPermission, error) error{
		// No permission at all: no expiry, nothing permitted but a request.
		`{"permission":{"status":"no_permission"},"actions":[{"action_name":"start_call","can_perform_action":false},{"action_name":"send_call_permission_request","can_perform_action":true}]}`: func(p *CallPermission, err error) error {
			if err != nil || p.Status != "no_permission" || !p.Expires.IsZero() || p.CanCall || !p.CanRequest {
				return fmt.Errorf("%+v %v", p, err)
			}
			return nil
		},
		// Permanent, Messenger's can_perform spelling, a string time.
		`{"permission":{"status":"PERMANENT","expiration_time":"1745343479"},"actions":[{"action_name":"start_call","can_perform":"true"}]}`: func(p *CallPermission, err error) error {
			if err != nil || p.Status != "permanent" || p.Expires.Unix() != 1745343479 || !p.CanCall {
				return fmt.Errorf("%+v %v", p, err)
			}
			return nil
		},
		`{"actions":[]}`: func(p *CallPermission, err error) error {
			if !errors.Is(err, ErrUnexpectedResponse) {
				return fmt.Errorf("no permission object: %v", err)
			}
			return nil
		},
		`{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","code":613}}`: func(p *CallPermission, err error) error {
			var ge *GraphError
			if !errors.As(err, &ge) || ge.Code != 613 {
				return fmt.Errorf("error object in a 2xx: %v", err)
			}
			return nil
		},
	} {
		g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, body) })
		p, err := g.client(nil).CallPermissions(context.Background(), bicPNID, UserRef{WaID: "14085551234"})
		if e := check(p, err); e != nil {
			t.Errorf("%s: %v", body, e)
		}
	}
}

func TestISODuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"PT24H": 24 * time.Hour, "P7D": 168 * time.Hour, "PT1H30M": 90 * time.Minute,
		"P1DT2H": 26 * time.Hour, "PT45S": 45 * time.Second, "pt24h": 24 * time.Hour,
		"": 0, "P": 0, "PT": 0, "24H": 0, "P1W": 0, "P1M": 0, "PT1.5H": 0, "PTH": 0, "P1": 0, "PT9999999H": 0, "P1DT": 0} {
		if got := isoDuration(in); got != want {
			t.Errorf("isoDuration(%q) = %v, want %v", in, got, want)
		}
	}
}

// R5 allows 5 requests per second per phone number: six at once go out as
// five, then the sixth about a second after the first. Another number is
// not held up.
func TestCallPermissionsRateLimit(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, permissionsBody) })
	c := g.client(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 7)
	for range 6 {
		wg.Go(func() {
			_, err := c.CallPermissions(ctx, bicPNID, UserRef{WaID: "14085551234"})
			errs <- err
		})
	}
	time.Sleep(50 * time.Millisecond) // the six have taken their places
	_, err := c.CallPermissions(ctx, "999", UserRef{WaID: "14085551234"})
	otherDone := time.Since(start)
	errs <- err
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var times []time.Duration
	for _, r := range g.requests() {
		if strings.Contains(r.Path, bicPNID) {
			times = append(times, r.At.Sub(start))
		}
	}
	if len(times) != 6 {
		t.Fatalf("%d requests arrived", len(times))
	}
	if times[4] > 800*time.Millisecond {
		t.Errorf("the fifth request arrived after %v: the first five should not wait", times[4])
	}
	if times[5] < 900*time.Millisecond || times[5] > 5*time.Second {
		t.Errorf("the sixth request arrived after %v, want about a second", times[5])
	}
	if otherDone > 800*time.Millisecond {
		t.Errorf("another phone number id waited %v", otherDone)
	}
}

// Waiting for the rate limit ends with the caller's context; nothing is
// sent and OnRequest says canceled.
func TestCallPermissionsRateLimitCanceled(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, permissionsBody) })
	var results []string
	var mu sync.Mutex
	c := g.client(func(cfg *GraphConfig) {
		cfg.OnRequest = func(_, r string, _ time.Duration) { mu.Lock(); results = append(results, r); mu.Unlock() }
	})
	for range 5 {
		if _, err := c.CallPermissions(context.Background(), bicPNID, UserRef{WaID: "14085551234"}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.CallPermissions(ctx, bicPNID, UserRef{WaID: "14085551234"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Errorf("gave up after %v, the context allowed 100ms", d)
	}
	if n := g.attempts.Load(); n != 5 {
		t.Errorf("%d requests sent, want 5", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if last := results[len(results)-1]; last != GraphResultCanceled {
		t.Errorf("results %v", results)
	}
}

func TestWindowLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newWindowLimiter(5, time.Second)
	l.now = func() time.Time { return now }
	for i := range 5 {
		if d := l.reserve("a"); d != 0 {
			t.Fatalf("start %d waits %v", i, d)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// Starts at 0, 100, …, 400 ms; now 500 ms: the sixth waits until 1000.
	if d := l.reserve("a"); d != 500*time.Millisecond {
		t.Errorf("sixth waits %v, want 500ms", d)
	}
	if d := l.reserve("b"); d != 0 {
		t.Errorf("another key waits %v", d)
	}
	now = now.Add(500 * time.Millisecond)
	if d := l.reserve("a"); d != 0 {
		t.Errorf("after the window: waits %v", d)
	}
	if d := l.reserve("a"); d != 100*time.Millisecond {
		t.Errorf("then waits %v, want 100ms", d)
	}
	// Idle keys are dropped once there are many.
	for i := range maxLimiterKeys + 10 {
		l.reserve(fmt.Sprint("k", i))
		now = now.Add(2 * time.Second)
	}
	if n := len(l.keys); n > maxLimiterKeys {
		t.Errorf("%d keys kept", n)
	}
}

func TestSendCallPermissionRequestShape(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, `{"messaging_product":"whatsapp","contacts":[{"input":"14085551234","wa_id":"14085551234"}],"messages":[{"id":"wamid.HBgLMTQwODU1NTEyMzQ="}]}`)
	})
	c := g.client(nil)
	ctx := context.Background()
	id, err := c.SendCallPermissionRequest(ctx, bicPNID, UserRef{WaID: "+14085551234"}, "May we call you about order <42> & more?")
	if err != nil || id != "wamid.HBgLMTQwODU1NTEyMzQ=" {
		t.Fatalf("%q, %v", id, err)
	}
	if _, err := c.SendCallPermissionRequest(ctx, bicPNID, UserRef{BSUID: "US.134"}, "Call?"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendCallPermissionTemplate(ctx, bicPNID, UserRef{WaID: "14085551234"}, "call_permission_utility", "en_US"); err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	interactive := func(text string) map[string]any {
		return map[string]any{"type": "call_permission_request", "action": map[string]any{"name": "call_permission_request"},
			"body": map[string]any{"text": text}}
	}
	want := []map[string]any{
		{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "14085551234", "type": "interactive",
			"interactive": interactive("May we call you about order <42> & more?")},
		{"messaging_product": "whatsapp", "recipient_type": "individual", "recipient": "US.134", "type": "interactive",
			"interactive": interactive("Call?")},
		{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "14085551234", "type": "template",
			"template": map[string]any{"name": "call_permission_utility", "language": map[string]any{"code": "en_US"}}},
	}
	for i, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/v23.0/"+bicPNID+"/messages" {
			t.Errorf("req %d: %s %s", i, r.Method, r.Path)
		}
		if got := bodyOf(t, r); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("req %d body:\n got %v\nwant %v", i, got, want[i])
		}
	}
	if !strings.Contains(string(reqs[0].Body), "<42> & more") {
		t.Errorf("text HTML-escaped: %s", reqs[0].Body)
	}
}

// 138009 (request limit) and 138017 (permanent permission exists) come
// back as GraphError; a message whose answer is lost is not sent again.
func TestSendCallPermissionRequestErrors(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 400, `{"error":{"message":"Call permission request limit reached","type":"OAuthException","code":138009,"error_data":{"messaging_product":"whatsapp","details":"1 request per 24 hours"},"fbtrace_id":"P9"}}`)
	})
	_, err := g.client(nil).SendCallPermissionRequest(context.Background(), bicPNID, UserRef{WaID: "14085551234"}, "Call?")
	var ge *GraphError
	if !errors.As(err, &ge) || ge.Code != 138009 || ge.Details != "1 request per 24 hours" || ge.FBTraceID != "P9" {
		t.Errorf("err %v", err)
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("%d attempts", n)
	}

	g2 := newGraphRig(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	_, err = g2.client(func(cfg *GraphConfig) { cfg.Timeout = 150 * time.Millisecond }).
		SendCallPermissionTemplate(context.Background(), bicPNID, UserRef{WaID: "14085551234"}, "t", "en")
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("err %v, want ErrOutcomeUnknown", err)
	}
	if n := g2.attempts.Load(); n != 1 {
		t.Errorf("template sent %d times after a timeout", n)
	}
}

// R5 is a read: a 5xx is repeated.
func TestCallPermissions5xxRetried(t *testing.T) {
	g := newGraphRig(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			writeJSON(w, 500, `{"error":{"message":"An unknown error occurred","code":1}}`)
			return
		}
		writeJSON(w, 200, permissionsBody)
	})
	if _, err := g.client(nil).CallPermissions(context.Background(), bicPNID, UserRef{WaID: "14085551234"}); err != nil {
		t.Fatal(err)
	}
	if n := g.attempts.Load(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
}

// The caller's context ends while Meta holds the connect: the call may
// ring, so the error says the outcome is unknown (and canceled).
func TestConnectCanceledAfterSendingIsOutcomeUnknown(t *testing.T) {
	arrived := make(chan struct{})
	g := newGraphRig(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
		}
		cancel()
	}()
	_, err := g.client(nil).Connect(ctx, bicPNID, ConnectRequest{To: UserRef{WaID: "14085551234"}, SDPOffer: "v=0\r\n"})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want ErrOutcomeUnknown and context.Canceled", err)
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("%d attempts", n)
	}
}

package wasim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// bizEvent is one webhook as a business-initiated caller sees it, read
// with generic JSON only.
type bizEvent struct {
	raw    []byte
	field  string
	kind   string // "connect", "terminate", "status:RINGING", …, "permission_reply", "voicemail", "settings_update", "account_update:EVENT"
	id     string // the call id, or the message id
	value  map[string]any
	call   map[string]any // calls[0]
	status map[string]any // statuses[0]
	msg    map[string]any // messages[0]
	entry  map[string]any // entry[0]
	at     time.Time
}

// bizHooks is the business's webhook receiver: every webhook is checked
// (signature, Meta's shape for business-initiated calls) and kept in order.
type bizHooks struct {
	*httptest.Server
	t      *testing.T
	mu     sync.Mutex
	events []bizEvent
	bad    []string
	next   int // the cursor of take/expect
	notify chan struct{}
}

func newBizHooks(t *testing.T) *bizHooks {
	t.Helper()
	h := &bizHooks{t: t, notify: make(chan struct{}, 1)}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(func() {
		h.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, b := range h.bad {
			t.Errorf("webhook shape: %s", b)
		}
	})
	return h
}

func (h *bizHooks) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	if !hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte(Sign(testSecret, raw))) {
		w.WriteHeader(http.StatusUnauthorized)
		h.mu.Lock()
		h.bad = append(h.bad, "bad signature on "+string(raw))
		h.mu.Unlock()
		return
	}
	ev, bad := parseBizEvent(raw)
	h.mu.Lock()
	h.events = append(h.events, ev)
	for _, b := range bad {
		h.bad = append(h.bad, b+" in "+string(raw))
	}
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

func isUnixString(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// parseBizEvent reads a webhook and lists where it departs from Meta's
// documented shapes (W2, W3, W4, W8).
func parseBizEvent(raw []byte) (bizEvent, []string) {
	ev := bizEvent{raw: raw, at: time.Now()}
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		return ev, []string{"not JSON"}
	}
	var bad []string
	entries, _ := env["entry"].([]any)
	if env["object"] != "whatsapp_business_account" || len(entries) != 1 {
		return ev, []string{"envelope"}
	}
	e, _ := entries[0].(map[string]any)
	changes, _ := e["changes"].([]any)
	if str(e, "id") == "" || len(changes) != 1 {
		return ev, []string{"entry"}
	}
	ev.entry = e
	ch, _ := changes[0].(map[string]any)
	ev.field = str(ch, "field")
	ev.value, _ = ch["value"].(map[string]any)
	md, _ := ev.value["metadata"].(map[string]any)
	switch ev.field {
	case "calls":
		if ev.value["messaging_product"] != "whatsapp" || md["phone_number_id"] != testPhoneID || md["display_phone_number"] != defaultDisplayNumber {
			bad = append(bad, "messaging_product/metadata")
		}
	case "messages": // the voicemail of another business number too
		if ev.value["messaging_product"] != "whatsapp" || str(md, "phone_number_id") == "" || str(md, "display_phone_number") == "" {
			bad = append(bad, "messaging_product/metadata")
		}
	default: // account_settings_update, account_update: no metadata
		if md != nil {
			bad = append(bad, "metadata in "+ev.field)
		}
	}
	one := func(key string) map[string]any {
		l, _ := ev.value[key].([]any)
		if len(l) != 1 {
			return nil
		}
		m, _ := l[0].(map[string]any)
		return m
	}
	switch ev.field {
	case "calls":
		if ev.call = one("calls"); ev.call != nil {
			ev.kind, ev.id = str(ev.call, "event"), str(ev.call, "id")
			if ev.call["direction"] != directionBIC || ev.call["from"] != defaultDisplayNumber || str(ev.call, "to_user_id") == "" || !isUnixString(str(ev.call, "timestamp")) {
				bad = append(bad, "calls[] direction/from/to_user_id/timestamp")
			}
			s, _ := ev.call["session"].(map[string]any)
			switch ev.kind {
			case "connect":
				if s["sdp_type"] != "answer" || !strings.HasPrefix(str(s, "sdp"), "v=0\r\n") {
					bad = append(bad, "connect session")
				}
				if c, _ := ev.value["contacts"].([]any); len(c) != 1 {
					bad = append(bad, "connect contacts")
				}
			case "terminate":
				if st := str(ev.call, "status"); (st != "COMPLETED" && st != "FAILED") || s != nil {
					bad = append(bad, "terminate status/session")
				}
			default:
				bad = append(bad, "event "+ev.kind)
			}
		} else if ev.status = one("statuses"); ev.status != nil {
			ev.kind, ev.id = "status:"+str(ev.status, "status"), str(ev.status, "id")
			switch ev.kind {
			case "status:RINGING", "status:ACCEPTED", "status:REJECTED":
			default:
				bad = append(bad, "status "+ev.kind)
			}
			if ev.status["type"] != "call" || str(ev.status, "recipient_user_id") == "" || !isUnixString(str(ev.status, "timestamp")) {
				bad = append(bad, "statuses[] type/recipient_user_id/timestamp")
			}
		} else {
			bad = append(bad, "neither calls nor statuses")
		}
		if !strings.HasPrefix(ev.id, "wacid.") {
			bad = append(bad, "call id")
		}
	case "messages":
		ev.msg = one("messages")
		if ev.msg["type"] == "audio" { // a voicemail (W9)
			ev.kind, ev.id = "voicemail", str(ev.msg, "id")
			a, _ := ev.msg["audio"].(map[string]any)
			sum, err := base64.StdEncoding.DecodeString(str(a, "sha256"))
			if !strings.HasPrefix(ev.id, "wacid.") || str(ev.msg, "from") == "" || str(ev.msg, "from_user_id") == "" || !isUnixString(str(ev.msg, "timestamp")) {
				bad = append(bad, "voicemail messages[]")
			}
			if !isUnixString(str(a, "id")) || err != nil || len(sum) != 32 || a["mime_type"] != "audio/ogg; codecs=opus" {
				bad = append(bad, "voicemail audio")
			}
			if c, _ := ev.value["contacts"].([]any); len(c) != 1 {
				bad = append(bad, "voicemail contacts")
			}
			break
		}
		it, _ := ev.msg["interactive"].(map[string]any)
		reply, _ := it["call_permission_reply"].(map[string]any)
		ev.kind, ev.id = "permission_reply", str(ev.msg, "id")
		if ev.msg["type"] != "interactive" || it["type"] != "call_permission_reply" || !strings.HasPrefix(ev.id, "wamid.") || str(ev.msg, "from_user_id") == "" {
			bad = append(bad, "messages[]")
		}
		if r := str(reply, "response"); (r != "accept" && r != "reject") || str(reply, "response_source") == "" {
			bad = append(bad, "call_permission_reply")
		}
	case "account_settings_update": // W11
		ev.kind = "settings_update"
		pns, _ := ev.value["phone_number_settings"].(map[string]any)
		ev.id = str(pns, "phone_number_id")
		if ev.value["messaging_product"] != "whatsapp" || !isUnixString(str(ev.value, "timestamp")) || ev.value["type"] != "PHONE_NUMBER_SETTINGS" || ev.id == "" {
			bad = append(bad, "account_settings_update value")
		}
		if _, ok := pns["calling"]; !ok {
			bad = append(bad, "phone_number_settings.calling")
		}
	case "account_update": // W12
		ev.kind = "account_update:" + str(ev.value, "event")
		ev.id = str(ev.value, "phone_number")
		if t, _ := e["time"].(float64); t <= 0 || ev.id == "" || ev.value["messaging_product"] != nil {
			bad = append(bad, "account_update entry.time/phone_number")
		}
		vi, _ := ev.value["violation_info"].(map[string]any)
		ri, _ := ev.value["restriction_info"].([]any)
		switch ev.kind {
		case "account_update:ACCOUNT_VIOLATION":
			if str(vi, "violation_type") == "" || ri != nil {
				bad = append(bad, "violation_info")
			}
		case "account_update:ACCOUNT_RESTRICTION":
			r, _ := func() (map[string]any, bool) {
				if len(ri) != 1 {
					return nil, false
				}
				m, ok := ri[0].(map[string]any)
				return m, ok
			}()
			if str(r, "restriction_type") == "" || vi != nil {
				bad = append(bad, "restriction_info")
			}
		default:
			bad = append(bad, "account_update event")
		}
	default:
		bad = append(bad, "field "+ev.field)
	}
	return ev, bad
}

// take waits for the next webhook after the cursor.
func (h *bizHooks) take(within time.Duration) (bizEvent, bool) {
	deadline := time.After(within)
	for {
		h.mu.Lock()
		if h.next < len(h.events) {
			ev := h.events[h.next]
			h.next++
			h.mu.Unlock()
			return ev, true
		}
		h.mu.Unlock()
		select {
		case <-h.notify:
		case <-deadline:
			return bizEvent{}, false
		}
	}
}

// expect takes the next webhooks, which must be these kinds in this order.
func (h *bizHooks) expect(t *testing.T, within time.Duration, kinds ...string) []bizEvent {
	t.Helper()
	var out []bizEvent
	for _, k := range kinds {
		ev, ok := h.take(within)
		if !ok {
			t.Fatalf("no %s webhook within %s (got %v)", k, within, kindsOf(out))
		}
		if ev.kind != k {
			t.Fatalf("webhook %s, want %s (so far %v): %s", ev.kind, k, kindsOf(out), ev.raw)
		}
		out = append(out, ev)
	}
	return out
}

// waitKind skips webhooks until one of kind.
func (h *bizHooks) waitKind(t *testing.T, kind string, within time.Duration) bizEvent {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ev, ok := h.take(time.Until(deadline))
		if !ok {
			t.Fatalf("no %s webhook within %s", kind, within)
		}
		if ev.kind == kind {
			return ev
		}
	}
}

// quiet says whether no webhook arrives for d.
func (h *bizHooks) quiet(d time.Duration) bool {
	h.mu.Lock()
	n := len(h.events)
	h.mu.Unlock()
	time.Sleep(d)
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events) == n
}

func kindsOf(evs []bizEvent) []string {
	var k []string
	for _, e := range evs {
		k = append(k, e.kind)
	}
	return k
}

func answerOf(ev bizEvent) string {
	s, _ := ev.call["session"].(map[string]any)
	return str(s, "sdp")
}

// newBICSim starts a simulator posting to hooks.
func newBICSim(t *testing.T, hooks *bizHooks, mod func(*Config)) *Sim {
	t.Helper()
	cfg := Config{
		GraphListen: "127.0.0.1:0", WebhookURL: hooks.URL + "/webhook",
		AppSecret: testSecret, AccessToken: testToken, PhoneNumberID: testPhoneID, MediaIP: "127.0.0.1",
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func setUser(t *testing.T, s *Sim, u User) {
	t.Helper()
	if err := s.SetUser(u); err != nil {
		t.Fatal(err)
	}
}

// graphDo sends one Graph request to /v23.0/{PNID}/{endpoint} and decodes
// the answer.
func graphDo(t *testing.T, s *Sim, method, endpoint string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.GraphURL()+"/v23.0/"+testPhoneID+"/"+endpoint, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func connectBody(to, offer, opaque string) map[string]any {
	m := map[string]any{"messaging_product": "whatsapp", "to": to, "action": "connect",
		"session": map[string]any{"sdp_type": "offer", "sdp": offer}}
	if opaque != "" {
		m["biz_opaque_callback_data"] = opaque
	}
	return m
}

func permissionRequest(to string) map[string]any {
	return map[string]any{"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "interactive",
		"interactive": map[string]any{"type": "call_permission_request", "action": map[string]any{"name": "call_permission_request"},
			"body": map[string]any{"text": "May we call you about your order?"}}}
}

// connectCall places a call that must be taken and returns its id.
func connectCall(t *testing.T, s *Sim, to, offer, opaque string) string {
	t.Helper()
	code, body := graphDo(t, s, http.MethodPost, "calls", connectBody(to, offer, opaque))
	calls, _ := body["calls"].([]any)
	if code != 200 || len(calls) != 1 {
		t.Fatalf("connect: HTTP %d %v", code, body)
	}
	id := str(calls[0].(map[string]any), "id")
	if !strings.HasPrefix(id, "wacid.") {
		t.Fatalf("connect: call id %q", id)
	}
	return id
}

// wantGraphError checks an answer is Meta's error object with code and
// HTTP status, and returns its error_data.details.
func wantGraphError(t *testing.T, what string, code int, body map[string]any, status, wantCode int) string {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok || e["message"] == nil || e["type"] == nil || e["fbtrace_id"] == nil {
		t.Fatalf("%s: not a Graph error object: HTTP %d %v", what, code, body)
	}
	if got, _ := e["code"].(float64); code != status || int(got) != wantCode {
		t.Fatalf("%s: HTTP %d code %v, want HTTP %d code %d: %v", what, code, e["code"], status, wantCode, body)
	}
	d, _ := e["error_data"].(map[string]any)
	return str(d, "details")
}

func waitBIC(t *testing.T, s *Sim, id string, within time.Duration) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r, err := s.WaitBIC(ctx, id)
	if err != nil {
		t.Fatalf("call %s: %v", id, err)
	}
	return r
}

// fakeClock is a settable clock for permissions and limits.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

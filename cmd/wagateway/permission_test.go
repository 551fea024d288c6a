package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

const permToken = "EAAG-permission-test-token"

// permConfig is a gateway config whose whatsapp section points at a test
// Graph API. Only the access token's variable is set: the others are not
// needed by the permission subcommands.
const permConfig = `
log: {level: error}
whatsapp:
  graph_base_url: %q
  api_version: v23.0
  graph_timeout: 2s
  access_token: {env: WAGW_PERM_TOKEN}
  app_secret: {env: WAGW_PERM_UNSET_S}
  verify_token: {env: WAGW_PERM_UNSET_V}
trunks:
  - {name: pbx, address: "127.0.0.1:5999", options_ping: false}
numbers:
  - phone_number_id: "1000000001"
    routes: [{trunk: pbx, destination: "sip:a@127.0.0.1"}]
outbound:
  routes:
    - name: uk
      trunk: pbx
      prefix: "+44"
      phone_number_id: "1000000002"
      permission: request
      permission_template: {name: uk_callback}
    - name: callbacks
      trunk: pbx
      phone_number_id: "1000000001"
      permission: wait
      permission_message: "May we call you back about your order?"
      permission_template: {name: callback_permission, language: en_GB}
`

func writePermConfig(t *testing.T, graphURL string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(permConfig, graphURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runPerm runs wagateway with args and checks the token never shows.
func runPerm(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	if strings.Contains(out.String()+errb.String(), permToken) {
		t.Fatalf("%v printed the access token:\n%s%s", args, out.String(), errb.String())
	}
	return code, out.String(), errb.String()
}

// The simulator as Meta: the user's permission and limits as it has them,
// a request that reaches it, and its refusal of a second one in 24 h.
func TestPermissionCommandsAgainstSimulator(t *testing.T) {
	t.Setenv("WAGW_PERM_TOKEN", permToken)
	sim, err := wasim.New(wasim.Config{GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:9/webhook",
		AppSecret: "s", AccessToken: permToken, PhoneNumberID: "1000000001"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	expires := time.Now().Add(72*time.Hour + 30*time.Minute).Truncate(time.Second)
	for _, u := range []wasim.User{
		{WaID: "14085551234", Permission: wasim.PermissionTemporary, PermissionExpires: expires, ReplyToRequest: wasim.ReplyNone},
		{WaID: "14085550000", ReplyToRequest: wasim.ReplyNone},
	} {
		if err := sim.SetUser(u); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writePermConfig(t, sim.GraphURL())

	code, out, errs := runPerm(t, "permission", "status", cfg, "1000000001", "+14085551234")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"user             +14085551234", "status           temporary",
		"expires          " + expires.UTC().Format(time.RFC3339) + " (in 3d30m)", "can call         yes", "can request      yes",
		"action send_call_permission_request: allowed", "  0 of 1 per PT24H used", "  0 of 2 per P7D used",
		"action start_call: allowed", "  0 of 100 per PT24H used",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	// The second user, written as a person would: no permission, a request
	// goes (the route's message), and a second one within 24 h is Meta's 138009.
	code, out, errs = runPerm(t, "permission", "status", cfg, "1000000001", "1 (408) 555-0000")
	if code != 0 || !strings.Contains(out, "status           no_permission") || !strings.Contains(out, "can call         no") {
		t.Fatalf("status of a user without permission: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runPerm(t, "permission", "request", cfg, "1000000001", "+14085550000")
	if code != 0 || !strings.Contains(out, "call permission request sent to +14085550000 from 1000000001: interactive message") {
		t.Fatalf("request: exit %d\n%s%s", code, out, errs)
	}
	if st, _ := sim.UserState("14085550000"); st.PermissionRequests != 1 {
		t.Fatalf("the simulator took %d permission requests, want 1", st.PermissionRequests)
	}
	code, out, errs = runPerm(t, "permission", "request", cfg, "1000000001", "+14085550000", "-message", "Again?")
	if code != 1 || !strings.Contains(errs, "Meta error 138009 (HTTP 400)") {
		t.Fatalf("second request in 24 h: exit %d, want 1 naming 138009\n%s%s", code, out, errs)
	}
	code, out, _ = runPerm(t, "permission", "status", cfg, "1000000001", "14085550000")
	if code != 0 || !strings.Contains(out, "can request      no") || !strings.Contains(out, "  1 of 1 per PT24H used, until ") {
		t.Fatalf("status after a request: exit %d\n%s", code, out)
	}
	if v := sim.Violations(); len(v) > 0 {
		t.Errorf("the simulator saw broken rules: %v", v)
	}
}

// graphRecorder is a Graph API that records the requests and answers with
// what the test sets.
type graphRecorder struct {
	mu       sync.Mutex
	requests []recordedRequest
	answer   func(r recordedRequest) (int, string)
}

type recordedRequest struct {
	Method, Path, Query, Auth string
	Body                      map[string]any
}

func (g *graphRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	rec := recordedRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &rec.Body); err != nil {
			rec.Body = map[string]any{"unparsed": string(raw)}
		}
	}
	g.mu.Lock()
	g.requests = append(g.requests, rec)
	answer := g.answer
	g.mu.Unlock()
	status, body := answer(rec)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (g *graphRecorder) take() []recordedRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.requests
	g.requests = nil
	return r
}

func (g *graphRecorder) set(f func(recordedRequest) (int, string)) {
	g.mu.Lock()
	g.answer = f
	g.mu.Unlock()
}

const messageOK = `{"messaging_product":"whatsapp","contacts":[{"input":"x","wa_id":"x"}],"messages":[{"id":"wamid.TEST"}]}`

func metaError(code int, msg string) string {
	return fmt.Sprintf(`{"error":{"message":%q,"type":"OAuthException","code":%d,"error_data":{"messaging_product":"whatsapp","details":"details of %d"},"fbtrace_id":"AbCdEf"}}`, msg, code, code)
}

// The request's body as Meta gets it: the route's message, a template
// named on the command line, the template when Meta says the user is
// outside the 24 h window; Meta's refusals exit 1 and name the code.
func TestPermissionRequestBodies(t *testing.T) {
	t.Setenv("WAGW_PERM_TOKEN", permToken)
	g := &graphRecorder{answer: func(recordedRequest) (int, string) { return 200, messageOK }}
	srv := httptest.NewServer(g)
	defer srv.Close()
	cfg := writePermConfig(t, srv.URL)

	interactive := func(to, text string) map[string]any {
		return map[string]any{"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "interactive",
			"interactive": map[string]any{"type": "call_permission_request", "action": map[string]any{"name": "call_permission_request"},
				"body": map[string]any{"text": text}}}
	}
	template := func(to, name, lang string) map[string]any {
		return map[string]any{"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
			"template": map[string]any{"name": name, "language": map[string]any{"code": lang}}}
	}
	check := func(name string, got []recordedRequest, pnid string, want ...map[string]any) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d requests reached the server, want %d: %+v", name, len(got), len(want), got)
		}
		for i, r := range got {
			if r.Method != "POST" || r.Path != "/v23.0/"+pnid+"/messages" || r.Auth != "Bearer "+permToken {
				t.Errorf("%s: request %d is %s %s (auth %q)", name, i, r.Method, r.Path, r.Auth)
			}
			gj, _ := json.Marshal(r.Body)
			wj, _ := json.Marshal(want[i])
			if string(gj) != string(wj) {
				t.Errorf("%s: request %d body\n got %s\nwant %s", name, i, gj, wj)
			}
		}
	}

	code, out, errs := runPerm(t, "permission", "request", cfg, "1000000001", "+14085551234")
	if code != 0 || !strings.Contains(out, ": interactive message") {
		t.Fatalf("default request: exit %d\n%s%s", code, out, errs)
	}
	check("the first route's message", g.take(), "1000000001", interactive("14085551234", "May we call you back about your order?"))

	code, out, errs = runPerm(t, "permission", "request", "-template", "spring_offer", cfg, "1000000001", "US.13491208655302741918")
	if code != 0 || !strings.Contains(out, ": template spring_offer (en_US)") {
		t.Fatalf("-template: exit %d\n%s%s", code, out, errs)
	}
	want := template("", "spring_offer", "en_US")
	delete(want, "to")
	want["recipient"] = "US.13491208655302741918"
	check("-template to a BSUID", g.take(), "1000000001", want)

	code, _, errs = runPerm(t, "permission", "request", cfg, "1000000002", "+447700900123")
	if code != 0 {
		t.Fatalf("the uk route's template: exit %d %s", code, errs)
	}
	check("the uk route's template", g.take(), "1000000002", template("447700900123", "uk_callback", "en_US"))

	// Outside the 24 h window Meta refuses the message (131047): the route's template goes.
	g.set(func(r recordedRequest) (int, string) {
		if r.Body["type"] == "interactive" {
			return 400, metaError(131047, "Re-engagement message")
		}
		return 200, messageOK
	})
	code, out, errs = runPerm(t, "permission", "request", cfg, "1000000001", "14085551234")
	if code != 0 || !strings.Contains(out, ": template callback_permission (en_GB)") {
		t.Fatalf("outside the window: exit %d\n%s%s", code, out, errs)
	}
	check("outside the window", g.take(), "1000000001",
		interactive("14085551234", "May we call you back about your order?"), template("14085551234", "callback_permission", "en_GB"))
	// Given on the command line, both are the user's: the message, then the template.
	code, out, errs = runPerm(t, "permission", "request", cfg, "1000000001", "14085551234",
		"-message", "Shall we call?", "-template", "spring_offer", "-language", "de")
	if code != 0 || !strings.Contains(out, ": template spring_offer (de)") {
		t.Fatalf("-message and -template outside the window: exit %d\n%s%s", code, out, errs)
	}
	check("-message and -template outside the window", g.take(), "1000000001",
		interactive("14085551234", "Shall we call?"), template("14085551234", "spring_offer", "de"))
	// -message alone has no template to fall back on: Meta's error.
	code, _, errs = runPerm(t, "permission", "request", cfg, "1000000001", "14085551234", "-message", "Shall we call?")
	if code != 1 || !strings.Contains(errs, "Meta error 131047") {
		t.Fatalf("-message outside the window: exit %d, want 1 naming 131047: %s", code, errs)
	}
	g.take()

	g.set(func(recordedRequest) (int, string) {
		return 400, metaError(138017, "Call permission request can't be sent because a permanent permission already exists.")
	})
	code, _, errs = runPerm(t, "permission", "request", cfg, "1000000001", "14085551234")
	if code != 1 || !strings.Contains(errs, "Meta error 138017 (HTTP 400): Call permission request can't be sent") ||
		!strings.Contains(errs, "(details of 138017)") || !strings.Contains(errs, "fbtrace_id=AbCdEf") {
		t.Fatalf("Meta's refusal: exit %d, want 1 with the code, message, details and trace:\n%s", code, errs)
	}
	g.take()

	// status: the query, and Meta's error.
	g.set(func(recordedRequest) (int, string) { return 400, metaError(100, "Invalid parameter") })
	code, _, errs = runPerm(t, "permission", "status", cfg, "1000000001", "US.1234")
	if code != 1 || !strings.Contains(errs, "Meta error 100 (HTTP 400): Invalid parameter") {
		t.Fatalf("status refused: exit %d\n%s", code, errs)
	}
	if got := g.take(); len(got) != 1 || got[0].Method != "GET" || got[0].Path != "/v23.0/1000000001/call_permissions" ||
		got[0].Query != "recipient=US.1234" || got[0].Auth != "Bearer "+permToken {
		t.Fatalf("status request: %+v", got)
	}
}

// Bad usage and config exit 2 before anything is sent; a Graph API that
// does not answer exits 1.
func TestPermissionUsageErrors(t *testing.T) {
	g := &graphRecorder{answer: func(recordedRequest) (int, string) { return 200, messageOK }}
	srv := httptest.NewServer(g)
	defer srv.Close()
	cfg := writePermConfig(t, srv.URL)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("trunks: [oops"), 0o600)

	// The token is not set yet.
	code, _, errs := runPerm(t, "permission", "status", cfg, "1000000001", "+14085551234")
	if code != 2 || !strings.Contains(errs, "whatsapp.access_token") || !strings.Contains(errs, "WAGW_PERM_TOKEN") {
		t.Fatalf("no access token: exit %d, want 2 naming it: %s", code, errs)
	}
	t.Setenv("WAGW_PERM_TOKEN", permToken)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"permission"}, "usage:"},
		{[]string{"permission", "revoke", cfg, "1000000001", "+14085551234"}, `unknown command "revoke"`},
		{[]string{"permission", "status", cfg, "1000000001"}, "want CONFIG PHONE_NUMBER_ID USER, got 2"},
		{[]string{"permission", "status", cfg, "1000000001", "+14085551234", "extra"}, "got 4"},
		{[]string{"permission", "status", cfg, "12ab", "+14085551234"}, `phone number ID "12ab"`},
		{[]string{"permission", "status", cfg, "1000000001", "+0123"}, "not an E.164 number"},
		{[]string{"permission", "request", cfg, "1000000001", "bad user!"}, "neither an E.164 number nor a WhatsApp user id"},
		{[]string{"permission", "status", "-bogus", cfg, "1000000001", "+14085551234"}, "flag provided but not defined"},
		{[]string{"permission", "status", filepath.Join(t.TempDir(), "none.yaml"), "1000000001", "+14085551234"}, "no such file"},
		{[]string{"permission", "status", bad, "1000000001", "+14085551234"}, "config has 1 problem"},
		{[]string{"permission", "request", cfg, "1000000009", "+14085551234"}, "no outbound route of this number has one"},
		{[]string{"permission", "request", cfg, "1000000001", "+14085551234", "-language", "de"}, "-language goes with -template"},
		{[]string{"permission", "request", cfg, "1000000001", "+14085551234", "-message", strings.Repeat("x", 1025)}, "message too long"},
	} {
		code, out, errs := runPerm(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, want 2 and %q:\n%s%s", tc.args, code, tc.want, out, errs)
		}
	}
	if got := g.take(); len(got) != 0 {
		t.Fatalf("bad usage sent %d requests: %+v", len(got), got)
	}
	if code, out, _ := runPerm(t, "permission", "help"); code != 0 || !strings.Contains(out, "wagateway permission request CONFIG") {
		t.Errorf("permission help: exit %d\n%s", code, out)
	}
	if code, out, _ := runPerm(t, "help"); code != 0 || !strings.Contains(out, "wagateway permission status CONFIG PHONE_NUMBER_ID USER") {
		t.Errorf("help does not list the permission commands:\n%s", out)
	}

	// Nothing listens: a network error is exit 1.
	srv.Close()
	code, _, errs = runPerm(t, "permission", "status", cfg, "1000000001", "+14085551234")
	if code != 1 || !strings.Contains(errs, "wagateway permission status:") {
		t.Fatalf("Graph API unreachable: exit %d, want 1: %s", code, errs)
	}
}

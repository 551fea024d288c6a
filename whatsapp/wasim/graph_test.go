package wasim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func hasViolation(v []string, sub string) bool {
	for _, s := range v {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func graphErrorCode(t *testing.T, body map[string]any) float64 {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok || e["message"] == nil || e["type"] == nil || e["fbtrace_id"] == nil {
		t.Fatalf("not a Graph error object: %v", body)
	}
	code, _ := e["code"].(float64)
	return code
}

// The Graph endpoint's rules, one by one, on one call.
func TestGraphRules(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, offerOf(hooks.next(t, "connect", call.ID(), 5*time.Second)))
	id := call.ID()

	// Bearer: wrong and missing → 401, OAuthException 190, blamed on the call.
	for _, tok := range []string{"wrong-token", ""} {
		code, body := graphPost(t, sim, tok, action(id, "pre_accept", p.answer))
		if code != http.StatusUnauthorized || graphErrorCode(t, body) != 190 {
			t.Errorf("token %q: HTTP %d %v, want 401 code 190", tok, code, body)
		}
		if e := body["error"].(map[string]any); e["type"] != "OAuthException" {
			t.Errorf("error type %v", e["type"])
		}
	}
	// Bad bodies → 400 Graph error.
	bad := []any{
		`{"messaging_product":"whatsapp","call_id":`, // not JSON
		map[string]any{"call_id": id, "action": "accept", "session": map[string]any{"sdp_type": "answer", "sdp": p.answer}},
		map[string]any{"messaging_product": "whatsapp", "action": "accept"},
		action(id, "answer", ""),
		action(id, "pre_accept", ""), // no session
		map[string]any{"messaging_product": "whatsapp", "call_id": id, "action": "accept", "session": map[string]any{"sdp_type": "offer", "sdp": p.answer}},
	}
	for i, b := range bad {
		if code, body := graphPost(t, sim, testToken, b); code != 400 || graphErrorCode(t, body) != 100 {
			t.Errorf("bad body %d: HTTP %d %v, want 400 code 100", i, code, body)
		}
	}
	// Unknown call id → 400, a simulator-level violation.
	if code, _ := graphPost(t, sim, testToken, action("wacid.nope", "pre_accept", p.answer)); code != 400 {
		t.Errorf("unknown call: HTTP %d", code)
	}
	if !hasViolation(sim.Violations(), "unknown call id") {
		t.Errorf("sim violations %q lack the unknown call id", sim.Violations())
	}
	// Another phone number id or path → 400; GET → 400.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v23.0/999/calls", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	sim.serveGraph(rec, req)
	if rec.Code != 400 {
		t.Errorf("wrong phone number id: HTTP %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodGet, "/v23.0/"+testPhoneID+"/calls", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	sim.serveGraph(rec, req)
	if rec.Code != 400 {
		t.Errorf("GET: HTTP %d", rec.Code)
	}
	if call.State() != StateOffered {
		t.Fatalf("state %s after refused requests", call.State())
	}

	// pre_accept, then accept with another SDP → refused, violation; the
	// call stays pre-accepted and the right accept still works.
	if code, _ := graphPost(t, sim, testToken, action(id, "pre_accept", p.answer)); code != 200 {
		t.Fatalf("pre_accept: %d", code)
	}
	other := strings.Replace(p.answer, "o=- ", "o=- 1", 1)
	if code, body := graphPost(t, sim, testToken, action(id, "accept", other)); code != 400 || graphErrorCode(t, body) != 100 {
		t.Errorf("accept with another SDP: HTTP %d %v", code, body)
	}
	if call.State() != StatePreAccepted {
		t.Fatalf("state %s after the refused accept", call.State())
	}
	// The same SDP with LF line ends is the same SDP.
	if code, _ := graphPost(t, sim, testToken, action(id, "accept", strings.ReplaceAll(p.answer, "\r\n", "\n"))); code != 200 {
		t.Fatalf("accept: %d", code)
	}
	p.sendTone(600, 0, 0)
	if code, _ := graphPost(t, sim, testToken, action(id, "reject", "")); code != 400 {
		t.Errorf("reject after accept: HTTP %d, want 400", code)
	}
	if code, _ := graphPost(t, sim, testToken, action(id, "accept", p.answer)); code != 400 {
		t.Errorf("second accept: HTTP %d, want 400", code)
	}
	time.Sleep(300 * time.Millisecond)
	if code, _ := graphPost(t, sim, testToken, action(id, "terminate", "")); code != 200 {
		t.Fatalf("terminate: %d", code)
	}
	rep := waitReport(t, call, 5*time.Second)
	term := hooks.next(t, "terminate", id, 5*time.Second)
	if term.call["status"] != "COMPLETED" || term.call["duration"] == nil {
		t.Errorf("terminate webhook after business terminate: %s", term.raw)
	}
	if rep.Outcome != OutcomeTerminatedByBusiness {
		t.Errorf("outcome %s", rep.Outcome)
	}
	// Anything after the end is refused and blamed, terminate included
	// when the business itself ended the call.
	if code, _ := graphPost(t, sim, testToken, action(id, "terminate", "")); code != 400 {
		t.Errorf("terminate after end: HTTP %d", code)
	}
	rep, _ = call.Wait(context.Background())
	for _, want := range []string{
		"bearer", "not the calls JSON", "messaging_product", "call_id missing", `action "answer"`,
		"pre_accept without a session", `sdp_type "offer"`, "phone number id", "GET",
		"accept SDP differs", "reject after accept", "accept repeated", "terminate after the call ended",
	} {
		if !hasViolation(rep.Violations, want) {
			t.Errorf("no violation about %q in %q", want, rep.Violations)
		}
	}
	if hasViolation(rep.Violations, "before accept") || hasViolation(rep.Violations, "sdp:") {
		t.Errorf("unexpected violations: %q", rep.Violations)
	}
	if got := strings.Join(rep.ActionsReceived, ","); !strings.HasSuffix(got, "pre_accept,accept,accept,reject,accept,terminate,terminate") {
		t.Errorf("actions %s", got)
	}
}

// reject ends a call before accept with a FAILED terminate; terminate before
// any pre_accept/accept is refused (reject is the way).
func TestRejectAndEarlyTerminate(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hooks.next(t, "connect", call.ID(), 5*time.Second)
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "terminate", "")); code != 400 {
		t.Errorf("terminate before pre_accept: HTTP %d", code)
	}
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "reject", "")); code != 200 {
		t.Fatalf("reject: HTTP %d", code)
	}
	term := hooks.next(t, "terminate", call.ID(), 5*time.Second)
	if term.call["status"] != "FAILED" || term.call["errors"] != nil || term.call["start_time"] != nil {
		t.Errorf("terminate after reject: %s", term.raw)
	}
	rep := waitReport(t, call, 5*time.Second)
	if rep.Outcome != OutcomeRejected || len(rep.Violations) != 1 || !hasViolation(rep.Violations, "use reject") {
		t.Errorf("outcome %s violations %q", rep.Outcome, rep.Violations)
	}
}

// The answer checks: DTLS role and fingerprints.
func TestCheckAnswer(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, offerOf(hooks.next(t, "connect", call.ID(), 5*time.Second)))
	answer := normalizeSDP(p.answer)
	if v := checkAnswer(answer); len(v) != 0 {
		t.Fatalf("a good answer breaks %q", v)
	}
	passive := strings.Replace(answer, "a=setup:active", "a=setup:passive", 1)
	if v := checkAnswer(passive); len(v) != 1 || !strings.Contains(v[0], "setup:passive") {
		t.Errorf("setup:passive: %q", v)
	}
	fp := answer[strings.Index(answer, "a=fingerprint:"):]
	fp = fp[:strings.Index(fp, "\r\n")+2]
	two := strings.Replace(answer, fp, fp+strings.Replace(fp, "sha-256", "sha-1", 1), 1)
	if v := checkAnswer(two); len(v) != 1 || !strings.Contains(v[0], "fingerprint") {
		t.Errorf("two fingerprints: %q", v)
	}
	noCand := strings.Join(filterLines(answer, "a=candidate:"), "\r\n")
	if v := checkAnswer(noCand); !hasViolation(v, "no a=candidate") {
		t.Errorf("no candidates: %q", v)
	}
	// Through the endpoint: the violations land on the call.
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "pre_accept", passive)); code != 200 {
		t.Fatalf("pre_accept passive: %d", code)
	}
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	rep, _ := call.Wait(context.Background())
	if !hasViolation(rep.Violations, "setup:passive") || rep.Outcome != OutcomeCancelledByUser {
		t.Errorf("outcome %s violations %q", rep.Outcome, rep.Violations)
	}
	if err := call.Hangup(); err == nil {
		t.Errorf("a second hangup succeeded")
	}
}

func filterLines(sdp, prefix string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\r\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

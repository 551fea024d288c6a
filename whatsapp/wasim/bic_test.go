package wasim

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// Without the user's permission (or with an unknown user) connect fails
// 138006 (HTTP 401); call_permissions says no_permission, a request may be
// sent and a call may not.
func TestBICNoPermission(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	setUser(t, sim, User{WaID: "15551230001", BSUID: "US.1001"})
	biz := newOfferer(t)

	for _, to := range []string{"15551230001", "15559999999"} {
		code, body := graphDo(t, sim, http.MethodPost, "calls", connectBody(to, biz.offer, ""))
		wantGraphError(t, "connect to "+to, code, body, http.StatusUnauthorized, 138006)
	}
	for _, q := range []string{"user_wa_id=%2B1-555-123-0001", "recipient=US.1001"} {
		code, body := graphDo(t, sim, http.MethodGet, "call_permissions?"+q, nil)
		perm, _ := body["permission"].(map[string]any)
		actions, _ := body["actions"].([]any)
		if code != 200 || perm["status"] != "no_permission" || perm["expiration_time"] != nil || len(actions) != 2 {
			t.Fatalf("%s: HTTP %d %v", q, code, body)
		}
		req, call := actions[0].(map[string]any), actions[1].(map[string]any)
		if req["action_name"] != "send_call_permission_request" || req["can_perform_action"] != true ||
			call["action_name"] != "start_call" || call["can_perform_action"] != false {
			t.Errorf("%s: actions %v", q, actions)
		}
		limits, _ := req["limits"].([]any)
		if len(limits) != 2 || limits[0].(map[string]any)["time_period"] != "PT24H" || limits[1].(map[string]any)["time_period"] != "P7D" ||
			limits[0].(map[string]any)["limit_expiration_time"] != nil {
			t.Errorf("%s: request limits %v", q, limits)
		}
	}
	if st, ok := sim.UserState("15551230001"); !ok || st.PermissionChecks != 2 || st.CallsPlaced != 0 || st.ConnectRequests != 1 || st.Permission != "no_permission" {
		t.Errorf("user state %+v", st)
	}
	if !hooks.quiet(200*time.Millisecond) || len(sim.Violations()) != 0 {
		t.Errorf("webhooks or violations after refused requests: %v", sim.Violations())
	}
}

// The whole happy path: a permission request the user accepts (a signed
// messages webhook), then a call: Meta's answer in the connect webhook,
// RINGING, ACCEPTED, media both ways checked by frequency, the user
// hanging up, a terminate webhook with times and the opaque data.
func TestBICPermissionThenCall(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	const wa = "15551230002"
	setUser(t, sim, User{WaID: wa, BSUID: "US.1002", ProfileName: "Ada", ReplyToRequest: ReplyAccept, ReplyAfter: 100 * time.Millisecond,
		Answer: AnswerAccept, RingingAfter: 100 * time.Millisecond, AnswerAfter: 300 * time.Millisecond,
		TalkFor: 2 * time.Second, ToneHz: 1000, KeepAudio: true})

	code, body := graphDo(t, sim, http.MethodPost, "messages", permissionRequest(wa))
	msgs, _ := body["messages"].([]any)
	if code != 200 || len(msgs) != 1 {
		t.Fatalf("permission request: HTTP %d %v", code, body)
	}
	wamid := str(msgs[0].(map[string]any), "id")
	reply := hooks.expect(t, 5*time.Second, "permission_reply")[0]
	r := reply.msg["interactive"].(map[string]any)["call_permission_reply"].(map[string]any)
	ctx, _ := reply.msg["context"].(map[string]any)
	exp, _ := strconv.ParseInt(str(r, "expiration_timestamp"), 10, 64)
	if r["response"] != "accept" || r["is_permanent"] != false || r["response_source"] != "user_action" || ctx["id"] != wamid ||
		reply.msg["from"] != wa || reply.msg["from_user_id"] != "US.1002" || math.Abs(float64(exp-time.Now().Add(temporaryPermissionTTL).Unix())) > 5 {
		t.Errorf("permission reply: %s", reply.raw)
	}
	code, body = graphDo(t, sim, http.MethodGet, "call_permissions?user_wa_id="+wa, nil)
	perm := body["permission"].(map[string]any)
	if perm["status"] != "temporary" || int64(perm["expiration_time"].(float64)) != exp ||
		body["actions"].([]any)[0].(map[string]any)["can_perform_action"] != false {
		t.Errorf("permissions after the reply: %v", body)
	}
	code, body = graphDo(t, sim, http.MethodPost, "messages", permissionRequest(wa))
	if d := wantGraphError(t, "second request in 24 h", code, body, 400, 138009); !strings.Contains(d, "next is allowed") {
		t.Errorf("138009 details %q", d)
	}

	biz := newOfferer(t)
	id := connectCall(t, sim, "+"+wa, biz.offer, "biz-7")
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call, err := sim.BICCall(wctx, wa)
	if err != nil || call.ID() != id {
		t.Fatalf("BICCall: %v", err)
	}
	evs := hooks.expect(t, 5*time.Second, "connect", "status:RINGING", "status:ACCEPTED")
	answer := answerOf(evs[0])
	if answer != call.AnswerSDP() || evs[0].call["to"] != wa || evs[0].call["to_user_id"] != "US.1002" || evs[0].call["biz_opaque_callback_data"] != "biz-7" {
		t.Errorf("connect webhook: %s", evs[0].raw)
	}
	for _, want := range []string{"\r\na=ice-lite\r\n", "\r\na=setup:active\r\n", " 127.0.0.1 ", "typ host", "a=rtpmap:111 opus/48000/2", "a=rtpmap:126 telephone-event/8000"} {
		if !strings.Contains(answer, want) {
			t.Errorf("Meta's answer lacks %q:\n%s", want, answer)
		}
	}
	if evs[1].status["recipient_id"] != wa || evs[2].status["biz_opaque_callback_data"] != "biz-7" {
		t.Errorf("statuses: %s / %s", evs[1].raw, evs[2].raw)
	}
	biz.setAnswer(answer)
	biz.waitUp(5 * time.Second)
	biz.sendTone(600, 0, 0)

	rep := waitBIC(t, sim, id, 15*time.Second)
	t.Logf("\n%s", rep)
	term := hooks.expect(t, 5*time.Second, "terminate")[0]
	if term.call["status"] != "COMPLETED" || term.call["start_time"] == nil || term.call["duration"] == nil ||
		term.call["biz_opaque_callback_data"] != "biz-7" || term.call["to"] != wa {
		t.Errorf("terminate: %s", term.raw)
	}
	if rep.Outcome != OutcomeCompletedByUser || len(rep.Violations) != 0 || rep.Direction != directionBIC || rep.User != wa {
		t.Errorf("outcome %s, violations %v", rep.Outcome, rep.Violations)
	}
	if got := strings.Join(rep.WebhooksSent, ","); got != "connect,status:RINGING,status:ACCEPTED,terminate" {
		t.Errorf("webhooks %s", got)
	}
	if math.Abs(rep.ReceivedFreqHz-600) > 5 || rep.ReceivedPurity < 0.8 || rep.SSRCsReceived != 1 || rep.SeqGaps != 0 {
		t.Errorf("received %.0f Hz purity %.2f, %d SSRCs, %d gaps", rep.ReceivedFreqHz, rep.ReceivedPurity, rep.SSRCsReceived, rep.SeqGaps)
	}
	if n := len(rep.ReceivedPCM); n < 16000 || float64(n)/16000 != rep.ReceivedSeconds {
		t.Errorf("kept %d samples for %.2f s", n, rep.ReceivedSeconds)
	} else if f, _, _ := analyse(rep.ReceivedPCM, 16000); math.Abs(f-600) > 5 {
		t.Errorf("kept audio at %.0f Hz", f)
	}
	if rep.PermissionChecks != 1 || rep.PermissionRequests != 1 || rep.BizOpaqueCallbackData != "biz-7" ||
		rep.RingingAt.IsZero() || rep.MediaUpAt.IsZero() || rep.AcceptAt.Before(rep.RingingAt) {
		t.Errorf("report fields:\n%s", rep)
	}
	pcm, n := biz.received()
	if f, purity, _ := analyse(pcm, 16000); n < 50 || math.Abs(f-1000) > 5 || purity < 0.8 {
		t.Errorf("the business heard %d packets, %.0f Hz purity %.2f; want the user's 1000 Hz", n, f, purity)
	}
	if st, _ := sim.UserState(wa); st.ConnectedCalls24h != 1 || st.CallsPlaced != 1 || st.Permission != "temporary" {
		t.Errorf("user state %+v", st)
	}
	// A connected call resets the request limits.
	if code, body := graphDo(t, sim, http.MethodPost, "messages", permissionRequest(wa)); code != 200 {
		t.Errorf("request after a connected call: HTTP %d %v", code, body)
	}
	// After the end, terminate is refused without blame (the user hung up).
	if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 400 {
		t.Errorf("terminate after the end: HTTP %d", code)
	}
}

// The user declines: RINGING, REJECTED, then terminate FAILED without
// times. Four calls in a row the user does not answer revoke the
// permission, reported by a call_permission_reply "reject", "automatic".
func TestBICRejectedAndUnanswered(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, func(c *Config) { c.RingTimeout = 400 * time.Millisecond })
	setUser(t, sim, User{WaID: "15551230003", Permission: PermissionTemporary, Answer: AnswerReject, AnswerAfter: 100 * time.Millisecond})
	biz := newOfferer(t)

	id := connectCall(t, sim, "15551230003", biz.offer, "")
	evs := hooks.expect(t, 5*time.Second, "connect", "status:RINGING", "status:REJECTED", "terminate")
	if evs[3].call["status"] != "FAILED" || evs[3].call["start_time"] != nil || evs[3].call["duration"] != nil {
		t.Errorf("terminate: %s", evs[3].raw)
	}
	rep := waitBIC(t, sim, id, 5*time.Second)
	if rep.Outcome != OutcomeRejectedByUser || rep.Answered() || len(rep.Violations) != 0 {
		t.Errorf("report:\n%s", rep)
	}

	const wa = "15551230004"
	setUser(t, sim, User{WaID: wa, Permission: PermissionPermanent, Answer: AnswerNone})
	for i := 1; i <= unansweredToRevoke; i++ {
		start := time.Now()
		id := connectCall(t, sim, wa, biz.offer, "")
		hooks.expect(t, 5*time.Second, "connect", "status:RINGING", "terminate")
		rep := waitBIC(t, sim, id, 5*time.Second)
		if rep.Outcome != OutcomeNotAnswered || time.Since(start) < 400*time.Millisecond {
			t.Fatalf("call %d: outcome %s after %s", i, rep.Outcome, time.Since(start))
		}
		if st, _ := sim.UserState(wa); i < unansweredToRevoke && st.UnansweredInRow != i {
			t.Errorf("after %d unanswered calls: %+v", i, st)
		}
	}
	revoked := hooks.expect(t, 5*time.Second, "permission_reply")[0]
	r := revoked.msg["interactive"].(map[string]any)["call_permission_reply"].(map[string]any)
	if r["response"] != "reject" || r["response_source"] != "automatic" || revoked.msg["context"] != nil {
		t.Errorf("revocation: %s", revoked.raw)
	}
	code, body := graphDo(t, sim, http.MethodPost, "calls", connectBody(wa, biz.offer, ""))
	wantGraphError(t, "connect after the revocation", code, body, http.StatusUnauthorized, 138006)
}

// Meta's limits: permission requests 1 in 24 h and 2 in 7 days (138009),
// none while a permanent permission exists (138017), 100 answered calls a
// day (here 1: 138012), one call at a time (138003).
func TestBICLimits(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, func(c *Config) { c.MaxConnectedCallsPerDay = 1 })
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	sim.setClock(clock.now)
	setUser(t, sim, User{WaID: "15551230005", ReplyToRequest: ReplyNone})
	setUser(t, sim, User{WaID: "15551230006", Permission: PermissionPermanent})
	setUser(t, sim, User{WaID: "15551230007", Permission: PermissionTemporary, Answer: AnswerAccept})

	request := func(to string) (int, map[string]any) {
		return graphDo(t, sim, http.MethodPost, "messages", permissionRequest(to))
	}
	if code, body := request("15551230005"); code != 200 {
		t.Fatalf("first request: %d %v", code, body)
	}
	code, body := request("15551230005")
	wantGraphError(t, "second request at once", code, body, 400, 138009)
	clock.add(25 * time.Hour)
	if code, body := request("15551230005"); code != 200 {
		t.Fatalf("request a day later: %d %v", code, body)
	}
	clock.add(25 * time.Hour)
	code, body = request("15551230005")
	wantGraphError(t, "third request in 7 days", code, body, 400, 138009)
	_, body = graphDo(t, sim, http.MethodGet, "call_permissions?user_wa_id=15551230005", nil)
	week := body["actions"].([]any)[0].(map[string]any)["limits"].([]any)[1].(map[string]any)
	if week["current_usage"] != 2.0 || week["limit_expiration_time"] != float64(clock.now().Add(-50*time.Hour).Add(7*24*time.Hour).Unix()) {
		t.Errorf("7-day limit %v", week)
	}
	code, body = request("15551230006")
	wantGraphError(t, "request with a permanent permission", code, body, 400, 138017)
	if _, body := graphDo(t, sim, http.MethodGet, "call_permissions?user_wa_id=15551230006", nil); body["permission"].(map[string]any)["status"] != "permanent" ||
		body["permission"].(map[string]any)["expiration_time"] != nil {
		t.Errorf("permanent permission: %v", body)
	}

	biz := newOfferer(t)
	id := connectCall(t, sim, "15551230007", biz.offer, "")
	code, body = graphDo(t, sim, http.MethodPost, "calls", connectBody("15551230007", biz.offer, ""))
	wantGraphError(t, "second call while the first is live", code, body, 400, 138003)
	hooks.waitKind(t, "status:ACCEPTED", 5*time.Second)
	if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 200 {
		t.Fatalf("terminate: %d", code)
	}
	term := hooks.waitKind(t, "terminate", 5*time.Second)
	if term.call["status"] != "COMPLETED" || term.call["start_time"] == nil {
		t.Errorf("terminate after the answer: %s", term.raw)
	}
	if rep := waitBIC(t, sim, id, 5*time.Second); rep.Outcome != OutcomeTerminatedByBusiness || len(rep.Violations) != 0 {
		t.Errorf("report:\n%s", rep)
	}
	code, body = graphDo(t, sim, http.MethodPost, "calls", connectBody("15551230007", biz.offer, ""))
	if d := wantGraphError(t, "a second answered call in 24 h", code, body, 400, 138012); !strings.Contains(d, "next call is allowed at") {
		t.Errorf("138012 details %q", d)
	}
	clock.add(25 * time.Hour)
	id = connectCall(t, sim, "15551230007", biz.offer, "")
	if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 200 {
		t.Fatalf("terminate: %d", code)
	}
	waitBIC(t, sim, id, 5*time.Second)
	// Four connects to the user, two of them refused (138003, 138012).
	if st, _ := sim.UserState("15551230007"); st.ConnectRequests != 4 || st.CallsPlaced != 2 {
		t.Errorf("user state %+v, want 4 connects, 2 calls placed", st)
	}
}

// GET call_permissions takes 5 requests in a one-second window per number:
// the sixth is error 613, HTTP 429.
func TestBICPermissionRateLimit(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	sim.setClock(clock.now)
	for i := 0; i < 5; i++ {
		if code, body := graphDo(t, sim, http.MethodGet, "call_permissions?user_wa_id=1555123000"+strconv.Itoa(i), nil); code != 200 {
			t.Fatalf("request %d: %d %v", i+1, code, body)
		}
	}
	code, body := graphDo(t, sim, http.MethodGet, "call_permissions?user_wa_id=15551230000", nil)
	wantGraphError(t, "sixth request in a second", code, body, http.StatusTooManyRequests, 613)
	clock.add(1100 * time.Millisecond)
	if code, _ := graphDo(t, sim, http.MethodGet, "call_permissions?user_wa_id=15551230000", nil); code != 200 {
		t.Errorf("a second later: HTTP %d", code)
	}
	if len(sim.Violations()) != 0 {
		t.Errorf("violations %v", sim.Violations())
	}
}

// A connect body that breaks Meta's rules is refused with error 100 and the
// details; actions other than terminate on a business-initiated call are
// refused and blamed; an offer without candidates is taken but breaks a rule.
func TestBICConnectValidation(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	const wa = "15551230008"
	setUser(t, sim, User{WaID: wa, Permission: PermissionTemporary, Answer: AnswerNone})
	biz := newOfferer(t)
	noOpus := strings.NewReplacer("opus/48000/2", "G722/8000").Replace(biz.offer)
	bad := map[string]map[string]any{
		"no to":           {"messaging_product": "whatsapp", "action": "connect", "session": map[string]any{"sdp_type": "offer", "sdp": biz.offer}},
		"to not a number": connectBody("call-me", biz.offer, ""),
		"no session":      {"messaging_product": "whatsapp", "to": wa, "action": "connect"},
		"sdp_type answer": {"messaging_product": "whatsapp", "to": wa, "action": "connect", "session": map[string]any{"sdp_type": "answer", "sdp": biz.offer}},
		"unparseable sdp": connectBody(wa, "hello", ""),
		"no opus":         connectBody(wa, noOpus, ""),
		"opaque too long": connectBody(wa, biz.offer, strings.Repeat("x", 513)),
		"no product":      {"to": wa, "action": "connect", "session": map[string]any{"sdp_type": "offer", "sdp": biz.offer}},
		"unknown action":  {"messaging_product": "whatsapp", "to": wa, "action": "dial"},
		"no sdp":          {"messaging_product": "whatsapp", "to": wa, "action": "connect", "session": map[string]any{"sdp_type": "offer"}},
	}
	for name, b := range bad {
		code, body := graphDo(t, sim, http.MethodPost, "calls", b)
		if d := wantGraphError(t, name, code, body, 400, 100); d == "" {
			t.Errorf("%s: no error_data.details", name)
		}
	}
	if v := sim.Violations(); len(v) != len(bad) {
		t.Errorf("%d violations for %d bad requests: %v", len(v), len(bad), v)
	}
	if st, _ := sim.UserState(wa); st.CallsPlaced != 0 {
		t.Errorf("bad connects placed calls: %+v", st)
	}

	var lines []string
	for _, l := range strings.Split(biz.offer, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			lines = append(lines, l)
		}
	}
	id := connectCall(t, sim, wa, strings.Join(lines, "\r\n"), "")
	hooks.waitKind(t, "status:RINGING", 5*time.Second)
	for _, act := range []string{"pre_accept", "accept", "reject"} {
		a := action(id, act, "")
		if act != "reject" {
			a["session"] = map[string]any{"sdp_type": "answer", "sdp": biz.offer}
		}
		if code, _ := graphDo(t, sim, http.MethodPost, "calls", a); code != 400 {
			t.Errorf("%s on a business-initiated call: HTTP %d", act, code)
		}
	}
	if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 200 {
		t.Fatalf("terminate: HTTP %d", code)
	}
	term := hooks.waitKind(t, "terminate", 5*time.Second)
	if term.call["status"] != "FAILED" || term.call["start_time"] != nil {
		t.Errorf("terminate while ringing: %s", term.raw)
	}
	rep := waitBIC(t, sim, id, 5*time.Second)
	if rep.Outcome != OutcomeTerminatedByBusiness || !hasViolation(rep.Violations, "no a=candidate") ||
		!hasViolation(rep.Violations, "pre_accept on a business-initiated call") || len(rep.Violations) != 4 ||
		strings.Join(rep.ActionsReceived, ",") != "pre_accept,accept,reject,terminate" {
		t.Errorf("report:\n%s", rep)
	}
}

// Meta's webhooks do not always come in the documented order: ACCEPTED
// after media is up, statuses before the connect that carries the answer,
// a terminate before a stale connect.
func TestBICWebhookOrders(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	biz := func() *peer { return newOfferer(t) }

	t.Run(OrderAcceptedBeforeConnect, func(t *testing.T) {
		const wa = "15551230010"
		setUser(t, sim, User{WaID: wa, Permission: PermissionTemporary, AnswerAfter: 100 * time.Millisecond, TalkFor: time.Second,
			ToneHz: 700, WebhookOrder: OrderAcceptedBeforeConnect})
		p := biz()
		id := connectCall(t, sim, wa, p.offer, "")
		evs := hooks.expect(t, 5*time.Second, "status:RINGING", "status:ACCEPTED", "connect")
		p.setAnswer(answerOf(evs[2]))
		p.waitUp(5 * time.Second)
		p.sendTone(500, 0, 0)
		rep := waitBIC(t, sim, id, 10*time.Second)
		hooks.expect(t, 5*time.Second, "terminate")
		if rep.Outcome != OutcomeCompletedByUser || len(rep.Violations) != 0 || math.Abs(rep.ReceivedFreqHz-500) > 5 {
			t.Errorf("report:\n%s", rep)
		}
	})
	t.Run(OrderAcceptedAfterMedia, func(t *testing.T) {
		const wa = "15551230011"
		setUser(t, sim, User{WaID: wa, Permission: PermissionTemporary, WebhookOrder: OrderAcceptedAfterMedia})
		p := biz()
		id := connectCall(t, sim, wa, p.offer, "")
		evs := hooks.expect(t, 5*time.Second, "connect", "status:RINGING")
		p.setAnswer(answerOf(evs[0]))
		p.waitUp(5 * time.Second)
		if !hooks.quiet(500 * time.Millisecond) {
			t.Fatal("ACCEPTED before the business sent any media")
		}
		sent := time.Now()
		p.sendTone(500, 0, 0)
		acc := hooks.expect(t, 5*time.Second, "status:ACCEPTED")[0]
		if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 200 {
			t.Fatalf("terminate: HTTP %d", code)
		}
		rep := waitBIC(t, sim, id, 10*time.Second)
		hooks.expect(t, 5*time.Second, "terminate")
		if acc.at.Before(sent) || rep.Outcome != OutcomeTerminatedByBusiness || len(rep.Violations) != 0 || rep.FirstMediaAt.After(acc.at) {
			t.Errorf("ACCEPTED at %s, media sent at %s; report:\n%s", acc.at, sent, rep)
		}
	})
	t.Run(OrderTerminateBeforeConnect, func(t *testing.T) {
		const wa = "15551230012"
		setUser(t, sim, User{WaID: wa, Permission: PermissionTemporary, WebhookOrder: OrderTerminateBeforeConnect})
		p := biz()
		id := connectCall(t, sim, wa, p.offer, "")
		evs := hooks.expect(t, 5*time.Second, "terminate", "connect")
		if evs[0].call["status"] != "FAILED" {
			t.Errorf("terminate: %s", evs[0].raw)
		}
		// The business terminates what it thinks it placed: refused, not blamed.
		if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 400 {
			t.Errorf("terminate of the ended call: HTTP %d", code)
		}
		rep := waitBIC(t, sim, id, 5*time.Second)
		if rep.Outcome != OutcomeRejectedByUser || len(rep.Violations) != 0 {
			t.Errorf("report:\n%s", rep)
		}
	})
}

// Meta's answer may take a=setup:passive: the business is then the DTLS
// client, and media flows both ways as with Meta's usual a=setup:active.
// The business's DTMF digit reaches the user on the offer's payload type.
func TestBICDTLSPassive(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	const wa = "15551230013"
	setUser(t, sim, User{WaID: wa, Permission: PermissionTemporary, TalkFor: 1500 * time.Millisecond, ToneHz: 800, DTLSRole: DTLSPassive})
	p := newOfferer(t)
	id := connectCall(t, sim, wa, p.offer, "")
	ev := hooks.expect(t, 5*time.Second, "connect")[0]
	if a := answerOf(ev); !strings.Contains(a, "\r\na=setup:passive\r\n") {
		t.Fatalf("answer without a=setup:passive:\n%s", a)
	}
	p.setAnswer(answerOf(ev))
	p.waitUp(5 * time.Second)
	p.sendTone(400, 0, 10)
	rep := waitBIC(t, sim, id, 10*time.Second)
	if rep.Outcome != OutcomeCompletedByUser || len(rep.Violations) != 0 || math.Abs(rep.ReceivedFreqHz-400) > 5 || rep.DigitsReceived != "5" {
		t.Errorf("report:\n%s", rep)
	}
	pcm, _ := p.received()
	if f, _, _ := analyse(pcm, 16000); math.Abs(f-800) > 5 {
		t.Errorf("the business heard %.0f Hz, want 800", f)
	}
}

func TestBICUserChecked(t *testing.T) {
	for _, u := range []User{{WaID: "12ab"}, {Permission: "maybe"}, {Answer: "later"}, {DTLSRole: "actpass"},
		{WebhookOrder: "random"}, {ToneHz: 10}, {TalkFor: -1}, {Digits: "x"}} {
		if err := normalizeUser(&u); err == nil {
			t.Errorf("user %+v accepted", u)
		}
	}
}

// An RTCP BYE ends nothing: Meta wants the Graph terminate too ("This must
// be done even if there is an RTCP BYE packet in the media path").
func TestBICByeWithoutTerminate(t *testing.T) {
	hooks := newBizHooks(t)
	sim := newBICSim(t, hooks, nil)
	sim.byeGrace.Store(int64(300 * time.Millisecond))
	const wa = "15551230014"
	setUser(t, sim, User{WaID: wa, Permission: PermissionTemporary})
	p := newOfferer(t)
	id := connectCall(t, sim, wa, p.offer, "")
	p.setAnswer(answerOf(hooks.expect(t, 5*time.Second, "connect")[0]))
	p.waitUp(5 * time.Second)
	p.sendTone(500, 0, 0)
	time.Sleep(300 * time.Millisecond)
	p.track.mu.Lock()
	ssrc := uint32(p.track.ssrc)
	p.track.mu.Unlock()
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.Goodbye{Sources: []uint32{ssrc}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if code, _ := graphDo(t, sim, http.MethodPost, "calls", action(id, "terminate", "")); code != 200 {
		t.Fatalf("terminate: HTTP %d", code)
	}
	rep := waitBIC(t, sim, id, 5*time.Second)
	if rep.Outcome != OutcomeTerminatedByBusiness || len(rep.Violations) != 1 || !hasViolation(rep.Violations, "RTCP BYE from the business but no Graph terminate") {
		t.Errorf("report:\n%s", rep)
	}
}

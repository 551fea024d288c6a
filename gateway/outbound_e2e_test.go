package gateway_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// Business-initiated calls end to end: sipp or baresip as the PBX dialling
// out, the simulator as Meta and the WhatsApp user.

const calledUser = "14085551234"

// outboundHarness is a gateway with one outbound route on trunk "pbx",
// whose address is the agent's (sipp's or baresip's) SIP port.
func outboundHarness(t *testing.T, agentAddr string, route gateway.OutboundRouteConfig) *opsHarness {
	t.Helper()
	route.Trunk = "pbx"
	if route.PhoneNumberID == "" {
		route.PhoneNumberID = testPhoneNumberID
	}
	return newOpsHarness(t, opsOptions{PBXAddr: agentAddr, Config: func(c *gateway.Config) {
		c.Outbound.Routes = []gateway.OutboundRouteConfig{route}
		c.ApplyDefaults()
	}})
}

// agentPort is a free UDP port on loopback for the dialling PBX: the trunk's
// address, which the gateway takes requests from.
func agentPort(t *testing.T) int {
	t.Helper()
	p, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dialAs runs a sipp UAC scenario from port (the trunk's address) to the
// gateway, dialling user; replace fills the scenario's placeholders.
func dialAs(t *testing.T, port int, gw *gateway.Gateway, scenario, user string, replace ...string) *sipp {
	t.Helper()
	return dialTo(t, port, gw.SIPAddr(), scenario, user, replace...)
}

// dialTo is dialAs toward the gateway's SIP address sipAddr.
func dialTo(t *testing.T, port int, sipAddr, scenario, user string, replace ...string) *sipp {
	t.Helper()
	bin := requirePeer(t, "sipp")
	tmpl, err := os.ReadFile(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, scenario)
	if err := os.WriteFile(path, []byte(strings.NewReplacer(replace...).Replace(string(tmpl))), 0o644); err != nil {
		t.Fatal(err)
	}
	mport, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	s := &sipp{Addr: "127.0.0.1:" + strconv.Itoa(port), MediaPort: mport, done: make(chan error, 1), msgTrace: filepath.Join(dir, "messages.log")}
	s.cmd = exec.Command(bin, "-sf", path, "-s", user, sipAddr,
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mi", "127.0.0.1", "-mp", strconv.Itoa(mport), "-rtp_echo",
		"-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", s.msgTrace)
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sipp: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// userCall waits for the gateway's call to the user and its report.
func userCall(t *testing.T, h *opsHarness, within time.Duration) *wasim.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := h.sim.BICCall(ctx, calledUser)
	if err != nil {
		t.Fatalf("no call reached the user: %v", err)
	}
	return waitReport(t, c, within)
}

// An agent calls a user who has granted permission: the user's phone
// rings (the agent hears 180), the user answers, both hear each other
// (sipp echoes the user's 1 kHz tone back), the user hangs up and the
// agent gets a BYE saying so.
func TestAgentCallsWhatsAppUser(t *testing.T) {
	port := agentPort(t)
	h := outboundHarness(t, "127.0.0.1:"+strconv.Itoa(port), gateway.OutboundRouteConfig{BizOpaqueHeader: "X-Ticket"})
	if err := h.sim.SetUser(wasim.User{WaID: calledUser, Permission: wasim.PermissionTemporary, AnswerAfter: time.Second,
		TalkFor: 4 * time.Second, ToneHz: 1000}); err != nil {
		t.Fatal(err)
	}
	agent := dialAs(t, port, h.gw, "agent_dials.xml", "+"+calledUser)
	r := userCall(t, h, 30*time.Second)
	if err := agent.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if math.Abs(r.ReceivedFreqHz-1000) > 20 || r.ReceivedLevelDBFS < -30 {
		t.Errorf("the user heard %.0f Hz at %.1f dBFS, want its 1 kHz tone back through the agent's phone", r.ReceivedFreqHz, r.ReceivedLevelDBFS)
	}
	if r.BizOpaqueCallbackData != "T-4711" {
		t.Errorf("biz_opaque_callback_data %q, want the agent's X-Ticket", r.BizOpaqueCallbackData)
	}
	rec := h.record(t, r.CallID)
	if rec.Direction != gateway.DirectionBusinessInitiated || rec.Outcome != gateway.OutcomeBridged || rec.HangupBy != "whatsapp_user" ||
		rec.Callee == nil || rec.Callee.Number != calledUser {
		t.Errorf("record %+v", rec)
	}
	waitNoActiveCalls(t, h.gw)
	m := h.scrape(t)
	if v := m.value(t, `wagateway_calls_total{direction="business_initiated",outcome="bridged",trunk="pbx"}`); v != 1 {
		t.Errorf("business-initiated bridged calls counted %v, want 1", v)
	}
	if v := m.value(t, `wagateway_calls_total{direction="user_initiated",outcome="bridged",trunk="pbx"}`); v != 0 {
		t.Errorf("user-initiated bridged calls counted %v, want 0", v)
	}
}

// Each way the agent's call is refused before or while the user's phone
// rings, and the SIP answer the agent gets (code and Q.850 cause).
func TestAgentCallRefusals(t *testing.T) {
	cases := []struct {
		name    string
		route   gateway.OutboundRouteConfig
		user    wasim.User
		code    string
		cause   string
		outcome string
	}{
		{"no permission", gateway.OutboundRouteConfig{}, wasim.User{Permission: wasim.PermissionNone},
			"403", "21", gateway.OutcomeNoPermission},
		{"permission requested", gateway.OutboundRouteConfig{Permission: gateway.PermissionRequest, PermissionMessage: "May we call you back?"},
			wasim.User{Permission: wasim.PermissionNone, ReplyToRequest: wasim.ReplyNone}, "403", "21", gateway.OutcomePermissionRequested},
		{"permission declined", gateway.OutboundRouteConfig{Permission: gateway.PermissionWait, PermissionMessage: "May we call you back?",
			PermissionWait: 10 * time.Second}, wasim.User{Permission: wasim.PermissionNone, ReplyToRequest: wasim.ReplyReject, ReplyAfter: 500 * time.Millisecond},
			"603", "21", gateway.OutcomePermissionDeclined},
		{"user declines", gateway.OutboundRouteConfig{}, wasim.User{Permission: wasim.PermissionTemporary, Answer: wasim.AnswerReject, AnswerAfter: time.Second},
			"603", "21", gateway.OutcomeUserDeclined},
		{"no answer", gateway.OutboundRouteConfig{RingTimeout: 5 * time.Second}, wasim.User{Permission: wasim.PermissionTemporary, Answer: wasim.AnswerNone},
			"480", "19", gateway.OutcomeNoAnswer},
		// Meta's terminate (FAILED, no error, no REJECTED) overtakes the
		// connect that carries its answer: the user did not pick up, the
		// stale answer is left alone.
		{"terminate before connect", gateway.OutboundRouteConfig{}, wasim.User{Permission: wasim.PermissionTemporary, Answer: wasim.AnswerReject,
			WebhookOrder: wasim.OrderTerminateBeforeConnect}, "480", "19", gateway.OutcomeNoAnswer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port := agentPort(t)
			h := outboundHarness(t, "127.0.0.1:"+strconv.Itoa(port), tc.route)
			tc.user.WaID = calledUser
			if err := h.sim.SetUser(tc.user); err != nil {
				t.Fatal(err)
			}
			agent := dialAs(t, port, h.gw, "agent_dials_refused.xml", calledUser, "EXPECTED_CODE", tc.code, "EXPECTED_CAUSE", tc.cause)
			if err := agent.wait(t, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			waitNoActiveCalls(t, h.gw)
			recs := readRecords(t, h.records)
			if len(recs) != 1 || recs[0].Outcome != tc.outcome || recs[0].Direction != gateway.DirectionBusinessInitiated {
				t.Errorf("records %+v, want one %s", recs, tc.outcome)
			}
			st, _ := h.sim.UserState(calledUser)
			if tc.name == "permission requested" && st.PermissionRequests != 1 {
				t.Errorf("the user got %d permission requests, want 1", st.PermissionRequests)
			}
		})
	}
}

// permission: wait: the agent's call rings while the user decides; the
// user accepts and the call goes through in the same dial.
func TestAgentCallWaitsForPermission(t *testing.T) {
	port := agentPort(t)
	h := outboundHarness(t, "127.0.0.1:"+strconv.Itoa(port), gateway.OutboundRouteConfig{Permission: gateway.PermissionWait,
		PermissionMessage: "May we call you back about your order?", PermissionWait: 20 * time.Second})
	if err := h.sim.SetUser(wasim.User{WaID: calledUser, Permission: wasim.PermissionNone, ReplyToRequest: wasim.ReplyAccept,
		ReplyAfter: time.Second, AnswerAfter: 500 * time.Millisecond, TalkFor: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	agent := dialAs(t, port, h.gw, "agent_dials.xml", calledUser)
	r := userCall(t, h, 40*time.Second)
	if err := agent.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) > 0 || r.PacketsReceived == 0 {
		t.Errorf("violations %v, %d packets to the user", r.Violations, r.PacketsReceived)
	}
	if rec := h.record(t, r.CallID); rec.Outcome != gateway.OutcomeBridged {
		t.Errorf("record outcome %s (%s)", rec.Outcome, rec.Reason)
	}
}

// The agent hangs up while the user's phone rings: 487 to the agent, and
// Meta gets a terminate.
func TestAgentCancelsWhileRinging(t *testing.T) {
	port := agentPort(t)
	h := outboundHarness(t, "127.0.0.1:"+strconv.Itoa(port), gateway.OutboundRouteConfig{})
	if err := h.sim.SetUser(wasim.User{WaID: calledUser, Permission: wasim.PermissionTemporary, Answer: wasim.AnswerNone}); err != nil {
		t.Fatal(err)
	}
	agent := dialAs(t, port, h.gw, "agent_dials_cancels.xml", calledUser)
	r := userCall(t, h, 30*time.Second)
	if err := agent.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := actions(r); got != "terminate" {
		t.Errorf("graph actions %q, want terminate", got)
	}
	if rec := h.record(t, r.CallID); rec.Outcome != gateway.OutcomeAgentCancelled || rec.HangupBy != "pbx" {
		t.Errorf("record %s by %s", rec.Outcome, rec.HangupBy)
	}
}

// Meta's webhooks in the orders Meta produces: ACCEPTED after the media,
// ACCEPTED before the connect that carries the answer; and the answer's
// DTLS role either way.
func TestAgentCallWebhookOrdersAndDTLSRoles(t *testing.T) {
	for _, tc := range []struct{ order, role string }{
		{wasim.OrderAcceptedAfterMedia, wasim.DTLSActive},
		{wasim.OrderAcceptedBeforeConnect, wasim.DTLSActive},
		{wasim.OrderNormal, wasim.DTLSPassive},
	} {
		t.Run(tc.order+"-"+tc.role, func(t *testing.T) {
			port := agentPort(t)
			h := outboundHarness(t, "127.0.0.1:"+strconv.Itoa(port), gateway.OutboundRouteConfig{})
			if err := h.sim.SetUser(wasim.User{WaID: calledUser, Permission: wasim.PermissionPermanent, AnswerAfter: 500 * time.Millisecond,
				TalkFor: 2 * time.Second, WebhookOrder: tc.order, DTLSRole: tc.role}); err != nil {
				t.Fatal(err)
			}
			agent := dialAs(t, port, h.gw, "agent_dials.xml", calledUser)
			r := userCall(t, h, 30*time.Second)
			if err := agent.wait(t, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			if len(r.Violations) > 0 || math.Abs(r.ReceivedFreqHz-1000) > 20 {
				t.Errorf("violations %v, the user heard %.0f Hz", r.Violations, r.ReceivedFreqHz)
			}
		})
	}
}

// A real phone (baresip) dials the user: each hears the other's tone
// (checked by frequency at both ends), and digits cross both ways: the
// user's reach the phone as RFC 4733 events, the phone's reach the user.
func TestAgentPhoneDialsBothWays(t *testing.T) {
	phone := startBaresip(t, 600)
	ctrl := phone.control(t)
	h := outboundHarness(t, phone.Addr, gateway.OutboundRouteConfig{})
	if err := h.sim.SetUser(wasim.User{WaID: calledUser, Permission: wasim.PermissionPermanent, AnswerAfter: 500 * time.Millisecond,
		TalkFor: 6 * time.Second, ToneHz: 1000, Digits: "159", DigitsAfter: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.send("dial", "sip:+"+calledUser+"@"+h.gw.SIPAddr()); err != nil {
		t.Fatal(err)
	}
	ctrl.waitEvent(t, "CALL_ESTABLISHED", 20*time.Second)
	time.Sleep(3 * time.Second)
	for _, d := range []string{"4", "#"} {
		if err := ctrl.send("sndcode", d); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	r := userCall(t, h, 30*time.Second)
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if math.Abs(r.ReceivedFreqHz-600) > 20 || r.ReceivedLevelDBFS < -35 {
		t.Errorf("the user heard %.0f Hz at %.1f dBFS, want the phone's 600 Hz", r.ReceivedFreqHz, r.ReceivedLevelDBFS)
	}
	if r.DigitsReceived != "4#" {
		t.Errorf("the user heard digits %q, want 4#", r.DigitsReceived)
	}
	if got := ctrl.heardDigits(); got != "159" {
		t.Errorf("the phone heard digits %q, want 159", got)
	}
	ctrl.waitEvent(t, "CALL_CLOSED", 10*time.Second)
	pcm, rate := phone.heard(t)
	if f, purity := audio.DominantFrequency(pcm[len(pcm)/4:len(pcm)/2], rate, 100, 3500, 10); math.Abs(f-1000) > 20 || purity < 0.3 {
		t.Errorf("the phone heard %.0f Hz (purity %.2f), want the user's 1 kHz", f, purity)
	}
	if rec := h.record(t, r.CallID); rec.Outcome != gateway.OutcomeBridged || rec.Agent != "agents" {
		t.Errorf("record %s, agent %q", rec.Outcome, rec.Agent)
	}
}

// A webhook the gateway does not consume (a chat message) is forwarded to
// the business's backend byte for byte, its Meta signature still valid.
func TestUnconsumedWebhookForwarded(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer backend.Close()
	h := newOpsHarness(t, opsOptions{PBXAddr: "127.0.0.1:5999", Config: func(c *gateway.Config) {
		c.Outbound.ForwardWebhooksURL = backend.URL + "/whatsapp"
	}})
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1000000000000001","changes":[{"field":"messages","value":` +
		`{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000001","phone_number_id":"1000000001"},` +
		`"contacts":[{"profile":{"name":"Ada"},"wa_id":"14085551234"}],"messages":[{"from":"14085551234","id":"wamid.TEXT1",` +
		`"timestamp":"1796180000","type":"text","text":{"body":"Hi, can you call me back?"}}]}}]}]}`)
	mac := hmac.New(sha256.New, []byte(testSecrets.AppSecret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	req, _ := http.NewRequest(http.MethodPost, h.gw.WebhookURL(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", res.StatusCode)
	}
	select {
	case r := <-got:
		b := <-bodies
		if !bytes.Equal(b, body) {
			t.Errorf("forwarded body differs:\n%s", b)
		}
		if r.Header.Get("X-Hub-Signature-256") != sig || r.URL.Path != "/whatsapp" {
			t.Errorf("forwarded to %s with signature %q", r.URL.Path, r.Header.Get("X-Hub-Signature-256"))
		}
		check := hmac.New(sha256.New, []byte(testSecrets.AppSecret))
		check.Write(b)
		if "sha256="+hex.EncodeToString(check.Sum(nil)) != r.Header.Get("X-Hub-Signature-256") {
			t.Error("the forwarded signature does not verify")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message webhook was not forwarded")
	}
}

package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// A bridged call moves the metrics (scraped over HTTP), shows up live in
// the admin API, and leaves a call record with every phase and its media.
func TestOpsBridgedCallMetricsRecordAndAdmin(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo.xml", 1, 40*time.Second)
	secrets := testSecrets
	secrets.AdminToken = "admin-token-for-tests"
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, Secrets: &secrets, Config: func(c *gateway.Config) {
		c.Admin = gateway.AdminConfig{Listen: "127.0.0.1:0", Token: gateway.SecretRef{Env: "UNUSED_IN_TEST"}}
	}})
	before := h.scrape(t)
	if v := before.value(t, "wagateway_active_calls"); v != 0 {
		t.Fatalf("active calls before any call: %v", v)
	}

	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 3 * time.Second})
	waitFor(t, 10*time.Second, "the call to be accepted", func() bool { return c.State() == wasim.StateAccepted })
	time.Sleep(500 * time.Millisecond) // media flows
	mid := h.scrape(t)
	if v := mid.value(t, "wagateway_active_calls"); v != 1 {
		t.Errorf("active calls during the call: %v, want 1", v)
	}
	if v := mid.value(t, `wagateway_active_bridged_calls{codec_path="opus-pcmu"}`); v != 1 {
		t.Errorf("active bridged opus-pcmu calls: %v, want 1", v)
	}

	// The admin API: refused without the token, lists the call with live stats.
	admin := "http://" + h.gw.AdminAddr()
	if code, _ := httpGet(t, admin+"/admin/calls", ""); code != http.StatusUnauthorized {
		t.Errorf("admin without token: HTTP %d, want 401", code)
	}
	if code, _ := httpGet(t, admin+"/admin/calls", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("admin with a wrong token: HTTP %d, want 401", code)
	}
	code, body := httpGet(t, admin+"/admin/calls", secrets.AdminToken)
	if code != http.StatusOK {
		t.Fatalf("admin list: HTTP %d %s", code, body)
	}
	var list struct {
		Calls []struct {
			CallID string               `json:"call_id"`
			State  string               `json:"state"`
			Media  *gateway.RecordMedia `json:"media"`
			MOS    float64              `json:"mos"`
		} `json:"calls"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Calls) != 1 || list.Calls[0].CallID != c.ID() || list.Calls[0].State != "bridged" ||
		list.Calls[0].Media == nil || list.Calls[0].Media.WhatsAppToSIP.PacketsIn == 0 {
		t.Errorf("admin list: %s", body)
	} else if lc := list.Calls[0]; lc.MOS < 3 || lc.Media.WhatsAppToSIP.MOS < 3 || lc.Media.SIPToWhatsApp.MOS < 3 {
		t.Errorf("live MOS %.2f (whatsapp→sip %.2f, sip→whatsapp %.2f), want the stream's estimate so far (≥ 3)",
			lc.MOS, lc.Media.WhatsAppToSIP.MOS, lc.Media.SIPToWhatsApp.MOS)
	}
	if code, _ := httpDo(t, http.MethodDelete, admin+"/admin/calls/wacid.nope", secrets.AdminToken); code != http.StatusNotFound {
		t.Errorf("hang up an unknown call: HTTP %d, want 404", code)
	}

	r := waitReport(t, c, 30*time.Second)
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("graph actions %q", got)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNoActiveCalls(t, h.gw)
	rec := h.record(t, c.ID())

	after := h.scrape(t)
	for series, want := range map[string]float64{
		"wagateway_active_calls": 0,
		`wagateway_calls_total{direction="user_initiated",outcome="bridged",trunk="pbx"}`: 1,
		"wagateway_call_setup_seconds_count":                                              1,
		`wagateway_graph_requests_total{action="pre_accept",result="ok"}`:                 1,
		`wagateway_graph_requests_total{action="accept",result="ok"}`:                     1,
		`wagateway_graph_request_seconds_count{action="accept"}`:                          1,
		`wagateway_sip_invite_final_responses_total{code="200"}`:                          1,
		`wagateway_bridged_calls_total{codec_path="opus-pcmu"}`:                           1,
		`wagateway_active_bridged_calls{codec_path="opus-pcmu"}`:                          0,
		`wagateway_webhook_deliveries_total{result="accepted"}`:                           2, // connect, terminate
		"wagateway_call_mos_count":                                                        1,
		`wagateway_media_jitter_seconds_count{direction="whatsapp_to_sip"}`:               1,
		`wagateway_call_records_total{result="ok",sink="file"}`:                           1,
		`wagateway_admin_requests_total{result="unauthorized"}`:                           2,
		`wagateway_media_packets_total{direction="whatsapp_to_sip",stage="in"}`:           -1, // checked below
	} {
		got := after.value(t, series)
		if want >= 0 && got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, dir := range []string{"whatsapp_to_sip", "sip_to_whatsapp"} {
		for _, stage := range []string{"in", "out"} {
			s := `wagateway_media_packets_total{direction="` + dir + `",stage="` + stage + `"}`
			if v := after.value(t, s); v < 50 {
				t.Errorf("%s = %v, want the call's packets (≥ 50)", s, v)
			}
		}
	}
	if v := mid.value(t, "wagateway_rtp_ports_in_use"); v != 1 {
		t.Errorf("RTP ports in use during the call: %v, want 1", v)
	}
	if v := after.value(t, "wagateway_rtp_ports_in_use"); v != 0 {
		t.Errorf("RTP ports in use after the call: %v, want 0", v)
	}
	if v := after.value(t, "wagateway_rtp_ports"); v < 2 {
		t.Errorf("RTP ports of the range: %v", v)
	}
	if v := after.value(t, "wagateway_call_setup_seconds_sum"); v <= 0 || v > 10 {
		t.Errorf("setup latency sum %v s", v)
	}

	// The record.
	if rec.Outcome != gateway.OutcomeBridged || rec.HangupBy != "caller" {
		t.Errorf("record outcome %q hangup_by %q, want bridged by caller", rec.Outcome, rec.HangupBy)
	}
	if rec.SIPCallID == "" || rec.SIPFinalCode != 200 || rec.CodecPath != "opus-pcmu" || rec.SIPCodec != "PCMU" {
		t.Errorf("record SIP side: %+v", rec)
	}
	if rec.Caller.Number != "15550001234" || rec.Caller.BSUID != "US.1349120865530274" || rec.Caller.Name != "Ada Lovelace" ||
		rec.PhoneNumberID != testPhoneNumberID || rec.Route != "pbx" || rec.Trunk != "pbx" {
		t.Errorf("record parties and route: %+v", rec)
	}
	tm := rec.Times
	phases := []time.Time{tm.Connect, tm.PreAccept, tm.Invite, tm.Answer, tm.Accept, tm.End}
	for i := 1; i < len(phases); i++ {
		if phases[i].IsZero() || phases[i].Before(phases[i-1]) {
			t.Errorf("phase times out of order or missing: %+v", tm)
			break
		}
	}
	if rec.SetupMs <= 0 || rec.TalkSeconds < 2 {
		t.Errorf("setup %d ms, talk %.1f s", rec.SetupMs, rec.TalkSeconds)
	}
	if m := rec.Media; m == nil || m.WhatsAppToSIP.PacketsIn < 50 || m.SIPToWhatsApp.PacketsIn < 50 {
		t.Errorf("record media: %+v", rec.Media)
	}
	if rec.MOS < 3.5 || rec.MOS > 4.5 {
		t.Errorf("estimated MOS %.2f of a clean loopback call, want 3.5-4.5", rec.MOS)
	}

	// Meta's side: accept carried the SIP Call-ID as biz_opaque_callback_data
	// (call_records.biz_opaque: sip_call_id by default), Meta's terminate
	// webhook repeated it, and the record keeps what that webhook said.
	if r.BizOpaqueCallbackData == "" || r.BizOpaqueCallbackData != rec.SIPCallID || rec.BizOpaque != rec.SIPCallID {
		t.Errorf("biz_opaque_callback_data: accept sent %q, record %q, want the SIP Call-ID %q", r.BizOpaqueCallbackData, rec.BizOpaque, rec.SIPCallID)
	}
	meta := rec.Meta
	if meta == nil || meta.BizOpaque != rec.SIPCallID || meta.Status != "COMPLETED" || meta.StartTime.IsZero() ||
		meta.EndTime.Before(meta.StartTime) || meta.DurationSeconds == nil {
		t.Fatalf("record meta %+v, want the terminate webhook's status, times, duration and %q", meta, rec.SIPCallID)
	}
	if want := int64(meta.EndTime.Sub(meta.StartTime).Seconds() + 0.5); rec.BillableSeconds != want || want < 2 {
		t.Errorf("billable_seconds %d, want Meta's start→end %d", rec.BillableSeconds, want)
	}
	if rec.Disposition != gateway.DispositionAnswered {
		t.Errorf("disposition %q, want ANSWERED", rec.Disposition)
	}
	if rec.ReasonSent != nil { // the caller hung up: the gateway's BYE
		if rec.ReasonSent.Protocol != "Q.850" || rec.ReasonSent.Cause != 16 {
			t.Errorf("reason_sent %+v, want Q.850 16", rec.ReasonSent)
		}
	} else {
		t.Errorf("reason_sent missing: the gateway sent a BYE")
	}
}

// The PBX refuses, or the caller gives up while the PBX rings: each call
// gets a record with the right outcome and who ended it.
func TestOpsRecordOutcomes(t *testing.T) {
	t.Run("busy", func(t *testing.T) {
		pbx := startSipp(t, "pbx_busy.xml", 1, 20*time.Second)
		h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr})
		c := h.call(t, wasim.CallOptions{})
		waitReport(t, c, 20*time.Second)
		rec := h.record(t, c.ID())
		if rec.Outcome != gateway.OutcomePBXRejected || rec.HangupBy != "pbx" || rec.SIPFinalCode != 486 {
			t.Errorf("busy PBX: outcome %q hangup_by %q sip %d, want pbx_rejected by pbx, 486", rec.Outcome, rec.HangupBy, rec.SIPFinalCode)
		}
		if rec.Times.Invite.IsZero() || !rec.Times.Accept.IsZero() || rec.Media != nil {
			t.Errorf("busy PBX: times %+v media %+v", rec.Times, rec.Media)
		}
		if rec.Disposition != gateway.DispositionBusy || rec.BillableSeconds != 0 {
			t.Errorf("busy PBX: disposition %q billable %d, want BUSY 0", rec.Disposition, rec.BillableSeconds)
		}
		m := h.scrape(t)
		if v := m.value(t, `wagateway_sip_invite_final_responses_total{code="486"}`); v != 1 {
			t.Errorf("486 responses: %v", v)
		}
		if v := m.value(t, `wagateway_calls_total{direction="user_initiated",outcome="pbx_rejected",trunk="pbx"}`); v != 1 {
			t.Errorf("pbx_rejected calls: %v", v)
		}
	})
	t.Run("caller hangs up while ringing", func(t *testing.T) {
		pbx := startSipp(t, "pbx_ring_cancel.xml", 1, 20*time.Second)
		h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr})
		c := h.call(t, wasim.CallOptions{})
		waitFor(t, 10*time.Second, "the INVITE", func() bool { return pbx.invites() > 0 })
		time.Sleep(300 * time.Millisecond)
		if err := c.Hangup(); err != nil {
			t.Fatal(err)
		}
		waitReport(t, c, 10*time.Second)
		rec := h.record(t, c.ID())
		if rec.Outcome != gateway.OutcomeCallerHungUp || rec.HangupBy != "caller" {
			t.Errorf("caller gone while ringing: outcome %q hangup_by %q", rec.Outcome, rec.HangupBy)
		}
		if rec.TerminateStatus == "" || rec.Times.PreAccept.IsZero() || !rec.Times.Answer.IsZero() {
			t.Errorf("record: terminate status %q, times %+v", rec.TerminateStatus, rec.Times)
		}
		if rec.Disposition != gateway.DispositionNoAnswer || rec.ReasonSent == nil || rec.ReasonSent.Cause != 16 {
			t.Errorf("record: disposition %q reason_sent %+v, want NO ANSWER and the CANCEL's Q.850 16", rec.Disposition, rec.ReasonSent)
		}
		if err := pbx.wait(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if v := h.scrape(t).value(t, `wagateway_calls_total{direction="user_initiated",outcome="caller_hungup",trunk="pbx"}`); v != 1 {
			t.Errorf("caller_hungup calls: %v", v)
		}
	})
}

// A trunk that stops answering OPTIONS turns /readyz false, and a call for
// it is rejected at once, never INVITEd.
func TestOpsTrunkDownRejectsAtOnce(t *testing.T) {
	pbx := startSipp(t, "pbx_options.xml", 100000, 60*time.Second)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, PingTrunk: true})
	ready := func() (int, string) { return httpGet(t, h.opsURL()+"/readyz", "") }
	waitFor(t, 5*time.Second, "/readyz 200 while the trunk answers OPTIONS", func() bool { c, _ := ready(); return c == 200 })
	if code, _ := httpGet(t, h.opsURL()+"/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if v := h.scrape(t).value(t, `wagateway_trunk_up{trunk="pbx"}`); v != 1 {
		t.Errorf("trunk_up while answering: %v", v)
	}

	_ = pbx.cmd.Process.Kill() // the PBX goes away
	waitFor(t, 5*time.Second, "/readyz 503 once the trunk stops answering", func() bool { c, _ := ready(); return c == 503 })
	code, body := ready()
	var rz struct {
		Ready    bool     `json:"ready"`
		NotReady []string `json:"not_ready_trunks"`
	}
	if err := json.Unmarshal([]byte(body), &rz); err != nil || rz.Ready || len(rz.NotReady) != 1 || rz.NotReady[0] != "pbx" {
		t.Errorf("/readyz %d: %s", code, body)
	}
	if v := h.scrape(t).value(t, `wagateway_trunk_up{trunk="pbx"}`); v != 0 {
		t.Errorf("trunk_up once down: %v", v)
	}

	start := time.Now()
	c := h.call(t, wasim.CallOptions{})
	r := waitReport(t, c, 10*time.Second)
	if got := actions(r); got != "reject" {
		t.Errorf("graph actions %q, want only reject (no pre_accept, no ringing)", got)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("rejection took %v, want it at once", took)
	}
	rec := h.record(t, c.ID())
	if rec.Outcome != gateway.OutcomeTrunkDown || !strings.Contains(rec.Reason, `trunk "pbx" is down`) || !rec.Times.Invite.IsZero() {
		t.Errorf("record: outcome %q reason %q invite %v", rec.Outcome, rec.Reason, rec.Times.Invite)
	}
}

// SIGTERM's drain: new calls are rejected and /readyz says so; a call that
// ends within drain_timeout ends normally; one still up when it passes is
// ended on both sides (BYE to the PBX, Graph terminate).
func TestOpsDrain(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo.xml", 2, 40*time.Second)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, Config: func(c *gateway.Config) { c.DrainTimeout = 4 * time.Second }})
	short := h.call(t, wasim.CallOptions{ToneHz: 700, Duration: 2 * time.Second})
	long := h.call(t, wasim.CallOptions{ToneHz: 900}) // talks until the business hangs up
	waitFor(t, 10*time.Second, "both calls accepted", func() bool {
		return short.State() == wasim.StateAccepted && long.State() == wasim.StateAccepted
	})

	drained := make(chan error, 1)
	drainStart := time.Now()
	go func() { drained <- h.gw.Drain(context.Background()) }()
	waitFor(t, 2*time.Second, "draining", h.gw.Draining)
	if code, body := httpGet(t, h.opsURL()+"/readyz", ""); code != 503 || !strings.Contains(body, `"draining":true`) {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	late := h.call(t, wasim.CallOptions{})
	if got := actions(waitReport(t, late, 10*time.Second)); got != "reject" {
		t.Errorf("a call during drain: graph actions %q, want reject", got)
	}

	rs := waitReport(t, short, 10*time.Second)
	if got := actions(rs); got != "pre_accept,accept" || rs.Outcome != wasim.OutcomeCompletedByUser {
		t.Errorf("short call: actions %q outcome %s, want it to end normally", got, rs.Outcome)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("drain did not return")
	}
	if took := time.Since(drainStart); took < 4*time.Second || took > 9*time.Second {
		t.Errorf("drain took %v with drain_timeout 4s", took)
	}
	rl := waitReport(t, long, 10*time.Second)
	if got := actions(rl); got != "pre_accept,accept,terminate" {
		t.Errorf("long call: graph actions %q, want terminate at drain_timeout", got)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // both calls got their BYE
	}
	if rec := h.record(t, short.ID()); rec.Outcome != gateway.OutcomeBridged || rec.HangupBy != "caller" {
		t.Errorf("short call record: %q by %q", rec.Outcome, rec.HangupBy)
	}
	if rec := h.record(t, long.ID()); rec.Outcome != gateway.OutcomeShutdown || rec.HangupBy != "gateway" ||
		!strings.Contains(rec.Reason, "drain_timeout") {
		t.Errorf("long call record: %q by %q (%s)", rec.Outcome, rec.HangupBy, rec.Reason)
	}
	if rec := h.record(t, late.ID()); rec.Outcome != gateway.OutcomeDraining {
		t.Errorf("late call record: %q", rec.Outcome)
	}
	if h.gw.ActiveCalls() != 0 {
		t.Errorf("%d calls left after drain", h.gw.ActiveCalls())
	}
}

// SIGHUP's reload moves new calls to the new trunk while a call in progress
// stays up on the old one; the admin API then hangs that call up.
func TestOpsReloadKeepsCallsAndAdminHangup(t *testing.T) {
	oldPBX := startSipp(t, "pbx_answer_echo.xml", 1, 40*time.Second)
	newPBX := startSipp(t, "pbx_busy.xml", 1, 40*time.Second)
	secrets := testSecrets
	secrets.AdminToken = "admin-token-for-tests"
	h := newOpsHarness(t, opsOptions{PBXAddr: oldPBX.Addr, Secrets: &secrets, Config: func(c *gateway.Config) {
		c.Admin = gateway.AdminConfig{Listen: "127.0.0.1:0", Token: gateway.SecretRef{Env: "UNUSED_IN_TEST"}}
	}})
	up := h.call(t, wasim.CallOptions{ToneHz: 800})
	waitFor(t, 10*time.Second, "the first call accepted", func() bool { return up.State() == wasim.StateAccepted })

	next := *h.cfg
	noPing := false // sipp's busy scenario answers INVITEs only
	next.Trunks = []gateway.TrunkConfig{{Name: "pbx2", Address: newPBX.Addr, OptionsPing: &noPing}}
	next.Numbers = []gateway.NumberConfig{{PhoneNumberID: testPhoneNumberID, Routes: []gateway.RouteConfig{
		{Name: "moved", Trunk: "pbx2", Destination: "sip:agents@" + newPBX.Addr, AnswerTimeout: 10 * time.Second}}}}
	next.ApplyDefaults()
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := h.gw.Reload(&next, &secrets); err != nil {
		t.Fatal(err)
	}
	second := h.call(t, wasim.CallOptions{})
	waitReport(t, second, 15*time.Second)
	if rec := h.record(t, second.ID()); rec.Trunk != "pbx2" || rec.Route != "moved" || rec.Outcome != gateway.OutcomePBXRejected {
		t.Errorf("call after reload: trunk %q route %q outcome %q", rec.Trunk, rec.Route, rec.Outcome)
	}
	if err := newPBX.wait(t, 5*time.Second); err != nil {
		t.Error(err)
	}
	if up.State() != wasim.StateAccepted {
		t.Fatalf("the call in progress did not survive the reload: %s", up.State())
	}

	code, body := httpDo(t, http.MethodPost, "http://"+h.gw.AdminAddr()+"/admin/calls/"+up.ID()+"/hangup", secrets.AdminToken)
	if code != http.StatusAccepted {
		t.Fatalf("admin hangup: HTTP %d %s", code, body)
	}
	r := waitReport(t, up, 10*time.Second)
	if got := actions(r); got != "pre_accept,accept,terminate" {
		t.Errorf("hung-up call: graph actions %q", got)
	}
	if err := oldPBX.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // BYE received
	}
	if rec := h.record(t, up.ID()); rec.Outcome != gateway.OutcomeAdminHangup || rec.HangupBy != "admin" || rec.Trunk != "pbx" {
		t.Errorf("hung-up call record: %q by %q on %q", rec.Outcome, rec.HangupBy, rec.Trunk)
	}
	if v := h.scrape(t).value(t, `wagateway_config_reloads_total{result="ok"}`); v != 1 {
		t.Errorf("reloads: %v", v)
	}
}

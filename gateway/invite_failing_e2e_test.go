package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// A trunk that answers OPTIONS with 200 but refuses every INVITE (sipp:
// 403) is not ready after health.invite_failures calls in a row: /readyz
// answers 503 and says why, wagateway_trunk_invite_failing is 1.
func TestOpsTrunkInviteFailingNotReady(t *testing.T) {
	pbx := startSipp(t, "pbx_options_ok_invite_403.xml", 100000, 60*time.Second)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, PingTrunk: true, Config: func(c *gateway.Config) {
		c.Health.InviteFailures = 2
	}})
	type trunk struct {
		Up             bool   `json:"up"`
		Answered       bool   `json:"answered"`
		InviteFailing  bool   `json:"invite_failing"`
		InviteFailures int    `json:"invite_failures"`
		InviteError    string `json:"invite_error"`
	}
	readyz := func() (int, trunk, []string) {
		code, body := httpGet(t, h.opsURL()+"/readyz", "")
		var rz struct {
			Trunks  map[string]trunk `json:"trunks"`
			Reasons []string         `json:"reasons"`
		}
		if err := json.Unmarshal([]byte(body), &rz); err != nil {
			t.Fatalf("/readyz %d: %v: %s", code, err, body)
		}
		return code, rz.Trunks["pbx"], rz.Reasons
	}
	waitFor(t, 5*time.Second, "the trunk answered OPTIONS", func() bool { code, tr, _ := readyz(); return code == 200 && tr.Answered })

	for i := 1; i <= 2; i++ {
		c := h.call(t, wasim.CallOptions{})
		waitReport(t, c, 20*time.Second)
		rec := h.record(t, c.ID())
		if rec.Outcome != gateway.OutcomePBXRejected || rec.SIPFinalCode != 403 || rec.Disposition != gateway.DispositionFailed {
			t.Errorf("call %d: outcome %q sip %d disposition %q, want pbx_rejected 403 FAILED", i, rec.Outcome, rec.SIPFinalCode, rec.Disposition)
		}
		code, tr, _ := readyz()
		if i == 1 && (code != http.StatusOK || tr.InviteFailing || tr.InviteFailures != 1) {
			t.Errorf("after one refused INVITE: /readyz %d %+v, want still ready", code, tr)
		}
	}
	code, tr, reasons := readyz()
	if code != http.StatusServiceUnavailable || !tr.Up || !tr.InviteFailing || !strings.Contains(tr.InviteError, "403") {
		t.Errorf("after two refused INVITEs: /readyz %d %+v, want 503, up (OPTIONS answered) and invite_failing with the 403", code, tr)
	}
	if len(reasons) != 1 || !strings.Contains(reasons[0], "invite_failing") || !strings.Contains(reasons[0], "403 Forbidden") {
		t.Errorf("/readyz reasons %q", reasons)
	}
	if v := h.scrape(t).value(t, `wagateway_trunk_invite_failing{trunk="pbx"}`); v != 1 {
		t.Errorf("wagateway_trunk_invite_failing %v, want 1", v)
	}
	if v := h.scrape(t).value(t, `wagateway_trunk_up{trunk="pbx"}`); v != 1 {
		t.Errorf("wagateway_trunk_up %v, want 1 (OPTIONS answered)", v)
	}
}

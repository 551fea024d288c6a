package gateway_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// recordLines returns the lines of the records file whose "type" is typ.
func recordLines(t *testing.T, path, typ string) []map[string]any {
	t.Helper()
	b, _ := os.ReadFile(path)
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["type"] == typ {
			out = append(out, m)
		}
	}
	return out
}

// A caller the PBX could not take leaves a voicemail: Meta's voicemail
// message (its id the call's id) is linked to the call's record, and the
// audio is downloaded beside the records.
func TestVoicemailLinkedToCall(t *testing.T) {
	pbx := startSipp(t, "pbx_busy.xml", 1, 20*time.Second)
	dir := t.TempDir()
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, Config: func(c *gateway.Config) { c.CallRecords.VoicemailDir = dir }})
	c := h.call(t, wasim.CallOptions{From: "15550001234"})
	waitReport(t, c, 20*time.Second)
	if rec := h.record(t, c.ID()); rec.Outcome != gateway.OutcomePBXRejected {
		t.Fatalf("call outcome %s", rec.Outcome)
	}
	audio := wasim.OggOpusSilence(time.Second)
	if _, err := h.sim.SendVoicemail(testPhoneNumberID, c.ID(), "15550001234", audio); err != nil {
		t.Fatal(err)
	}
	var vm map[string]any
	waitFor(t, 10*time.Second, "the voicemail record", func() bool {
		lines := recordLines(t, h.records, "voicemail")
		if len(lines) > 0 {
			vm = lines[0]
		}
		return vm != nil
	})
	if vm["call_id"] != c.ID() || vm["known_call"] != true || vm["from"] != "15550001234" || vm["error"] != nil {
		t.Errorf("voicemail record %v", vm)
	}
	file, _ := vm["file"].(string)
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, audio) {
		t.Errorf("downloaded %q: %d bytes (%v), want the %d sent", file, len(got), err, len(audio))
	}
	if v := h.scrape(t).value(t, `wagateway_voicemails_total{result="downloaded"}`); v != 1 {
		t.Errorf("voicemails downloaded counted %v", v)
	}
}

// Meta pauses business-initiated calling on the number: the restriction
// is logged, counted, shown by the admin API and written to the records.
func TestAccountRestrictionShows(t *testing.T) {
	secrets := testSecrets
	secrets.AdminToken = "admin-secret"
	h := newOpsHarness(t, opsOptions{PBXAddr: "127.0.0.1:5999", Secrets: &secrets, Config: func(c *gateway.Config) {
		c.Admin = gateway.AdminConfig{Listen: "127.0.0.1:0", Token: gateway.SecretRef{Env: "UNUSED_IN_TEST"}}
	}})
	until := time.Now().Add(7 * 24 * time.Hour).Truncate(time.Second)
	if err := h.sim.SendAccountUpdate(testPhoneNumberID, wasim.AccountRestriction, "RESTRICTED_BUSINESS_INITIATED_CALLING", until); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.SendAccountUpdate(testPhoneNumberID, wasim.AccountViolation, "LOW_BUSINESS_INITIATED_CALLING_QUALITY", time.Time{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the restriction in the metrics", func() bool {
		return h.scrape(t).value(t, `wagateway_account_events_total{event="ACCOUNT_RESTRICTION",type="RESTRICTED_BUSINESS_INITIATED_CALLING"}`) == 1
	})
	m := h.scrape(t)
	if v := m.value(t, `wagateway_account_events_total{event="ACCOUNT_VIOLATION",type="LOW_BUSINESS_INITIATED_CALLING_QUALITY"}`); v != 1 {
		t.Errorf("violations counted %v", v)
	}
	restricted := false
	for _, line := range strings.Split(string(m), "\n") {
		restricted = restricted || (strings.HasPrefix(line, "wagateway_calling_restricted{") &&
			strings.Contains(line, `restriction="RESTRICTED_BUSINESS_INITIATED_CALLING"`) && strings.HasSuffix(line, " 1"))
	}
	if !restricted {
		t.Error("wagateway_calling_restricted not 1 for the number")
	}
	code, body := httpGet(t, "http://"+h.gw.AdminAddr()+"/admin/account-events", "admin-secret")
	if code != 200 || !strings.Contains(body, `"restriction_type": "RESTRICTED_BUSINESS_INITIATED_CALLING"`) ||
		!strings.Contains(body, `"violation_type": "LOW_BUSINESS_INITIATED_CALLING_QUALITY"`) {
		t.Errorf("admin account events %d:\n%s", code, body)
	}
	if lines := recordLines(t, h.records, "account_event"); len(lines) != 2 {
		t.Errorf("%d account_event record lines, want 2", len(lines))
	}
}

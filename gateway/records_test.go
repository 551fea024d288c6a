package gateway

import (
	"encoding/csv"
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
)

// TestRecordDisposition: the outcome in Asterisk's CDR terms.
func TestRecordDisposition(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name string
		r    CallRecord
		want string
	}{
		{"accepted", CallRecord{Outcome: OutcomeBridged, Times: RecordTimes{Accept: at}}, DispositionAnswered},
		{"accepted, no media", CallRecord{Outcome: OutcomeNoMedia, Times: RecordTimes{Accept: at}}, DispositionAnswered},
		{"486", CallRecord{Outcome: OutcomePBXRejected, SIPFinalCode: 486}, DispositionBusy},
		{"Q.850 17", CallRecord{Outcome: OutcomePBXRejected, SIPFinalCode: 480, PBXReason: &RecordReason{Protocol: "Q.850", Cause: 17}}, DispositionBusy},
		{"503", CallRecord{Outcome: OutcomePBXRejected, SIPFinalCode: 503}, DispositionCongestion},
		{"trunk down", CallRecord{Outcome: OutcomeTrunkDown}, DispositionCongestion},
		{"draining", CallRecord{Outcome: OutcomeDraining}, DispositionCongestion},
		{"answer timeout", CallRecord{Outcome: OutcomeNoAnswer}, DispositionNoAnswer},
		{"caller gave up", CallRecord{Outcome: OutcomeCallerHungUp}, DispositionNoAnswer},
		{"480", CallRecord{Outcome: OutcomePBXRejected, SIPFinalCode: 480}, DispositionNoAnswer},
		{"user declined", CallRecord{Outcome: OutcomeUserDeclined}, DispositionNoAnswer},
		{"404", CallRecord{Outcome: OutcomePBXRejected, SIPFinalCode: 404}, DispositionFailed},
		{"403", CallRecord{Outcome: OutcomePBXRejected, SIPFinalCode: 403}, DispositionFailed},
		{"no route", CallRecord{Outcome: OutcomeNoRoute}, DispositionFailed},
		{"failed", CallRecord{Outcome: OutcomeFailed}, DispositionFailed},
	} {
		if got := disposition(&tc.r); got != tc.want {
			t.Errorf("%s: disposition %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestRecordBillableSeconds: Meta's start to end when given, else accept
// to end, 0 when not answered.
func TestRecordBillableSeconds(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	times := RecordTimes{Connect: at, Accept: at.Add(2 * time.Second), End: at.Add(62*time.Second + 600*time.Millisecond)}
	if got := billableSeconds(&CallRecord{Times: times}); got != 61 {
		t.Errorf("accept→end: %d, want 61", got)
	}
	meta := &RecordMeta{StartTime: at.Add(3 * time.Second), EndTime: at.Add(60 * time.Second)}
	if got := billableSeconds(&CallRecord{Times: times, Meta: meta}); got != 57 {
		t.Errorf("Meta's start→end: %d, want 57", got)
	}
	if got := billableSeconds(&CallRecord{Times: RecordTimes{Connect: at, End: at.Add(time.Minute)}, Meta: meta}); got != 0 {
		t.Errorf("not answered: %d, want 0", got)
	}
}

// TestRecordTerminateMeta: what Meta's terminate webhook says is kept for
// the record: status, start and end, duration, biz_opaque_callback_data
// and the errors' details.
func TestRecordTerminateMeta(t *testing.T) {
	o := newCallOps()
	start := time.Unix(1_700_000_000, 0).UTC()
	o.terminated(whatsapp.CallEvent{Status: "FAILED", StartTime: start, EndTime: start.Add(42 * time.Second),
		Duration: 42 * time.Second, BizOpaqueCallbackData: "abc@pbx",
		Errors: []whatsapp.CallError{{Code: 138021, Message: "Call failed", Details: "network unreachable"}}})
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.meta
	if m == nil || m.Status != "FAILED" || !m.StartTime.Equal(start) || !m.EndTime.Equal(start.Add(42*time.Second)) ||
		m.DurationSeconds == nil || *m.DurationSeconds != 42 || m.BizOpaque != "abc@pbx" {
		t.Fatalf("meta %+v", m)
	}
	if len(o.metaErrors) != 1 || o.metaErrors[0].Details != "network unreachable" || o.metaErrors[0].Code != 138021 {
		t.Errorf("meta errors %+v", o.metaErrors)
	}
}

// TestRecordCSV: call_records.format csv writes Master.csv's columns in
// Asterisk's order, text quoted, duration and billsec bare.
func TestRecordCSV(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	r := &CallRecord{CallID: "wacid.1", Direction: DirectionUserInitiated, SIPCallID: "c1@gw", PhoneNumberID: "1065",
		Caller: RecordCaller{Number: "15550001234", Name: `Ada "the" Lovelace`}, Route: "sales", Trunk: "pbx", Destination: "600",
		Outcome: OutcomeBridged, Disposition: DispositionAnswered, BillableSeconds: 58,
		Times: RecordTimes{Connect: at, Accept: at.Add(2 * time.Second), End: at.Add(60 * time.Second)}}
	line := string(csvLine(r))
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	if !strings.Contains(line, `"2026-05-01 10:01:00",60,58,"ANSWERED",`) {
		t.Errorf("duration and billsec not bare numbers after end: %s", line)
	}
	rec, err := csv.NewReader(strings.NewReader(line)).Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != len(csvColumns) {
		t.Fatalf("%d fields, want %d: %q", len(rec), len(csvColumns), rec)
	}
	want := map[string]string{
		"accountcode": "1065", "src": "15550001234", "dst": "600", "dcontext": "sales",
		"clid": `"Ada "the" Lovelace" <15550001234>`, "channel": "WhatsApp/wacid.1", "dstchannel": "SIP/pbx-c1@gw",
		"lastapp": "Dial", "lastdata": "SIP/pbx/600", "start": "2026-05-01 10:00:00", "answer": "2026-05-01 10:00:02",
		"end": "2026-05-01 10:01:00", "duration": "60", "billsec": "58", "disposition": "ANSWERED",
		"amaflags": "DOCUMENTATION", "uniqueid": "wacid.1", "userfield": "c1@gw",
	}
	for i, col := range csvColumns {
		if rec[i] != want[col] {
			t.Errorf("%s = %q, want %q", col, rec[i], want[col])
		}
	}
}

// TestTrunkInviteFailureClassify: the trunk's refusals and silence count
// against it; a user's answer does not.
func TestTrunkInviteFailureClassify(t *testing.T) {
	for _, tc := range []struct {
		code      int
		responded bool
		err       error
		failed    bool
	}{
		{200, true, nil, false},
		{401, true, errors.New("x"), true},
		{403, true, errors.New("x"), true},
		{407, true, errors.New("x"), true},
		{500, true, errors.New("x"), true},
		{503, true, errors.New("x"), true},
		{486, true, errors.New("x"), false},
		{480, true, errors.New("x"), false},
		{404, true, errors.New("x"), false},
		{603, true, errors.New("x"), false},
		{0, true, errors.New("answer timeout"), false}, // rang, nobody answered
		{0, false, errors.New("no final response"), true},
	} {
		if failed, why := inviteFailure(tc.code, "R", tc.responded, tc.err); failed != tc.failed || failed && why == "" {
			t.Errorf("code %d responded %v: failed %v (%q), want %v", tc.code, tc.responded, failed, why, tc.failed)
		}
	}
}

// TestTrunkInviteFailing: health.invite_failures refused INVITEs in a row
// mark a trunk invite_failing (not ready, with the reason, gauge 1); one
// taken INVITE clears it.
func TestTrunkInviteFailing(t *testing.T) {
	m := newMetrics()
	tm := newTrunkMonitor(HealthConfig{OptionsInterval: time.Hour, OptionsTimeout: time.Second, DownAfter: 2, InviteFailures: 3}, zap.NewNop(), m)
	tm.run(map[string]*sip.Trunk{"pbx": {Name: "pbx", Address: "127.0.0.1:5060"}}, map[string]bool{"pbx": false})
	defer tm.stop()
	gauge := func() float64 {
		t.Helper()
		var d dto.Metric
		if err := m.trunkInviteFail.WithLabelValues("pbx").Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetGauge().GetValue()
	}
	fail := func() { tm.inviteResult("pbx", true, "SIP 407 Proxy Authentication Required") }
	fail()
	fail()
	if ok, st := tm.ready(); !ok || st["pbx"].InviteFailing || st["pbx"].InviteFailures != 2 || gauge() != 0 {
		t.Fatalf("after 2 failures: ready %v %+v gauge %v", ok, st["pbx"], gauge())
	}
	fail()
	ok, st := tm.ready()
	if ok || !st["pbx"].InviteFailing || st["pbx"].InviteError != "SIP 407 Proxy Authentication Required" || gauge() != 1 {
		t.Fatalf("after 3 failures: ready %v %+v gauge %v", ok, st["pbx"], gauge())
	}
	tm.inviteResult("pbx", false, "")
	if ok, st := tm.ready(); !ok || st["pbx"].InviteFailing || st["pbx"].InviteFailures != 0 || gauge() != 0 {
		t.Fatalf("after a success: ready %v %+v gauge %v", ok, st["pbx"], gauge())
	}
}

// TestReadyzSaysWhyInviteFailing: /readyz names the trunk and the reason.
func TestReadyzSaysWhyInviteFailing(t *testing.T) {
	tm := newTrunkMonitor(HealthConfig{InviteFailures: 1}, zap.NewNop(), newMetrics())
	tm.run(map[string]*sip.Trunk{"pbx": {Name: "pbx"}}, map[string]bool{"pbx": false})
	defer tm.stop()
	tm.inviteResult("pbx", true, "SIP 403 Forbidden")
	g := &Gateway{ops: &gatewayOps{monitor: tm}, reg: newRegistry(time.Minute)}
	g.ops.started.Store(true)
	r := g.readiness()
	if r.Ready || len(r.Down) != 1 || r.Down[0] != "pbx" || len(r.Why) != 1 || !strings.Contains(r.Why[0], "invite_failing") ||
		!strings.Contains(r.Why[0], "SIP 403 Forbidden") {
		t.Errorf("readiness %+v", r)
	}
}

// TestRecordConfig: call_records.format and biz_opaque, and
// health.invite_failures, have their defaults and refuse bad values by
// field.
func TestRecordConfig(t *testing.T) {
	c, err := ParseConfig([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.CallRecords.Format != RecordFormatJSON || c.CallRecords.BizOpaque != BizOpaqueSIPCallID || c.Health.InviteFailures != 5 {
		t.Errorf("defaults: format %q biz_opaque %q invite_failures %d", c.CallRecords.Format, c.CallRecords.BizOpaque, c.Health.InviteFailures)
	}
	if c, err := ParseConfig([]byte(minimal + "call_records: {format: csv, biz_opaque: none}\nhealth: {invite_failures: 3}\n")); err != nil ||
		c.CallRecords.Format != "csv" || c.Health.InviteFailures != 3 {
		t.Errorf("csv, none, 3: %v", err)
	}
	for add, field := range map[string]string{
		"call_records: {format: xml}\n":        "call_records.format",
		"call_records: {biz_opaque: caller}\n": "call_records.biz_opaque",
		"health: {invite_failures: -1}\n":      "health.invite_failures",
		"health: {invite_failures: 100000}\n":  "health.invite_failures",
	} {
		if _, err := ParseConfig([]byte(minimal + add)); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%q: error %v, want one naming %s", add, err, field)
		}
	}
}

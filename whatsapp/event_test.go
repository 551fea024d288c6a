package whatsapp

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

const metaCallID = "wacid.HBgLMTMxNzU1NTEyMzQVAgARGCAyQjFFNkY1RTA3QjY0QTk5OTM0RjYwQTIxNzNDMTlDNRwYCzE1NTUwNzgzODgxFQIAAA=="

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseOne(t *testing.T, name string) CallEvent {
	t.Helper()
	evs, err := ParseWebhook(readTestdata(t, name))
	if err != nil {
		t.Fatalf("ParseWebhook(%s): %v", name, err)
	}
	if len(evs) != 1 {
		t.Fatalf("ParseWebhook(%s): %d events, want 1", name, len(evs))
	}
	return evs[0]
}

func TestParseConnect(t *testing.T) {
	ev := parseOne(t, "webhook-connect.json")
	sdp := string(readTestdata(t, "meta-offer.sdp"))
	want := CallEvent{
		PhoneNumberID:      "106540352242922",
		DisplayPhoneNumber: "15550783881",
		CallID:             metaCallID,
		Event:              "connect",
		Direction:          "USER_INITIATED",
		From:               "13175551234",
		To:                 "15550783881",
		FromUserID:         "US.13491208655302741918",
		ProfileName:        "Zoé Ferreira",
		Timestamp:          time.Unix(1732466400, 0).UTC(),
		SDPType:            "offer",
		SDP:                sdp,
		DeeplinkPayload:    "lang=pt&topic=billing",
		CTAPayload:         "support_cta_7",
	}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("event mismatch\n got %+v\nwant %+v", ev, want)
	}
	// The offer must come through byte for byte: CRLF, the "/" in the ufrag.
	if ev.SDP != sdp || !strings.Contains(ev.SDP, "\r\na=ice-ufrag:6k2qP1R6kBfI/2\r\n") {
		t.Errorf("SDP altered:\n%q", ev.SDP)
	}
	if got := ev.CallerID(); got != "13175551234" {
		t.Errorf("CallerID = %q, want the number", got)
	}
}

func TestParseConnectWithoutFrom(t *testing.T) {
	ev := parseOne(t, "webhook-connect-bsuid.json")
	if ev.From != "" {
		t.Errorf("From = %q, want empty", ev.From)
	}
	if ev.FromUserID != "JP.55501234567890123456" || ev.CallerID() != "JP.55501234567890123456" {
		t.Errorf("FromUserID %q CallerID %q, want the BSUID", ev.FromUserID, ev.CallerID())
	}
	// Two contacts: the one whose user_id matches, not the first.
	if ev.ProfileName != "Kenji Watanabe" {
		t.Errorf("ProfileName = %q", ev.ProfileName)
	}
	if ev.SDP == "" || ev.SDPType != "offer" {
		t.Errorf("session lost: %q %q", ev.SDPType, ev.SDP)
	}
}

func TestParseTerminate(t *testing.T) {
	ev := parseOne(t, "webhook-terminate.json")
	if ev.Event != "terminate" || ev.Status != "FAILED" {
		t.Errorf("Event %q Status %q, want terminate FAILED (status was lower-case)", ev.Event, ev.Status)
	}
	if ev.BizOpaqueCallbackData != "route=support;ticket=42" {
		t.Errorf("BizOpaqueCallbackData = %q", ev.BizOpaqueCallbackData)
	}
	if !ev.StartTime.Equal(time.Unix(1732466410, 0)) || !ev.EndTime.Equal(time.Unix(1732466520, 0)) ||
		ev.Duration != 110*time.Second {
		t.Errorf("times: start %v end %v duration %v", ev.StartTime, ev.EndTime, ev.Duration)
	}
	if !ev.Timestamp.Equal(time.Unix(1732466520, 0)) {
		t.Errorf("Timestamp = %v", ev.Timestamp)
	}
	// 138021 appears in both places (kept once); 138020 only beside calls[].
	want := []CallError{
		{Code: 138021, Message: "Media receive timeout", Details: "No media received from the business for 30 seconds"},
		{Code: 138020, Message: "Relay connection failed", Details: "Relay allocation failed"},
	}
	if !reflect.DeepEqual(ev.Errors, want) {
		t.Errorf("Errors = %+v\nwant %+v", ev.Errors, want)
	}
	if ev.SDP != "" || ev.ProfileName != "" {
		t.Errorf("terminate has SDP %q / profile %q", ev.SDP, ev.ProfileName)
	}
}

func TestParseIgnoresNonCallFields(t *testing.T) {
	calls, statuses, err := ParseWebhookAll(readTestdata(t, "webhook-messages.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 || len(statuses) != 0 {
		t.Errorf("got %d calls, %d statuses from a messages webhook", len(calls), len(statuses))
	}
}

func TestParseCallStatuses(t *testing.T) {
	calls, statuses, err := ParseWebhookAll(readTestdata(t, "webhook-bic-status.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Errorf("%d calls", len(calls))
	}
	want := []StatusEvent{
		{PhoneNumberID: "106540352242922", CallID: "wacid.BIC0001", Status: "RINGING",
			Timestamp: time.Unix(1732467000, 0).UTC(), RecipientID: "13175551234"},
		{PhoneNumberID: "106540352242922", CallID: "wacid.BIC0001", Status: "ACCEPTED",
			Timestamp: time.Unix(1732467004, 0).UTC(), RecipientID: "13175551234", BizOpaqueCallbackData: "bic-7"},
	}
	if !reflect.DeepEqual(statuses, want) {
		t.Errorf("statuses = %+v\nwant %+v", statuses, want)
	}
}

func TestParseSeveralEntriesInOrder(t *testing.T) {
	body := `{"object":"whatsapp_business_account","entry":[
	 {"id":"1","changes":[{"field":"calls","value":{"metadata":{"phone_number_id":"P1"},
	   "calls":[{"id":"wacid.A","event":"connect","timestamp":"10"},{"id":"wacid.B","event":"CONNECT","timestamp":11}]}}]},
	 {"id":"2","changes":[{"field":"calls","value":{"metadata":{"phone_number_id":"P2"},
	   "calls":[{"id":"wacid.A","event":"terminate","timestamp":"12","status":"Completed","duration":"7"}]}}]}]}`
	evs, err := ParseWebhook([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.PhoneNumberID+"/"+e.CallID+"/"+e.Event+"/"+e.Status)
	}
	want := []string{"P1/wacid.A/connect/", "P1/wacid.B/connect/", "P2/wacid.A/terminate/COMPLETED"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !evs[1].Timestamp.Equal(time.Unix(11, 0)) {
		t.Errorf("numeric timestamp: %v", evs[1].Timestamp)
	}
	if evs[2].Duration != 7*time.Second {
		t.Errorf("string duration: %v", evs[2].Duration)
	}
}

func TestParseMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"empty":          ``,
		"truncated":      `{"object":"whatsapp_business_account","entry":[`,
		"not an object":  `[1,2]`,
		"wrong type":     `{"entry":"x"}`,
		"object as time": `{"entry":[{"changes":[{"value":{"calls":[{"id":"x","timestamp":{}}]}}]}]}`,
		"trailing":       `{"entry":[]} {"entry":[]}`,
	} {
		if _, err := ParseWebhook([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseOtherObjectIgnored(t *testing.T) {
	evs, err := ParseWebhook([]byte(`{"object":"page","entry":[{"changes":[{"value":{"calls":[{"id":"wacid.X","event":"connect"}]}}]}]}`))
	if err != nil || len(evs) != 0 {
		t.Errorf("got %v, %v", evs, err)
	}
}

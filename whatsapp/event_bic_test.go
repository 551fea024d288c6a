package whatsapp

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// W2: Meta's answer to our connect.
func TestParseBICConnect(t *testing.T) {
	ev := parseOne(t, "webhook-bic-connect.json")
	if ev.Event != "connect" || ev.Direction != "BUSINESS_INITIATED" || !ev.BusinessInitiated() ||
		ev.SDPType != "answer" || ev.CallID != "wacid.BIC0001" {
		t.Errorf("event %+v", ev)
	}
	if !strings.HasPrefix(ev.SDP, "v=0\r\n") || !strings.Contains(ev.SDP, "\r\na=ice-ufrag:Qx9/aZ\r\n") || !strings.HasSuffix(ev.SDP, "\r\n") {
		t.Errorf("SDP answer altered: %q", ev.SDP)
	}
	if ev.From != "15550783881" || ev.To != "5511987654321" || ev.ToUserID != "BR.77700000000000000042" {
		t.Errorf("from %q to %q to_user_id %q", ev.From, ev.To, ev.ToUserID)
	}
	if got := ev.User(); got != (UserRef{WaID: "5511987654321", BSUID: "BR.77700000000000000042"}) {
		t.Errorf("User() = %+v, want the called user", got)
	}
	if ev.ProfileName != "Ana Lima" || ev.Timestamp != time.Unix(1732467002, 0).UTC() {
		t.Errorf("profile %q timestamp %v", ev.ProfileName, ev.Timestamp)
	}
	// A user-initiated call's user is the caller.
	if u := parseOne(t, "webhook-connect.json").User(); u.WaID != "13175551234" || u.BSUID != "US.13491208655302741918" {
		t.Errorf("UIC User() = %+v", u)
	}
}

// W4 of a business-initiated call: opaque data, times, duration, errors.
func TestParseBICTerminate(t *testing.T) {
	ev := parseOne(t, "webhook-bic-terminate.json")
	want := CallEvent{
		PhoneNumberID: "106540352242922", DisplayPhoneNumber: "15550783881", CallID: "wacid.BIC0001",
		Event: "terminate", Direction: "BUSINESS_INITIATED", From: "15550783881", To: "5511987654321",
		ToUserID: "BR.77700000000000000042", Timestamp: time.Unix(1732467130, 0).UTC(), Status: "COMPLETED",
		StartTime: time.Unix(1732467005, 0).UTC(), EndTime: time.Unix(1732467130, 0).UTC(), Duration: 125 * time.Second,
		BizOpaqueCallbackData: "agent=2001;ticket=77",
		Errors:                []CallError{{Code: 138022, Message: "Media transmit timeout", Details: "No media sent to the user for 30 seconds"}},
	}
	if !reflect.DeepEqual(ev, want) {
		t.Errorf("terminate\n got %+v\nwant %+v", ev, want)
	}
}

func TestParseBICStatusRecipientUserID(t *testing.T) {
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{
	  "metadata":{"phone_number_id":"P"},
	  "statuses":[{"id":"wacid.B","type":"call","status":"RINGING","timestamp":"5","recipient_user_id":"BR.1","biz_opaque_callback_data":"x"}]}}]}]}`)
	ev, err := ParseWebhookEvents(body)
	if err != nil || len(ev.Statuses) != 1 || ev.Other {
		t.Fatalf("%+v %v", ev, err)
	}
	if st := ev.Statuses[0]; st.RecipientUserID != "BR.1" || st.RecipientID != "" || st.BizOpaqueCallbackData != "x" {
		t.Errorf("status %+v", st)
	}
}

func replyBody(id, from, response string, extra string) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
	"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
	"messages":[{"from":%q,"id":%q,"timestamp":"1732466900","type":"interactive",
	  "interactive":{"type":"call_permission_reply","call_permission_reply":{"response":%q%s}}}]}}]}]}`, from, id, response, extra)
}

func TestParsePermissionReply(t *testing.T) {
	ev, err := ParseWebhookEvents(readTestdata(t, "webhook-permission-reply.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.PermissionReplies) != 1 || len(ev.Calls) != 0 || len(ev.Statuses) != 0 || ev.Other {
		t.Fatalf("%+v", ev)
	}
	want := PermissionReply{
		PhoneNumberID: "106540352242922", From: "5511987654321", FromUserID: "BR.77700000000000000042",
		MessageID: "wamid.REPLY0001=", ContextID: "wamid.REQ0001=", Accepted: true, Permanent: false,
		Expires: time.Unix(1733071700, 0).UTC(), Source: "user_action", Timestamp: time.Unix(1732466900, 0).UTC(),
		Response: "accept", ProfileName: "Ana Lima",
	}
	if got := ev.PermissionReplies[0]; !reflect.DeepEqual(got, want) {
		t.Errorf("reply\n got %+v\nwant %+v", got, want)
	}
	if u := want.User(); u != (UserRef{WaID: "5511987654321", BSUID: "BR.77700000000000000042"}) {
		t.Errorf("User() %+v", u)
	}

	for name, tc := range map[string]struct {
		body  []byte
		check func(PermissionReply) bool
	}{
		"reject": {replyBody("wamid.R", "1", "reject", `,"is_permanent":false,"response_source":"user_action"`),
			func(p PermissionReply) bool {
				return !p.Accepted && !p.Permanent && p.Expires.IsZero() && p.Response == "reject"
			}},
		"permanent": {replyBody("wamid.P", "1", "accept", `,"is_permanent":true,"response_source":"user_action"`),
			func(p PermissionReply) bool { return p.Accepted && p.Permanent && p.Expires.IsZero() }},
		"automatic, string values": {replyBody("wamid.A", "1", "ACCEPT", `,"is_permanent":"false","expiration_timestamp":"1733071700","response_source":"AUTOMATIC"`),
			func(p PermissionReply) bool {
				return p.Accepted && !p.Permanent && p.Expires.Unix() == 1733071700 && p.Source == "automatic"
			}},
		"unknown response": {replyBody("wamid.U", "1", "maybe", ``),
			func(p PermissionReply) bool { return !p.Accepted && p.Response == "maybe" }},
		"BSUID only": {[]byte(`{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"from_user_id":"US.9","id":"wamid.B","context":{"id":"wacid.X"},
			"type":"interactive","interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept","expiration_timestamp":5}}}]}}]}]}`),
			func(p PermissionReply) bool {
				return p.From == "" && p.FromUserID == "US.9" && p.ContextID == "wacid.X" && p.Expires.Unix() == 5
			}},
	} {
		ev, err := ParseWebhookEvents(tc.body)
		if err != nil || len(ev.PermissionReplies) != 1 || ev.Other {
			t.Errorf("%s: %+v %v", name, ev, err)
			continue
		}
		if !tc.check(ev.PermissionReplies[0]) {
			t.Errorf("%s: %+v", name, ev.PermissionReplies[0])
		}
	}
}

// What the gateway does not consume is Other; odd shapes outside "calls"
// are Other, never an error.
func TestParseWebhookOther(t *testing.T) {
	wrap := func(field, value string) []byte {
		return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"` + field + `","value":` + value + `}]}]}`)
	}
	reply := `{"id":"wamid.R","from":"1","interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept"}}}`
	for name, tc := range map[string]struct {
		body    []byte
		other   bool
		replies int
		calls   int
	}{
		"chat messages":          {readTestdata(t, "webhook-messages.json"), true, 0, 0},
		"reply only":             {wrap("messages", `{"messages":[`+reply+`]}`), false, 1, 0},
		"reply and text":         {wrap("messages", `{"messages":[`+reply+`,{"id":"wamid.T","type":"text","text":{"body":"hi"}}]}`), true, 1, 0},
		"reply and status":       {wrap("messages", `{"messages":[`+reply+`],"statuses":[{"id":"wamid.S","status":"read"}]}`), true, 1, 0},
		"other interactive":      {wrap("messages", `{"messages":[{"id":"wamid.I","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"b"}}}]}`), true, 0, 0},
		"voicemail audio":        {wrap("messages", `{"messages":[{"id":"wacid.V","type":"audio","audio":{"id":"m"}}]}`), false, 0, 0}, // a Voicemail (W9)
		"chat audio":             {wrap("messages", `{"messages":[{"id":"wamid.A","type":"audio","audio":{"id":"m"}}]}`), true, 0, 0},
		"error webhook":          {wrap("messages", `{"errors":[{"code":131044,"title":"no payment method"}]}`), true, 0, 0},
		"odd messages value":     {wrap("messages", `{"messages":"x","metadata":7}`), true, 0, 0},
		"odd entry":              {wrap("messages", `{"messages":[{"id":5,"from":[]}]}`), true, 0, 0},
		"account_update":         {wrap("account_update", `{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"LOW_BUSINESS_INITIATED_CALLING_QUALITY"}}`), false, 0, 0}, // an AccountEvent (W12)
		"account_update, other":  {wrap("account_update", `{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"ADULT"}}`), true, 0, 0},
		"settings, odd shape":    {wrap("account_settings_update", `[1,2]`), true, 0, 0},
		"other field, no value":  {wrap("message_template_status_update", `null`), true, 0, 0},
		"calls only":             {readTestdata(t, "webhook-connect.json"), false, 0, 1},
		"calls, message status":  {readTestdata(t, "webhook-bic-status.json"), true, 0, 0},
		"reply in calls field":   {wrap("calls", `{"messages":[`+reply+`]}`), true, 0, 0},
		"another object":         {[]byte(`{"object":"page","entry":[{"id":"1","messaging":[{}]}]}`), true, 0, 0},
		"empty envelope":         {[]byte(`{"object":"whatsapp_business_account","entry":[]}`), false, 0, 0},
		"calls and chat, mixed":  {[]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":"wacid.M","event":"connect"}]}},{"field":"messages","value":{"messages":[{"id":"wamid.T","type":"text"}]}}]}]}`), true, 0, 1},
		"calls, null value":      {wrap("calls", `null`), false, 0, 0},
		"reply without response": {wrap("messages", `{"messages":[{"id":"wamid.N","interactive":{"type":"call_permission_reply"}}]}`), true, 0, 0},
	} {
		ev, err := ParseWebhookEvents(tc.body)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if ev.Other != tc.other || len(ev.PermissionReplies) != tc.replies || len(ev.Calls) != tc.calls {
			t.Errorf("%s: other %v replies %d calls %d, want %v %d %d", name, ev.Other, len(ev.PermissionReplies),
				len(ev.Calls), tc.other, tc.replies, tc.calls)
		}
	}
	// A "calls" change that breaks the documented shape is still an error.
	if _, err := ParseWebhookEvents(wrap("calls", `{"calls":"x"}`)); err == nil {
		t.Error("malformed calls change accepted")
	}
}

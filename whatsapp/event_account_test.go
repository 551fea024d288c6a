package whatsapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func parseEvents(t *testing.T, body []byte) WebhookEvents {
	t.Helper()
	ev, err := ParseWebhookEvents(body)
	if err != nil {
		t.Fatalf("ParseWebhookEvents: %v", err)
	}
	return ev
}

// accountBody wraps one change value of field in Meta's envelope.
func accountBody(field, value string, entryTime int64) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":%d,"changes":[{"field":%q,"value":%s}]}]}`,
		entryTime, field, value)
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// W11: the number, the event, its calling settings (R2's shape), the time,
// and the value as Raw; consumed.
func TestParseAccountSettingsUpdate(t *testing.T) {
	body := readTestdata(t, "webhook-account-settings.json")
	ev := parseEvents(t, body)
	if ev.Other || len(ev.AccountEvents) != 1 || len(ev.Calls)+len(ev.Statuses)+len(ev.PermissionReplies)+len(ev.Voicemails) != 0 {
		t.Fatalf("%+v", ev)
	}
	ae := ev.AccountEvents[0]
	if ae.Field != "account_settings_update" || ae.Event != "PHONE_NUMBER_SETTINGS" || ae.PhoneNumberID != "106540352242922" ||
		ae.WABAID != "102290129340398" || ae.PhoneNumber != "" || !ae.Timestamp.Equal(time.Unix(1751241600, 0)) ||
		ae.ViolationType != "" || ae.RestrictionType != "" || !ae.Expiration.IsZero() {
		t.Errorf("%+v", ae)
	}
	want := &CallingSettings{
		Status: "ENABLED", CallIconVisibility: "DISABLE_ALL", CallbackPermissionStatus: "ENABLED",
		CallHours: &CallHours{Status: "ENABLED", TimezoneID: "America/Manaus",
			WeeklyOperatingHours: []WeeklyHours{{"MONDAY", "0400", "1020"}, {"TUESDAY", "0108", "1020"}},
			HolidaySchedule:      []Holiday{{"2026-01-01", "0000", "2359"}}},
		SIP:                     &SIPSettings{Status: "DISABLED", Servers: []SIPServer{{Hostname: "sip.example.com", Port: 5061}}},
		SRTPKeyExchangeProtocol: "DTLS",
	}
	if !reflect.DeepEqual(ae.Calling, want) {
		t.Errorf("calling %s", mustJSON(t, ae.Calling))
	}
	var env struct {
		Entry []struct {
			Changes []struct {
				Value json.RawMessage `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if string(ae.Raw) != compact(t, string(env.Entry[0].Changes[0].Value)) {
		t.Errorf("raw %s", ae.Raw)
	}

	// Meta's own example writes the type "[phone_number_settings]"; a
	// change without calling (null) is not the gateway's; an unreadable
	// calling object still makes an event, without Calling.
	for name, tc := range map[string]struct {
		value        string
		event        string
		calling      bool
		other        bool
		phoneNumber  string
		hasTimestamp bool
	}{
		"bracketed type": {`{"timestamp":"1671644824","type":"[phone_number_settings]","phone_number_settings":{"phone_number_id":"P","calling":{"status":"DISABLED"}}}`, "PHONE_NUMBER_SETTINGS", true, false, "P", true},
		"no type":        {`{"phone_number_settings":{"phone_number_id":7,"calling":{"status":"DISABLED"}}}`, "PHONE_NUMBER_SETTINGS", true, false, "7", false},
		"calling null":   {`{"type":"PHONE_NUMBER_SETTINGS","phone_number_settings":{"phone_number_id":"P","calling":null}}`, "PHONE_NUMBER_SETTINGS", false, true, "P", false},
		"odd calling":    {`{"type":"PHONE_NUMBER_SETTINGS","phone_number_settings":{"phone_number_id":"P","calling":{"call_hours":"x"}}}`, "PHONE_NUMBER_SETTINGS", false, false, "P", false},
		"other settings": {`{"type":"BUSINESS_PROFILE_SETTINGS"}`, "BUSINESS_PROFILE_SETTINGS", false, true, "", false},
	} {
		ev := parseEvents(t, accountBody("account_settings_update", tc.value, 0))
		if len(ev.AccountEvents) != 1 {
			t.Errorf("%s: %d events", name, len(ev.AccountEvents))
			continue
		}
		ae := ev.AccountEvents[0]
		if ae.Event != tc.event || (ae.Calling != nil) != tc.calling || ev.Other != tc.other || ae.PhoneNumberID != tc.phoneNumber ||
			ae.Timestamp.IsZero() == tc.hasTimestamp {
			t.Errorf("%s: %+v other %v", name, ae, ev.Other)
		}
	}
	// A value that is not an object is only Other.
	if ev := parseEvents(t, accountBody("account_settings_update", `[1,2]`, 0)); !ev.Other || len(ev.AccountEvents) != 0 {
		t.Errorf("odd value: %+v", ev)
	}
}

// W12: violations, and restrictions one event each; the number is Meta's
// display number; the time is the entry's.
func TestParseAccountUpdate(t *testing.T) {
	ev := parseEvents(t, readTestdata(t, "webhook-account-violation.json"))
	if ev.Other || len(ev.AccountEvents) != 1 {
		t.Fatalf("%+v", ev)
	}
	ae := ev.AccountEvents[0]
	if ae.Field != "account_update" || ae.Event != "ACCOUNT_VIOLATION" || ae.ViolationType != "USER_INITIATED_CALLS_LOW_PICKUP_RATE" ||
		ae.PhoneNumber != "15550783881" || ae.PhoneNumberID != "" || ae.RestrictionType != "" || ae.Calling != nil ||
		!ae.Timestamp.Equal(time.Unix(1751241601, 0)) || !strings.Contains(string(ae.Raw), "remediation") {
		t.Errorf("%+v", ae)
	}

	ev = parseEvents(t, readTestdata(t, "webhook-account-restriction.json"))
	if ev.Other || len(ev.AccountEvents) != 2 {
		t.Fatalf("%+v", ev)
	}
	r1, r2 := ev.AccountEvents[0], ev.AccountEvents[1]
	if r1.Event != "ACCOUNT_RESTRICTION" || r1.RestrictionType != "RESTRICTED_BUSINESS_INITIATED_CALLING" ||
		!r1.Expiration.Equal(time.Unix(1751846402, 0)) || r1.PhoneNumber != "15550783881" || !r1.Timestamp.Equal(time.Unix(1751241602, 0)) {
		t.Errorf("first %+v", r1)
	}
	if r2.RestrictionType != "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN" || !r2.Expiration.IsZero() || r1.key == r2.key {
		t.Errorf("second %+v", r2)
	}

	// Account updates about something else than calling are delivered and
	// Other (another application may need them).
	for name, tc := range map[string]struct {
		value  string
		events int
		other  bool
	}{
		"partner":              {`{"event":"PARTNER_ADDED","waba_info":{"waba_id":"1","owner_business_id":"2"}}`, 1, true},
		"messaging violation":  {`{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"ADULT"}}`, 1, true},
		"messaging restricted": {`{"event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_BIZ_INITIATED_MESSAGING","expiration":1}]}`, 1, true},
		"mixed restrictions":   {`{"event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_USER_INITIATED_CALLING"},{"restriction_type":"RESTRICTED_CUSTOMER_INITIATED_MESSAGING"}]}`, 2, true},
		"calling restricted":   {`{"event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_USER_INITIATED_CALLING","expiration":"1641848057"}]}`, 1, false},
		"calling, odd value":   {`{"event":"ACCOUNT_RESTRICTION","restriction_info":{"restriction_type":"RESTRICTED_USER_INITIATED_CALLING"}}`, 0, true},
	} {
		ev := parseEvents(t, accountBody("account_update", tc.value, 1641848059))
		if len(ev.AccountEvents) != tc.events || ev.Other != tc.other {
			t.Errorf("%s: %d events other %v", name, len(ev.AccountEvents), ev.Other)
		}
	}

	// Restrictions per change are bounded.
	var b strings.Builder
	b.WriteString(`{"event":"ACCOUNT_RESTRICTION","restriction_info":[`)
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"restriction_type":"RESTRICTED_USER_INITIATED_CALLING","expiration":%d}`, i+1)
	}
	b.WriteString(`]}`)
	if ev := parseEvents(t, accountBody("account_update", b.String(), 1)); len(ev.AccountEvents) != maxAccountRestrictions {
		t.Errorf("%d events from one change", len(ev.AccountEvents))
	}
}

// Raw never holds a SIP password, and is bounded valid JSON.
func TestAccountEventRaw(t *testing.T) {
	value := `{"type":"PHONE_NUMBER_SETTINGS","phone_number_settings":{"phone_number_id":"P","calling":{"sip":{"status":"ENABLED",` +
		`"servers":[{"hostname":"h","sip_user_password":"` + testSIPPassword + `"}]}}}}`
	ae := parseEvents(t, accountBody("account_settings_update", value, 0)).AccountEvents[0]
	if strings.Contains(string(ae.Raw), testSIPPassword) || !strings.Contains(string(ae.Raw), `"sip_user_password":"•••"`) || !json.Valid(ae.Raw) {
		t.Errorf("raw %s", ae.Raw)
	}
	if ae.Calling.SIP.Servers[0].SIPUserPassword != testSIPPassword || ae.Calling.Masked().SIP.Servers[0].SIPUserPassword != "•••" {
		t.Errorf("calling %+v", ae.Calling.SIP)
	}
	long := `{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"LOW_USER_INITIATED_CALLING_QUALITY","remediation":"` +
		strings.Repeat("é", MaxAccountEventRaw) + `"}}`
	ae = parseEvents(t, accountBody("account_update", long, 0)).AccountEvents[0]
	var s string
	if len(ae.Raw) > MaxAccountEventRaw+64 || json.Unmarshal(ae.Raw, &s) != nil || !strings.HasPrefix(s, `{"event":"ACCOUNT_VIOLATION"`) {
		t.Errorf("long raw: %d bytes, %.80s", len(ae.Raw), ae.Raw)
	}
}

// W9: an audio message whose id is a wacid is a voicemail; other audio is
// chat.
func TestParseVoicemail(t *testing.T) {
	ev := parseEvents(t, readTestdata(t, "webhook-voicemail.json"))
	if ev.Other || len(ev.Voicemails) != 1 || len(ev.PermissionReplies) != 0 {
		t.Fatalf("%+v", ev)
	}
	want := Voicemail{
		PhoneNumberID: "106540352242922", From: "5511987654321", FromUserID: "BR.77700000000000000042",
		CallID: "wacid.HBgLMTQxMjYxMzYyASGVoicemail0001", MediaID: "1002764438271669",
		MimeType: "audio/ogg; codecs=opus", SHA256: "Y9vvGyeo3n76ptkXu3CwDBsnzbRFqpjHskQdMGSVqas=",
		Timestamp: time.Unix(1751241700, 0).UTC(),
	}
	if !reflect.DeepEqual(ev.Voicemails[0], want) {
		t.Errorf("got  %+v\nwant %+v", ev.Voicemails[0], want)
	}
	if u := ev.Voicemails[0].User(); u.WaID != "5511987654321" || u.BSUID != "BR.77700000000000000042" {
		t.Errorf("user %+v", u)
	}
	wrap := func(msgs string) []byte {
		return []byte(`{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P"},"messages":[` + msgs + `]}}]}]}`)
	}
	vm := `{"id":"wacid.V1","from":"1","type":"audio","audio":{"id":12345}}`
	for name, tc := range map[string]struct {
		body       []byte
		voicemails int
		other      bool
	}{
		"media id as a number": {wrap(vm), 1, false},
		"without type":         {wrap(`{"id":"wacid.V2","audio":{"id":"m"}}`), 1, false},
		"chat audio":           {wrap(`{"id":"wamid.A","type":"audio","audio":{"id":"m"}}`), 0, true},
		"wacid, not audio":     {wrap(`{"id":"wacid.T","type":"text","text":{"body":"x"}}`), 0, true},
		"audio type, no audio": {wrap(`{"id":"wacid.N","type":"audio"}`), 0, true},
		"voicemail and text":   {wrap(vm + `,{"id":"wamid.T","type":"text"}`), 1, true},
	} {
		ev := parseEvents(t, tc.body)
		if len(ev.Voicemails) != tc.voicemails || ev.Other != tc.other {
			t.Errorf("%s: %d voicemails, other %v", name, len(ev.Voicemails), ev.Other)
		}
	}
	if ev := parseEvents(t, wrap(vm)); ev.Voicemails[0].MediaID != "12345" || ev.Voicemails[0].PhoneNumberID != "P" {
		t.Errorf("%+v", ev.Voicemails[0])
	}
}

// Account events and voicemails count toward MaxWebhookEvents.
func TestAccountEventsAndVoicemailsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"entry":[{"changes":[`)
	for i := range MaxWebhookEvents + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"field":"account_update","value":{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"LOW_USER_INITIATED_CALLING_QUALITY"},"n":%d}}`, i)
	}
	b.WriteString(`]}]}`)
	if ev, err := ParseWebhookEvents([]byte(b.String())); err == nil || ev.AccountEvents != nil {
		t.Errorf("%d account changes: %v", MaxWebhookEvents+1, err)
	}
	b.Reset()
	b.WriteString(`{"entry":[{"changes":[{"field":"messages","value":{"messages":[`)
	for i := range MaxWebhookEvents + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"wacid.%d","type":"audio","audio":{"id":"m"}}`, i)
	}
	b.WriteString(`]}}]}]}`)
	if _, err := ParseWebhookEvents([]byte(b.String())); err == nil {
		t.Errorf("%d voicemails accepted", MaxWebhookEvents+1)
	}
}

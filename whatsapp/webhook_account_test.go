package whatsapp

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// accountRig records account events and voicemails besides the calls.
type accountRig struct {
	*hookRig
	mu         sync.Mutex
	accounts   []AccountEvent
	voicemails []Voicemail
	order      []string // call events and voicemails as delivered
}

func newAccountRig(t *testing.T, mod func(*WebhookConfig)) *accountRig {
	a := &accountRig{}
	a.hookRig = newHookRig(t, func(c *WebhookConfig) {
		onCall := c.OnCall
		c.OnCall = func(ev CallEvent) {
			onCall(ev)
			a.mu.Lock()
			a.order = append(a.order, ev.CallID+" "+ev.Event)
			a.mu.Unlock()
		}
		c.OnAccountEvent = func(ev AccountEvent) {
			a.mu.Lock()
			a.accounts = append(a.accounts, ev)
			a.mu.Unlock()
		}
		c.OnVoicemail = func(v Voicemail) {
			a.mu.Lock()
			a.voicemails = append(a.voicemails, v)
			a.order = append(a.order, v.CallID+" voicemail")
			a.mu.Unlock()
		}
		if mod != nil {
			mod(c)
		}
	})
	return a
}

func (a *accountRig) drainAll() ([]AccountEvent, []Voicemail, []string, []WebhookResult) {
	_, _, results := a.drain()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accounts, a.voicemails, a.order, results
}

func settingsWebhook(pnid string, ts int64, status string) []byte {
	return accountBody("account_settings_update", fmt.Sprintf(
		`{"messaging_product":"whatsapp","timestamp":"%d","type":"PHONE_NUMBER_SETTINGS","phone_number_settings":{"phone_number_id":%q,"calling":{"status":%q}}}`,
		ts, pnid, status), 0)
}

// Account events are delivered once per change (per restriction); Meta's
// retries are duplicates; a settings change older than the number's newest
// is stale.
func TestWebhookAccountEventDispatch(t *testing.T) {
	r := newAccountRig(t, nil)
	for _, b := range [][]byte{
		readTestdata(t, "webhook-account-settings.json"),
		readTestdata(t, "webhook-account-violation.json"),
		readTestdata(t, "webhook-account-restriction.json"),
		readTestdata(t, "webhook-account-restriction.json"), // Meta's retry
		readTestdata(t, "webhook-account-violation.json"),   // Meta's retry
		settingsWebhook("P1", 200, "DISABLED"),
		settingsWebhook("P1", 100, "ENABLED"), // older: stale
		settingsWebhook("P2", 100, "ENABLED"), // another number
		settingsWebhook("P1", 200, "ENABLED"), // same second, another change
		settingsWebhook("P1", 200, "ENABLED"), // its retry
	} {
		if code := r.postSigned(b); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	accounts, _, _, results := r.drainAll()
	want := []WebhookResult{WebhookAccepted, WebhookAccepted, WebhookAccepted, WebhookAccepted,
		WebhookDuplicate, WebhookDuplicate, WebhookDuplicate,
		WebhookAccepted, WebhookStale, WebhookAccepted, WebhookAccepted, WebhookDuplicate}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v\nwant    %v", results, want)
	}
	var got []string
	for _, ae := range accounts {
		s := ae.Event + " " + ae.PhoneNumberID + ae.PhoneNumber + " " + ae.ViolationType + ae.RestrictionType
		if ae.Calling != nil {
			s += " " + ae.Calling.Status
		}
		got = append(got, s)
	}
	wantEvents := []string{
		"PHONE_NUMBER_SETTINGS 106540352242922  ENABLED",
		"ACCOUNT_VIOLATION 15550783881 USER_INITIATED_CALLS_LOW_PICKUP_RATE",
		"ACCOUNT_RESTRICTION 15550783881 RESTRICTED_BUSINESS_INITIATED_CALLING",
		"ACCOUNT_RESTRICTION 15550783881 RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN",
		"PHONE_NUMBER_SETTINGS P1  DISABLED",
		"PHONE_NUMBER_SETTINGS P2  ENABLED",
		"PHONE_NUMBER_SETTINGS P1  ENABLED",
	}
	if !reflect.DeepEqual(got, wantEvents) { // in arrival order
		t.Errorf("delivered\n%s", strings.Join(got, "\n"))
	}
}

// inOrder reports whether want appears in got in that order.
func inOrder(got, want []string) bool {
	i := 0
	for _, s := range got {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

func voicemailBody(callID, mediaID string) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{
		"metadata":{"phone_number_id":"P"},"messages":[{"id":%q,"from":"5511987654321","timestamp":"1751241700","type":"audio",
		"audio":{"id":%q,"mime_type":"audio/ogg; codecs=opus","sha256":"x"}}]}}]}]}`, callID, mediaID)
}

// A voicemail is delivered once per call, after the call's events; one
// without a media id is refused.
func TestWebhookVoicemailDispatch(t *testing.T) {
	r := newAccountRig(t, nil)
	for _, b := range [][]byte{
		callBody("wacid.VM1", "connect", 100),
		callBody("wacid.VM1", "terminate", 130),
		voicemailBody("wacid.VM1", "1002764438271669"),
		voicemailBody("wacid.VM1", "1002764438271669"), // Meta's retry
		readTestdata(t, "webhook-voicemail.json"),
		voicemailBody("wacid.VM3", " "),
	} {
		if code := r.postSigned(b); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	_, voicemails, order, results := r.drainAll()
	want := []WebhookResult{WebhookAccepted, WebhookAccepted, WebhookAccepted, WebhookDuplicate, WebhookAccepted, WebhookMalformed}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
	if len(voicemails) != 2 || voicemails[0].CallID != "wacid.VM1" || voicemails[0].MediaID != "1002764438271669" ||
		voicemails[1].CallID != "wacid.HBgLMTQxMjYxMzYyASGVoicemail0001" {
		t.Errorf("voicemails %+v", voicemails)
	}
	if !inOrder(order, []string{"wacid.VM1 connect", "wacid.VM1 terminate", "wacid.VM1 voicemail"}) {
		t.Errorf("order %v", order)
	}
}

// Without their callbacks, account events and voicemails are not the
// gateway's: ignored and forwarded, as before. With them, what is about
// calling is consumed; account updates about anything else are delivered
// and forwarded.
func TestWebhookAccountAndVoicemailForwarding(t *testing.T) {
	calling := [][]byte{
		readTestdata(t, "webhook-account-settings.json"),
		readTestdata(t, "webhook-account-violation.json"),
		readTestdata(t, "webhook-account-restriction.json"),
		readTestdata(t, "webhook-voicemail.json"),
	}

	recv := newFwdReceiver(t, nil)
	r := newHookRig(t, forwardTo(recv.srv.URL, nil))
	for _, b := range calling {
		r.postSigned(b)
	}
	waitFor(t, "the forwards", func() bool { got, _ := recv.received(); return len(got) == len(calling) })
	_, _, results := r.drain()
	if countResults(results, WebhookIgnored) != len(calling) || countResults(results, WebhookAccepted) != 0 {
		t.Errorf("without callbacks: %v", results)
	}

	recv2 := newFwdReceiver(t, nil)
	a := newAccountRig(t, forwardTo(recv2.srv.URL, nil))
	for _, b := range calling {
		a.postSigned(b)
	}
	partner := accountBody("account_update", `{"event":"PARTNER_ADDED","waba_info":{"waba_id":"1"}}`, 1)
	a.postSigned(partner)
	waitFor(t, "the partner event's forward", func() bool { got, _ := recv2.received(); return len(got) == 1 })
	accounts, voicemails, _, results := a.drainAll()
	if got, bad := recv2.received(); len(got) != 1 || string(got[0].Body) != string(partner) || bad != 0 {
		t.Errorf("forwarded %d bodies", len(got))
	}
	if len(accounts) != 5 || len(voicemails) != 1 || accounts[4].Event != "PARTNER_ADDED" {
		t.Errorf("%d account events, %d voicemails", len(accounts), len(voicemails))
	}
	if countResults(results, WebhookAccepted) != 6 || countResults(results, WebhookForwarded) != 1 {
		t.Errorf("results %v", results)
	}
}

// A settings webhook carrying a SIP password never puts it in the logs.
func TestWebhookAccountEventNotLogged(t *testing.T) {
	r := newAccountRig(t, nil)
	value := `{"timestamp":"1","type":"PHONE_NUMBER_SETTINGS","phone_number_settings":{"phone_number_id":"P","calling":{"sip":{"servers":[{"sip_user_password":"` +
		testSIPPassword + `"}]}}}}`
	r.postSigned(accountBody("account_settings_update", value, 0))
	accounts, _, _, _ := r.drainAll()
	if len(accounts) != 1 {
		t.Fatalf("%d events", len(accounts))
	}
	for _, e := range r.logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, testSIPPassword) {
			t.Errorf("logged %s", line)
		}
	}
	if len(r.logs.FilterMessage("webhook account event").All()) != 1 {
		t.Error("the account event was not logged")
	}
}

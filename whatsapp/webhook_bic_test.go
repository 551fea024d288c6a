package whatsapp

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func bicBody(callID, what string, ts int64) []byte {
	switch what {
	case "RINGING", "ACCEPTED", "REJECTED":
		return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{
		"metadata":{"phone_number_id":"P"},"statuses":[{"id":%q,"type":"call","status":%q,"timestamp":"%d","recipient_id":"5511987654321"}]}}]}]}`,
			callID, what, ts)
	case "connect":
		return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"calls","value":{
		"metadata":{"phone_number_id":"P"},"calls":[{"id":%q,"event":"connect","timestamp":"%d","direction":"BUSINESS_INITIATED",
		"from":"15550783881","to":"5511987654321","session":{"sdp_type":"answer","sdp":"v=0\r\n"}}]}}]}]}`, callID, ts)
	}
	return callBody(callID, what, ts)
}

// The statuses of a business-initiated call never make its connect (Meta's
// answer) stale or a duplicate, whatever their timestamps and order; keys
// of connect, terminate, statuses and replies do not collide.
func TestWebhookBICConnectNeverRefusedByStatuses(t *testing.T) {
	r := newHookRig(t, nil)
	for _, b := range [][]byte{
		bicBody("wacid.B1", "RINGING", 100),
		bicBody("wacid.B1", "ACCEPTED", 300), // the audit status, ahead of the connect
		bicBody("wacid.B1", "connect", 200),
		bicBody("wacid.B1", "connect", 200), // Meta's retry
		bicBody("wacid.B1", "ACCEPTED", 300),
		bicBody("wacid.B1", "terminate", 400),
		bicBody("wacid.B2", "ACCEPTED", 900), // another call's status, later
		bicBody("wacid.B2", "connect", 500),
	} {
		if code := r.postSigned(b); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	calls, stats, results := r.drain()
	if got := eventNames(calls); !reflect.DeepEqual(got, []string{"connect", "terminate", "connect"}) {
		t.Errorf("calls %v", got)
	}
	if len(calls) > 0 && calls[0].SDPType != "answer" {
		t.Errorf("connect %+v", calls[0])
	}
	if len(stats) != 3 || stats[0].Status != "RINGING" || stats[1].Status != "ACCEPTED" {
		t.Errorf("statuses %+v", stats)
	}
	want := []WebhookResult{WebhookAccepted, WebhookAccepted, WebhookAccepted, WebhookDuplicate, WebhookDuplicate,
		WebhookAccepted, WebhookAccepted, WebhookAccepted}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

func TestWebhookPermissionReplyDispatch(t *testing.T) {
	got := make(chan PermissionReply, 64)
	r := newHookRig(t, func(c *WebhookConfig) {
		c.OnPermissionReply = func(p PermissionReply) { got <- p }
	})
	body := readTestdata(t, "webhook-permission-reply.json")
	for range 2 { // Meta's retry is a duplicate
		if code := r.postSigned(body); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	if code := r.postSigned(replyBody("  ", "1", "accept", "")); code != http.StatusOK { // no id: refused
		t.Fatalf("status %d", code)
	}
	// Replies of one user keep their order.
	for i := range 10 {
		r.postSigned(replyBody(fmt.Sprint("wamid.O", i), "5511900000000", []string{"accept", "reject"}[i%2], ""))
	}
	_, _, results := r.drain()
	close(got)
	var replies []PermissionReply
	for p := range got {
		replies = append(replies, p)
	}
	if len(replies) != 11 || replies[0].MessageID != "wamid.REPLY0001=" || !replies[0].Accepted {
		t.Fatalf("delivered %+v", replies)
	}
	for i, p := range replies[1:] {
		if p.MessageID != fmt.Sprint("wamid.O", i) {
			t.Errorf("reply %d: %s, out of order", i, p.MessageID)
		}
	}
	want := []WebhookResult{WebhookAccepted, WebhookDuplicate, WebhookMalformed}
	for range 10 {
		want = append(want, WebhookAccepted)
	}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results %v, want %v", results, want)
	}
}

// Without OnPermissionReply, replies are not admitted: the body is
// "ignored" (and forwarded when forwarding is on, see the forward tests).
func TestWebhookPermissionReplyWithoutConsumer(t *testing.T) {
	r := newHookRig(t, nil)
	r.postSigned(readTestdata(t, "webhook-permission-reply.json"))
	_, _, results := r.drain()
	if !reflect.DeepEqual(results, []WebhookResult{WebhookIgnored}) {
		t.Errorf("results %v", results)
	}
}

func TestWebhookPermissionRepliesBounded(t *testing.T) {
	r := newHookRig(t, func(c *WebhookConfig) { c.OnPermissionReply = func(PermissionReply) {} })
	var b strings.Builder
	b.WriteString(`{"entry":[{"changes":[{"field":"messages","value":{"messages":[`)
	for i := range MaxWebhookEvents + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"wamid.%d","interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept"}}}`, i)
	}
	b.WriteString(`]}}]}]}`)
	if code := r.postSigned([]byte(b.String())); code != http.StatusBadRequest {
		t.Errorf("%d replies in one body: %d, want 400", MaxWebhookEvents+1, code)
	}
	_, _, results := r.drain()
	if !reflect.DeepEqual(results, []WebhookResult{WebhookMalformed}) {
		t.Errorf("results %v", results)
	}
	// Chat messages do not count: a body of many is only Other.
	var c strings.Builder
	c.WriteString(`{"entry":[{"changes":[{"field":"messages","value":{"messages":[`)
	for i := range MaxWebhookEvents + 1 {
		if i > 0 {
			c.WriteByte(',')
		}
		fmt.Fprintf(&c, `{"id":"wamid.%d","type":"text"}`, i)
	}
	c.WriteString(`]}}]}]}`)
	if ev, err := ParseWebhookEvents([]byte(c.String())); err != nil || !ev.Other {
		t.Errorf("many chat messages: %v %v", ev.Other, err)
	}
}

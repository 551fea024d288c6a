package gateway

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp"
)

func TestPermissionCache(t *testing.T) {
	fp := &fakePermissions{perm: whatsapp.CallPermission{Status: "temporary", CanCall: true}}
	p := newPermissions(fp, newMetrics(), zap.NewNop())
	now := time.Unix(1_800_000_000, 0)
	p.now = func() time.Time { return now }
	u := waUser{waID: "14085551234"}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := p.state(ctx, "1", u, false); err != nil {
			t.Fatal(err)
		}
	}
	if fp.reads != 1 {
		t.Errorf("%d reads of Meta's state for 3 calls within the TTL, want 1", fp.reads)
	}
	now = now.Add(permissionTTL)
	p.state(ctx, "1", u, false)
	if fp.reads != 2 {
		t.Errorf("%d reads after the TTL, want 2", fp.reads)
	}
	p.state(ctx, "1", u, true)
	if fp.reads != 3 {
		t.Errorf("a fresh read was served from the cache")
	}
	// A reply drops the user's entry and wakes who waits for it, by
	// number or by BSUID.
	replies, stop := p.wait("1", waUser{bsuid: "US.42"})
	defer stop()
	p.reply(whatsapp.PermissionReply{PhoneNumberID: "1", From: "14085551234", FromUserID: "US.42", Accepted: true})
	select {
	case r := <-replies:
		if !r.Accepted {
			t.Error("the reply lost its answer")
		}
	case <-time.After(time.Second):
		t.Fatal("the waiter was not woken")
	}
	p.state(ctx, "1", u, false)
	if fp.reads != 4 {
		t.Error("the cache outlived the user's reply")
	}
	if got := p.repliesOf("1", "US.42"); len(got) != 1 || got[0].Response != "accept" || got[0].Source != "user_action" {
		t.Errorf("replies kept %+v", got)
	}
	// Errors are not cached.
	fp.permErr = errors.New("graph down")
	p.forget("1", u)
	if _, err := p.state(ctx, "1", u, false); err == nil {
		t.Error("an error was not returned")
	}
}

func TestPermissionCacheBounded(t *testing.T) {
	fp := &fakePermissions{perm: whatsapp.CallPermission{Status: "permanent", CanCall: true}}
	p := newPermissions(fp, newMetrics(), zap.NewNop())
	for i := 0; i < maxCachedPermissions+10; i++ {
		p.state(context.Background(), "1", waUser{bsuid: "US." + itoa(i)}, false)
	}
	if n := len(p.cache); n > maxCachedPermissions {
		t.Errorf("%d cached entries, at most %d", n, maxCachedPermissions)
	}
	for i := 0; i < maxReplyLog+5; i++ {
		p.reply(whatsapp.PermissionReply{PhoneNumberID: "1", From: "1408555" + itoa(1000+i)})
	}
	if n := len(p.repliesOf("", "")); n != maxReplyLog {
		t.Errorf("%d replies kept, want %d", n, maxReplyLog)
	}
}

func TestRegistryHoldsEarlyWebhooks(t *testing.T) {
	r := newRegistry(time.Minute)
	now := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return now }
	for i := 0; i < maxHeldPerID+3; i++ {
		r.hold("wacid.a", heldEvent{status: &whatsapp.StatusEvent{Status: "RINGING"}})
	}
	if got := r.place("wacid.a", &call{}); len(got) != maxHeldPerID {
		t.Errorf("%d events held for one id, at most %d", len(got), maxHeldPerID)
	}
	if got := r.place("wacid.a", &call{}); len(got) != 0 {
		t.Error("held events handed out twice")
	}
	// Stale ones are dropped, and the ids held are bounded.
	r.hold("wacid.old", heldEvent{status: &whatsapp.StatusEvent{}})
	now = now.Add(heldFor + time.Second)
	if got := r.place("wacid.old", &call{}); len(got) != 0 {
		t.Error("a stale held event was handed out")
	}
	for i := 0; i < maxHeldIDs; i++ {
		r.hold("wacid."+itoa(i), heldEvent{status: &whatsapp.StatusEvent{}})
	}
	if r.hold("wacid.more", heldEvent{}) {
		t.Error("more ids held than the bound")
	}
	now = now.Add(heldFor + time.Second)
	if !r.hold("wacid.more", heldEvent{}) {
		t.Error("stale ids not dropped to make room")
	}
	// A placed call is found by its WhatsApp id, and forgotten after.
	c := &call{}
	r.place("wacid.b", c)
	if r.get("wacid.b") != c {
		t.Error("placed call not found by its id")
	}
	r.unplace("wacid.b")
	if r.get("wacid.b") != nil {
		t.Error("unplaced call still found")
	}
}

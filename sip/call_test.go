package sip

import (
	"context"
	"testing"
	"time"
)

func TestReasonHeaderValue(t *testing.T) {
	for _, tc := range []struct {
		r    Reason
		want string
	}{
		{Reason{}, ""},
		{Reason{Protocol: "Q.850", Cause: 16}, "Q.850;cause=16"},
		{Reason{Protocol: "Q.850", Cause: 16, Text: "caller hung up"}, `Q.850;cause=16;text="caller hung up"`},
		{Reason{Protocol: "SIP", Cause: 488, Text: "a \"quoted\"\r\ntext\\"}, `SIP;cause=488;text="a quotedtext"`},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// sipp as the PBX checks that our BYE carries the Reason header.
func TestHangupWithReason(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_bye_reason.xml", "u1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "sip:agents", FromUser: "+15551234567"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HangupWithReason(ctx, Reason{Protocol: "Q.850", Cause: 16, Text: "caller hung up"}); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	p.wait(t, 10*time.Second)
}

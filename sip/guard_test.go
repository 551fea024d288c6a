package sip

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestStrangerRTPNeitherHeardNorAnswered: sipp answers as the PBX and
// echoes RTP; a stranger sends RTP to the call's port before the PBX's
// first packet and after it. ReadPacket returns only sipp's echoes, the
// stranger receives nothing, and the drops are counted.
func TestStrangerRTPNeitherHeardNorAnswered(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	mp := freePort(t, "udp") &^ 1
	p := startSipp(t, "uas_answer_echo.xml", "u1", "-rtp_echo", "-mi", "127.0.0.1", "-mp", fmt.Sprint(mp))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ua.Invite(ctx, InviteRequest{
		Trunk: sippTrunk(p, "udp"), To: "sip:agents", FromUser: "+15551234567", DisplayName: `Ana "the tester"`,
		Headers: []Header{{"x-wa-meta-wacid", "wacid.ABC123"}}, // what the scenario checks
	})
	if err != nil {
		t.Fatal(err)
	}
	stranger := udpPeer(t)
	// Before the PBX's first packet (sipp only echoes what we send).
	for i := 0; i < 5; i++ {
		if _, err := stranger.WriteToUDP(rtpPkt(0, 0xBAD, 0xEE), c.LocalRTPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // queued on the socket ahead of the echoes
	echoPayloads(t, c, 5)             // each read must be sipp's echo of what we wrote
	if n := c.StrangerPackets(); n != 5 {
		t.Fatalf("stranger packets %d after the first echoes, want 5", n)
	}
	// After it.
	for i := 0; i < 5; i++ {
		stranger.WriteToUDP(rtpPkt(0, 0xBAD, 0xEE), c.LocalRTPAddr())
	}
	time.Sleep(50 * time.Millisecond)
	echoPayloads(t, c, 5)
	if n := c.StrangerPackets(); n != 10 {
		t.Errorf("stranger packets %d, want 10", n)
	}
	expectNothing(t, stranger, 300*time.Millisecond, "the stranger")
	if got := c.RemoteRTPAddr().String(); got != fmt.Sprintf("127.0.0.1:%d", mp) {
		t.Errorf("remote RTP %s, want sipp's media port %d", got, mp)
	}
	if n := ua.Stats().StrangerRTPPackets; n < 10 {
		t.Errorf("UA stranger RTP total %d, want >= 10", n)
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	p.wait(t, 10*time.Second)
}

package wasim

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// A business peer answers, pre-accepts, accepts and sends a 600 Hz tone with
// a DTMF digit; the caller talks 1000 Hz for two seconds and hangs up.
func TestRoundTrip(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{From: "15551234567", ProfileName: "Ada", ToneHz: 1000, Duration: 2 * time.Second, CTAPayload: "cta-1", KeepAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := hooks.next(t, "connect", call.ID(), 5*time.Second)
	if ev.call["cta_payload"] != "cta-1" || ev.call["from"] != "15551234567" {
		t.Errorf("connect webhook fields: %v", ev.call)
	}
	p := newPeer(t, offerOf(ev))
	if code, body := graphPost(t, sim, testToken, action(call.ID(), "pre_accept", p.answer)); code != 200 || body["success"] != true {
		t.Fatalf("pre_accept: %d %v", code, body)
	}
	if call.State() != StatePreAccepted {
		t.Fatalf("state %s after pre_accept", call.State())
	}
	p.waitUp(5 * time.Second)
	accept := action(call.ID(), "accept", p.answer)
	accept["biz_opaque_callback_data"] = "opaque-7"
	if code, body := graphPost(t, sim, testToken, accept); code != 200 || body["success"] != true {
		t.Fatalf("accept: %d %v", code, body)
	}
	p.sendTone(600, 0, 25)

	rep := waitReport(t, call, 10*time.Second)
	t.Logf("\n%s", rep)
	term := hooks.next(t, "terminate", call.ID(), 5*time.Second)
	if term.call["status"] != "COMPLETED" || term.call["start_time"] == nil || term.call["end_time"] == nil ||
		term.call["duration"] == nil || term.call["biz_opaque_callback_data"] != "opaque-7" {
		t.Errorf("terminate webhook: %s", term.raw)
	}
	if rep.Outcome != OutcomeCompletedByUser || len(rep.Violations) != 0 {
		t.Errorf("outcome %s, violations %v", rep.Outcome, rep.Violations)
	}
	if math.Abs(rep.ReceivedFreqHz-600) > 5 || rep.ReceivedPurity < 0.8 {
		t.Errorf("received %.0f Hz purity %.2f, want 600 Hz", rep.ReceivedFreqHz, rep.ReceivedPurity)
	}
	if rep.ReceivedLevelDBFS < -25 || rep.ReceivedLevelDBFS > -10 {
		t.Errorf("received level %.1f dBFS", rep.ReceivedLevelDBFS)
	}
	// KeepAudio: the decoded audio, frame by frame, for checks of its own.
	if n := len(rep.ReceivedPCM); n < 16000 || float64(n)/16000 != rep.ReceivedSeconds {
		t.Errorf("kept %d samples for %.2f s of audio", n, rep.ReceivedSeconds)
	} else if f, _, _ := analyse(rep.ReceivedPCM[len(rep.ReceivedPCM)-8000:], 16000); math.Abs(f-600) > 5 {
		t.Errorf("the last half second kept is %.0f Hz, want 600", f)
	}
	if rep.PacketsReceived < 60 || rep.SSRCsReceived != 1 || rep.SeqGaps != 0 || rep.DTMFPacketsReceived != 3 {
		t.Errorf("received %d packets, %d SSRCs, %d gaps, %d DTMF", rep.PacketsReceived, rep.SSRCsReceived, rep.SeqGaps, rep.DTMFPacketsReceived)
	}
	if rep.PacketsSent < 80 || rep.PacketsSent > 110 {
		t.Errorf("sent %d packets in a 2 s call, want about 100", rep.PacketsSent)
	}
	if rep.LongestSilenceGap > 500*time.Millisecond {
		t.Errorf("longest silence %s", rep.LongestSilenceGap)
	}
	if got := strings.Join(rep.ActionsReceived, ","); got != "pre_accept,accept" {
		t.Errorf("actions %s", got)
	}
	// What the business heard: the caller's 1000 Hz tone.
	pcm, n := p.received()
	f, purity, _ := analyse(pcm, 16000)
	if n < 80 || math.Abs(f-1000) > 5 || purity < 0.8 {
		t.Errorf("business heard %d packets, %.0f Hz purity %.2f; want the 1000 Hz tone", n, f, purity)
	}
	// After the end, a terminate from the business is refused without blame
	// (the user hung up first), anything else is a violation.
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "terminate", "")); code != 400 {
		t.Errorf("terminate after end: HTTP %d, want 400", code)
	}
}

// Media the business sends between pre_accept and accept is flagged.
func TestMediaBeforeAccept(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{Duration: 500 * time.Millisecond, FrameMs: 40, DropBurstAt: 3})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, offerOf(hooks.next(t, "connect", call.ID(), 5*time.Second)))
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "pre_accept", p.answer)); code != 200 {
		t.Fatalf("pre_accept: %d", code)
	}
	p.waitUp(5 * time.Second)
	p.sendTone(600, 0, 0)
	time.Sleep(300 * time.Millisecond)
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "accept", p.answer)); code != 200 {
		t.Fatalf("accept: %d", code)
	}
	rep := waitReport(t, call, 10*time.Second)
	hooks.next(t, "terminate", call.ID(), 5*time.Second)
	if len(rep.Violations) != 1 || !strings.Contains(rep.Violations[0], "before accept") {
		t.Fatalf("violations %q, want exactly media before accept", rep.Violations)
	}
	if n := rep.PacketsSent + rep.PacketsDropped; n < 8 || n > 16 || rep.PacketsDropped != dropBurstLen {
		t.Errorf("sent %d and dropped %d 40 ms packets in 0.5 s", rep.PacketsSent, rep.PacketsDropped)
	}
}

// No accept within AcceptTimeout: Meta gives up and sends terminate.
func TestNotAnswered(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, func(c *Config) { c.AcceptTimeout = 500 * time.Millisecond })
	call, err := sim.PlaceCall(context.Background(), CallOptions{From: "", FromUserID: "US.1234567890"})
	if err != nil {
		t.Fatal(err)
	}
	ev := hooks.next(t, "connect", call.ID(), 5*time.Second)
	if _, ok := ev.call["from"]; ok {
		t.Errorf("a BSUID-only caller must have no from: %s", ev.raw)
	}
	term := hooks.next(t, "terminate", call.ID(), 5*time.Second)
	if term.call["status"] != "FAILED" || term.call["start_time"] != nil || term.call["duration"] != nil {
		t.Errorf("not-answered terminate: %s", term.raw)
	}
	rep := waitReport(t, call, 5*time.Second)
	if rep.Outcome != OutcomeNotAnswered || len(rep.Violations) != 0 || call.State() != StateEnded {
		t.Errorf("outcome %s violations %v state %s", rep.Outcome, rep.Violations, call.State())
	}
	if d := rep.EndAt.Sub(rep.PlacedAt); d < 500*time.Millisecond || d > 2*time.Second {
		t.Errorf("ended after %s, want about 0.5 s", d)
	}
}

// Accepted but no media from the business: terminate with 138021.
func TestNoMediaAfterAccept(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, func(c *Config) { c.NoMediaTimeout = 800 * time.Millisecond })
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t, offerOf(hooks.next(t, "connect", call.ID(), 5*time.Second)))
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "accept", p.answer)); code != 200 {
		t.Fatalf("accept without pre_accept: %d", code)
	}
	term := hooks.next(t, "terminate", call.ID(), 5*time.Second)
	errs, _ := term.call["errors"].([]any)
	if term.call["status"] != "FAILED" || len(errs) != 1 {
		t.Fatalf("terminate: %s", term.raw)
	}
	e0, _ := errs[0].(map[string]any)
	if code, _ := e0["code"].(float64); code != 138021 {
		t.Errorf("terminate error %v, want 138021", e0)
	}
	if ed, _ := e0["error_data"].(map[string]any); ed["details"] == nil || e0["message"] == nil {
		t.Errorf("terminate error shape %v", e0)
	}
	rep := waitReport(t, call, 5*time.Second)
	if rep.Outcome != OutcomeMediaTimeout || rep.TerminateErrorCode != 138021 || rep.PacketsReceived != 0 {
		t.Errorf("report: %s", rep)
	}
	if d := rep.EndAt.Sub(rep.AcceptAt); d < 800*time.Millisecond || d > 2*time.Second {
		t.Errorf("ended %s after accept, want about 0.8 s", d)
	}
	if pcm, _ := p.received(); len(pcm) == 0 {
		t.Errorf("the caller's audio did not reach the business")
	}
}

// Meta forbids switching pairs mid-call: a second pair with other addresses
// is a violation; the first pair reported again is not.
func TestPairSwitchIsAViolation(t *testing.T) {
	c := &Call{log: zap.NewNop()}
	c.pairSelected("127.0.0.1:40001-127.0.0.1:3478")
	c.pairSelected("127.0.0.1:40001-127.0.0.1:3478") // the same path, known first as prflx
	if v := c.rep.Violations; len(v) != 0 {
		t.Fatalf("the same pair reported twice: violations %q", v)
	}
	c.pairSelected("127.0.0.1:40001-127.0.0.1:3479")
	if v := c.rep.Violations; len(v) != 1 || !strings.Contains(v[0], "changed mid-call") {
		t.Fatalf("a switch to another remote port: violations %q, want one", v)
	}
}

package gateway_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// A caller's 1 kHz tone crosses the gateway (Opus → PCMU), sipp echoes it,
// and it comes back (PCMU → Opus): checked by frequency and level. The caller
// then hangs up and sipp must receive the BYE.
func TestBridgedCallEchoesTone(t *testing.T) {
	checkNoLeaks(t)
	pbx := startSipp(t, "pbx_answer_echo.xml", 1, 40*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr})
	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 3 * time.Second})
	r := waitReport(t, c, 30*time.Second)

	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("graph actions %q, want pre_accept,accept", got)
	}
	if math.Abs(r.ReceivedFreqHz-1000) > 20 || r.ReceivedPurity < 0.5 {
		t.Errorf("echoed tone: %.0f Hz purity %.2f, want 1000 Hz", r.ReceivedFreqHz, r.ReceivedPurity)
	}
	if r.ReceivedLevelDBFS < -40 {
		t.Errorf("echoed tone level %.1f dBFS, too quiet", r.ReceivedLevelDBFS)
	}
	if r.SSRCsReceived != 1 {
		t.Errorf("%d SSRCs toward WhatsApp, want 1", r.SSRCsReceived)
	}
	if r.LongestSilenceGap > 200*time.Millisecond {
		t.Errorf("the gateway left a %v gap toward WhatsApp", r.LongestSilenceGap)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // headers checked, BYE received
	}
	waitNoActiveCalls(t, h.gw)
}

// The PBX hangs up: the gateway sends Graph terminate and the call ends.
func TestPBXHangupTerminates(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_hangup.xml", 1, 30*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr})
	c := h.call(t, wasim.CallOptions{ToneHz: 700})
	r := waitReport(t, c, 30*time.Second)
	if got := actions(r); got != "pre_accept,accept,terminate" {
		t.Errorf("graph actions %q, want pre_accept,accept,terminate", got)
	}
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if math.Abs(r.ReceivedFreqHz-700) > 20 {
		t.Errorf("echoed tone %.0f Hz, want 700", r.ReceivedFreqHz)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNoActiveCalls(t, h.gw)
}

// A PBX that refuses the call (486, 503) gets the WhatsApp call rejected,
// never accepted.
func TestPBXRefusalRejects(t *testing.T) {
	for _, scenario := range []string{"pbx_busy.xml", "pbx_unavailable.xml"} {
		t.Run(scenario, func(t *testing.T) {
			pbx := startSipp(t, scenario, 1, 20*time.Second)
			h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr})
			r := waitReport(t, h.call(t, wasim.CallOptions{}), 20*time.Second)
			if got := actions(r); got != "pre_accept,reject" {
				t.Errorf("graph actions %q, want pre_accept,reject", got)
			}
			if err := pbx.wait(t, 10*time.Second); err != nil {
				t.Fatal(err) // the ACK for the final response arrived
			}
			waitNoActiveCalls(t, h.gw)
		})
	}
}

// The caller hangs up while the agent's phone rings: the gateway CANCELs.
func TestCallerHangupWhileRingingCancels(t *testing.T) {
	pbx := startSipp(t, "pbx_ring_cancel.xml", 1, 20*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr})
	c := h.call(t, wasim.CallOptions{})
	deadline := time.Now().Add(10 * time.Second)
	for pbx.invites() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // ringing
	if err := c.Hangup(); err != nil {
		t.Fatal(err)
	}
	r := waitReport(t, c, 10*time.Second)
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // CANCEL received, 487 ACKed
	}
	if got := actions(r); got != "pre_accept" {
		t.Errorf("graph actions %q, want only pre_accept", got)
	}
	if cancel := pbx.request("CANCEL"); !strings.Contains(cancel, "Reason: Q.850;cause=16;") {
		t.Errorf("the CANCEL does not say the caller hung up (Q.850 16):\n%s", cancel)
	}
	waitNoActiveCalls(t, h.gw)
}

// Nobody answers within the route's answer_timeout: CANCEL, then reject.
func TestAnswerTimeoutCancelsAndRejects(t *testing.T) {
	pbx := startSipp(t, "pbx_ring_cancel.xml", 1, 20*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, AnswerTimeout: 2 * time.Second})
	r := waitReport(t, h.call(t, wasim.CallOptions{}), 15*time.Second)
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := actions(r); got != "pre_accept,reject" {
		t.Errorf("graph actions %q, want pre_accept,reject", got)
	}
	if cancel := pbx.request("CANCEL"); !strings.Contains(cancel, "Reason: Q.850;cause=19;") {
		t.Errorf("the CANCEL does not say nobody answered (Q.850 19):\n%s", cancel)
	}
	waitNoActiveCalls(t, h.gw)
}

// Webhook delivery quirks: a bad signature, a duplicate connect and a
// terminate that overtakes its connect. sipp answers every INVITE with 486
// and its message trace counts them.
func TestWebhookQuirksNeverDoubleInvite(t *testing.T) {
	pbx := startSipp(t, "pbx_busy.xml", 10, 12*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr})

	bad := h.call(t, wasim.CallOptions{WebhookSecret: "not-the-app-secret"})
	term := h.call(t, wasim.CallOptions{SendTerminateFirst: true})
	dup := h.call(t, wasim.CallOptions{SendDuplicateConnect: true})
	r := waitReport(t, dup, 15*time.Second)
	if got := actions(r); got != "pre_accept,reject" {
		t.Errorf("duplicate connect: graph actions %q, want one pre_accept,reject", got)
	}
	time.Sleep(2 * time.Second) // anything late would have arrived
	if n := pbx.invites(); n != 1 {
		t.Errorf("sipp received %d INVITEs, want exactly 1 (bad signature: none; terminate first: none; duplicate: one)", n)
	}
	for name, c := range map[string]*wasim.Call{"bad signature": bad, "terminate first": term} {
		if c.State() == "pre_accepted" || c.State() == "accepted" {
			t.Errorf("%s: the gateway acted on it (state %s)", name, c.State())
		}
	}
	waitNoActiveCalls(t, h.gw)
}

// A PBX that answers and then sends no RTP (sipp, its SDP naming the
// discard port): once media.pbx_rtp_timeout passes without a packet, the
// gateway ends the call on both sides: Graph terminate toward WhatsApp, and
// a BYE whose Reason header (checked by the sipp scenario) says why.
func TestSilentPBXEndsTheCall(t *testing.T) {
	checkNoLeaks(t)
	pbx := startSipp(t, "pbx_answer_silent.xml", 1, 40*time.Second)
	timeout := 5 * time.Second // the shortest the config takes
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, Config: func(c *gateway.Config) {
		c.Media.PBXRTPTimeout = &timeout
	}})
	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 25 * time.Second})
	r := waitReport(t, c, 40*time.Second)
	if got := actions(r); got != "pre_accept,accept,terminate" || r.Outcome != wasim.OutcomeTerminatedByBusiness {
		t.Errorf("graph actions %q, outcome %s: want the business to terminate", got, r.Outcome)
	}
	if d := r.EndAt.Sub(r.AcceptAt); d < timeout || d > timeout+3*time.Second {
		t.Errorf("the call ended %v after accept, want within %v–%v", d, timeout, timeout+3*time.Second)
	}
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // the BYE came, with its Reason
	}
	waitNoActiveCalls(t, h.gw)
}

// The PBX hangs up during a Graph outage: the first four terminates fail
// (HTTP 503: the Graph client's own three tries, then one more after the
// gateway's first backoff), and the gateway keeps trying until Meta takes
// one, so the caller is not left in a silent call.
func TestTerminateRetriedThroughGraphOutage(t *testing.T) {
	checkNoLeaks(t)
	pbx := startSipp(t, "pbx_answer_hangup.xml", 1, 30*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, Sim: func(c *wasim.Config) {
		c.GraphOutage = map[string]int{"terminate": 4}
	}})
	c := h.call(t, wasim.CallOptions{ToneHz: 700, Duration: 20 * time.Second})
	r := waitReport(t, c, 30*time.Second)
	if got := actions(r); got != "pre_accept,accept,terminate" || r.Outcome != wasim.OutcomeTerminatedByBusiness {
		t.Errorf("graph actions %q, outcome %s: want the terminate to arrive", got, r.Outcome)
	}
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNoActiveCalls(t, h.gw)
}

package wasim

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The connect webhook is signed, shaped like Meta's, and carries an offer
// shaped like Meta's: ICE-lite, host candidates on loopback only, opus/111
// and telephone-event/126, DTLS actpass, one fingerprint, CRLF.
func TestConnectWebhookAndOffer(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, func(c *Config) { c.VerifyToken = testVerifyToken })
	call, err := sim.PlaceCall(context.Background(), CallOptions{From: "15557654321", FromUserID: "US.42", ProfileName: "Grace", DeeplinkPayload: "deep"})
	if err != nil {
		t.Fatal(err)
	}
	ev := hooks.next(t, "connect", call.ID(), 5*time.Second)
	ct := ev.value["contacts"].([]any)[0].(map[string]any)
	if ct["wa_id"] != "15557654321" || ct["user_id"] != "US.42" || ct["profile"].(map[string]any)["name"] != "Grace" {
		t.Errorf("contacts %v", ct)
	}
	if ev.call["from_user_id"] != "US.42" || ev.call["deeplink_payload"] != "deep" || ev.call["to"] != defaultDisplayNumber {
		t.Errorf("call %v", ev.call)
	}
	if ev.value["metadata"].(map[string]any)["display_phone_number"] != defaultDisplayNumber {
		t.Errorf("metadata %v", ev.value["metadata"])
	}
	offer := offerOf(ev)
	if offer != call.OfferSDP() {
		t.Errorf("posted offer differs from OfferSDP")
	}
	if strings.Contains(strings.ReplaceAll(offer, "\r\n", ""), "\n") || !strings.HasSuffix(offer, "\r\n") {
		t.Errorf("offer line ends are not CRLF")
	}
	session, media, _ := strings.Cut(offer, "\r\nm=")
	if !strings.Contains(session, "\r\na=ice-lite") {
		t.Errorf("no session-level a=ice-lite:\n%s", offer)
	}
	lines := strings.Split(offer, "\r\n")
	count := func(re string) int {
		n := 0
		r := regexp.MustCompile(re)
		for _, l := range lines {
			if r.MatchString(l) {
				n++
			}
		}
		return n
	}
	checks := map[string]int{
		`^m=audio \d+ UDP/TLS/RTP/SAVPF 111 126$`: 1,
		`^m=`:                         1,
		`^a=rtpmap:111 opus/48000/2$`: 1,
		`^a=fmtp:111 minptime=10;useinbandfec=1$`:               1,
		`^a=rtpmap:126 telephone-event/8000$`:                   1,
		`^a=rtpmap:`:                                            2,
		`^a=fingerprint:sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$`: 1,
		`^a=fingerprint:`:                                       1,
		`^a=setup:actpass$`:                                     1,
		`^a=sendrecv$`:                                          1,
		`^a=rtcp-mux$`:                                          1,
		`^a=ice-ufrag:[A-Za-z0-9+]+/[A-Za-z0-9+]+$`:             1,
		`^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host`:  1,
		`^a=candidate:`:                                         1,
		`^a=ice-options:|^a=end-of-candidates`:                  0,
		`^a=ssrc:\d+ cname:`:                                    1,
	}
	for re, want := range checks {
		if got := count(re); got != want {
			t.Errorf("%d lines match %s, want %d", got, re, want)
		}
	}
	if strings.Contains(session, "a=fingerprint") || !strings.Contains(media, "\r\na=fingerprint:sha-256 ") {
		t.Errorf("the fingerprint is not at media level as in Meta's offers")
	}
	m := regexp.MustCompile(`(?m)^m=audio (\d+) `).FindStringSubmatch(offer)
	cand := regexp.MustCompile(`(?m)^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host`).FindStringSubmatch(offer)
	if m == nil || cand == nil || m[1] != cand[2] || !strings.Contains(media, "\r\nc=IN IP4 "+cand[1]+"\r\n") {
		t.Errorf("m= port / c= address do not name the host candidate:\n%s", offer)
	}
	// The user hangs up before any answer: terminate COMPLETED, no times.
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	term := hooks.next(t, "terminate", call.ID(), 5*time.Second)
	if term.call["status"] != "COMPLETED" || term.call["start_time"] != nil || term.call["deeplink_payload"] != "deep" {
		t.Errorf("terminate: %s", term.raw)
	}
	rep, _ := call.Wait(context.Background())
	if rep.Outcome != OutcomeCancelledByUser || len(rep.Violations) != 0 || len(rep.WebhookFailures) != 0 {
		t.Errorf("report:\n%s", rep)
	}
}

// A gateway that refuses a badly signed webhook sees it three times (Meta
// retries), and the call ends as webhook_rejected.
func TestBadSignatureRetried(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{WebhookSecret: "not-the-app-secret"})
	if err != nil {
		t.Fatal(err)
	}
	rep := waitReport(t, call, 5*time.Second)
	if n := len(hooks.events); n != webhookAttempts {
		t.Errorf("%d deliveries, want %d", n, webhookAttempts)
	}
	for len(hooks.events) > 0 {
		if ev := <-hooks.events; ev.sigOK || ev.event != "connect" {
			t.Errorf("delivery with the wrong secret verified or is not a connect")
		}
	}
	if rep.Outcome != OutcomeWebhookRejected || len(rep.WebhookFailures) != 1 || !strings.Contains(rep.WebhookFailures[0], "HTTP 401") {
		t.Errorf("report:\n%s", rep)
	}
}

// A 500 is retried, and the retried connect is answered as usual.
func TestWebhookRetryThenAnswered(t *testing.T) {
	hooks := newHookServer(t)
	hooks.setStatus(http.StatusInternalServerError)
	sim := newTestSim(t, hooks, nil)
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := hooks.next(t, "connect", call.ID(), 5*time.Second)
	hooks.setStatus(http.StatusOK)
	second := hooks.next(t, "connect", call.ID(), 5*time.Second)
	if string(first.raw) != string(second.raw) {
		t.Errorf("the retry differs from the first delivery")
	}
	if code, _ := graphPost(t, sim, testToken, action(call.ID(), "reject", "")); code != 200 {
		t.Fatalf("reject: %d", code)
	}
	rep := waitReport(t, call, 5*time.Second)
	if rep.Outcome != OutcomeRejected || len(rep.WebhookFailures) != 0 {
		t.Errorf("report:\n%s", rep)
	}
}

// Delivery quirks: a duplicated connect, and a terminate delivered before
// its connect (which the business must then leave alone).
func TestDeliveryQuirks(t *testing.T) {
	hooks := newHookServer(t)
	sim := newTestSim(t, hooks, nil)
	dup, err := sim.PlaceCall(context.Background(), CallOptions{SendDuplicateConnect: true})
	if err != nil {
		t.Fatal(err)
	}
	a := hooks.next(t, "connect", dup.ID(), 5*time.Second)
	b := hooks.next(t, "connect", dup.ID(), 5*time.Second)
	if string(a.raw) != string(b.raw) {
		t.Errorf("duplicate connect differs")
	}
	_ = dup.Hangup()
	hooks.next(t, "terminate", dup.ID(), 5*time.Second)

	late, err := sim.PlaceCall(context.Background(), CallOptions{SendTerminateFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	hooks.next(t, "terminate", late.ID(), 5*time.Second)
	c := hooks.next(t, "connect", late.ID(), 5*time.Second)
	p := newPeer(t, offerOf(c))
	if code, _ := graphPost(t, sim, testToken, action(late.ID(), "pre_accept", p.answer)); code != 400 {
		t.Errorf("pre_accept of a terminated call: HTTP %d", code)
	}
	rep := waitReport(t, late, 5*time.Second)
	if rep.Outcome != OutcomeCancelledByUser || !hasViolation(rep.Violations, "pre_accept after the call ended") {
		t.Errorf("report:\n%s", rep)
	}
}

// Start fails when the webhook does not echo the verification challenge.
func TestVerifyHandshake(t *testing.T) {
	hooks := newHookServer(t)
	s, err := New(Config{WebhookURL: hooks.URL, AppSecret: "a", AccessToken: "b", PhoneNumberID: "1", VerifyToken: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "verification") {
		t.Errorf("Start with a wrong verify token: %v", err)
	}
}

func TestConfigAndOptionsChecked(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("empty config accepted")
	}
	for _, o := range []CallOptions{{FrameMs: 30}, {ToneHz: 30000}, {DropPercent: 120}, {CTAPayload: strings.Repeat("x", 513)}} {
		if err := normalizeOptions(&o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

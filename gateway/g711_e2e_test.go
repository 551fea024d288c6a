package gateway_test

import (
	"io"
	"math"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// No transcoding when Meta can send G.711: the number's
// audio.additional_codecs is [PCMA, PCMU], so the simulated caller offers
// them beside Opus; the trunk says whatsapp_codec: g711. The INVITE (sipp
// as the PBX, echoing RTP) offers PCMU first, sipp answers PCMU, and only
// then is Meta answered, with PCMU alone. The caller's 1 kHz tone, sent in
// PCMU, comes back (frequency and level); the bridge ran pcmu-passthrough
// (the metric by codec path, the chain logged).
func TestG711CallerPassedThrough(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo.xml", 1, 40*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, Config: func(c *gateway.Config) {
		c.Trunks[0].WhatsAppCodec = gateway.WhatsAppCodecG711
	}})
	if err := h.sim.SetAdditionalCodecs(testPhoneNumberID, "PCMA", "PCMU"); err != nil {
		t.Fatal(err)
	}
	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 3 * time.Second})
	if offer := c.OfferSDP(); !strings.Contains(offer, "a=rtpmap:0 PCMU/8000") || !strings.Contains(offer, "a=rtpmap:8 PCMA/8000") {
		t.Fatalf("the caller did not offer G.711:\n%s", offer)
	}
	// Sampled while the call is up: the bridge's codec path.
	var passthrough bool
	deadline := time.Now().Add(10 * time.Second)
	for !passthrough && time.Now().Before(deadline) {
		passthrough = metricValue(t, h.gw, `wagateway_active_bridged_calls{codec_path="pcmu-passthrough"}`) == 1
		time.Sleep(50 * time.Millisecond)
	}
	r := waitReport(t, c, 30*time.Second)

	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("graph actions %q, want pre_accept,accept", got)
	}
	if r.Codec != "PCMU" {
		t.Errorf("the call ran %q toward the caller, want PCMU", r.Codec)
	}
	if math.Abs(r.ReceivedFreqHz-1000) > 20 || r.ReceivedPurity < 0.5 {
		t.Errorf("echoed tone: %.0f Hz purity %.2f, want 1000 Hz", r.ReceivedFreqHz, r.ReceivedPurity)
	}
	// toneAmplitude 8000 is -15 dBFS; G.711 both ways and back loses
	// nothing worth a dB.
	if r.ReceivedLevelDBFS < -20 || r.ReceivedLevelDBFS > -12 {
		t.Errorf("echoed tone level %.1f dBFS, want about -15", r.ReceivedLevelDBFS)
	}
	if r.SSRCsReceived != 1 || r.LongestSilenceGap > 200*time.Millisecond {
		t.Errorf("%d SSRCs toward WhatsApp, longest gap %v", r.SSRCsReceived, r.LongestSilenceGap)
	}
	if !passthrough {
		t.Error("no pcmu-passthrough call seen in wagateway_active_bridged_calls while the call was up")
	}
	if n := metricValue(t, h.gw, `wagateway_bridged_calls_total{codec_path="pcmu-passthrough"}`); n != 1 {
		t.Errorf("bridged pcmu-passthrough calls %v, want 1", n)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // the scenario checks the INVITE offers PCMU
	}
	trace, _ := os.ReadFile(pbx.msgTrace)
	if _, invite, ok := strings.Cut(string(trace), "\nINVITE sip:"); !ok || !regexp.MustCompile(`m=audio \d+ RTP/AVP 0 8 `).MatchString(invite) {
		t.Errorf("the INVITE does not offer PCMU, PCMA first (the trunk's order):\n%.1500s", invite)
	}
	waitNoActiveCalls(t, h.gw)
}

// metricValue reads one sample of the gateway's metrics ("name{labels}"),
// -1 when it is not exported.
func metricValue(t *testing.T, gw *gateway.Gateway, sample string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	gw.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}

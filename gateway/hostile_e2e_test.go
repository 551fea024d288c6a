package gateway_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/rtpbridge/g711"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// A stranger sprays a 440 Hz tone, as PCMU RTP, at every port of the
// gateway's RTP range from before the PBX answers until after the call is
// bridged: the caller must hear only its own 1 kHz tone echoed by the PBX
// (sipp), the stranger must get nothing back, and the gateway counts what
// it dropped.
func TestStrangerRTPNotHeard(t *testing.T) {
	checkNoLeaks(t)
	pbx := startSipp(t, "pbx_answer_echo.xml", 1, 40*time.Second)
	const lo, hi = 42000, 42099
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, Config: func(c *gateway.Config) {
		c.SIP.RTPPortMin, c.SIP.RTPPortMax = lo, hi
	}})
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()

	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 4 * time.Second})
	spray(t, stranger, lo, hi, pbx.MediaPort, 3500*time.Millisecond)
	r := waitReport(t, c, 30*time.Second)
	if math.Abs(r.ReceivedFreqHz-1000) > 20 || r.ReceivedPurity < 0.9 {
		t.Errorf("the caller heard %.0f Hz (purity %.2f): want only its own 1 kHz tone back", r.ReceivedFreqHz, r.ReceivedPurity)
	}
	_ = stranger.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := stranger.ReadFromUDP(make([]byte, 2048)); err == nil {
		t.Errorf("the gateway sent the stranger a %d-byte datagram", n)
	}
	if v := scrape(t, h.gw, "wagateway_pbx_rtp_stranger_packets_total"); v == "" || v == "0" {
		t.Errorf("stranger packets counted: %q", v)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNoActiveCalls(t, h.gw)
}

// spray sends 20 ms of a 440 Hz tone every 20 ms to every even port in
// [lo, hi] but skip, for d.
func spray(t *testing.T, c *net.UDPConn, lo, hi, skip int, d time.Duration) {
	t.Helper()
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, 0 // RTP v2, PCMU
	binary.BigEndian.PutUint32(pkt[8:], 0x0bad0bad)
	pcm := make([]int16, 160)
	var seq uint16
	var ts uint32
	sent := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for i := range pcm {
			pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(ts+uint32(i))/8000))
		}
		g711.EncodeUlaw(pcm, pkt[12:])
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], ts)
		seq, ts = seq+1, ts+160
		for port := lo + lo%2; port <= hi; port += 2 {
			if port == skip {
				continue
			}
			if _, err := c.WriteToUDP(pkt, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
				sent++
			}
		}
	}
	t.Logf("stranger sent %d packets", sent)
}

// scrape reads one series from the gateway's metrics listener.
func scrape(t *testing.T, gw *gateway.Gateway, series string) string {
	t.Helper()
	_, body := httpGet(t, "http://"+gw.MetricsAddr()+"/metrics", "")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// An accept Meta keeps refusing (a Graph outage) ends the call at once: the
// PBX gets its BYE (sipp's scenario waits for it) and Meta a terminate.
func TestAcceptFailureHangsUpThePBX(t *testing.T) {
	checkNoLeaks(t)
	pbx := startSipp(t, "pbx_answer_echo.xml", 1, 30*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, Sim: func(c *wasim.Config) {
		c.GraphOutage = map[string]int{"accept": 100}
	}})
	start := time.Now()
	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 20 * time.Second})
	r := waitReport(t, c, 30*time.Second)
	if got := actions(r); got != "pre_accept,terminate" || r.Outcome != wasim.OutcomeTerminatedByBusiness {
		t.Errorf("graph actions %q, outcome %s: want pre_accept, then terminate", got, r.Outcome)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // the BYE came
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the PBX waited %v for its BYE", d)
	}
	waitNoActiveCalls(t, h.gw)
}

// A caller whose ICE never connects (its only candidate is a port nobody
// listens on): no accept reaches Meta, which gets a reject; the PBX, which
// answered, gets a BYE whose Reason says the WhatsApp media failed; the
// record says so.
func TestMediaNeverUpRejectsAndHangsUpThePBX(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo.xml", 1, 40*time.Second)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr})
	offer, err := os.ReadFile(filepath.Join("..", "whatsapp", "webrtc", "testdata", "meta-offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	dead, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(offer), "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "a=candidate:"):
			if strings.Contains(l, "203.0.113.60") {
				lines = append(lines, fmt.Sprintf("a=candidate:1 1 udp 2113937151 127.0.0.1 %d typ host generation 0", dead))
			}
		case l != "":
			lines = append(lines, l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.sim.PlaceCall(ctx, wasim.CallOptions{From: "15550001234", ExternalOffer: strings.Join(lines, "\r\n") + "\r\n"})
	if err != nil {
		t.Fatal(err)
	}
	r := waitReport(t, c, 40*time.Second)
	if got := actions(r); got != "pre_accept,reject" {
		t.Errorf("graph actions %q, want pre_accept,reject (no accept without media)", got)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if bye := pbx.request("BYE"); !strings.Contains(bye, `Reason: Q.850;cause=41;text="whatsapp media connection failed"`) {
		t.Errorf("the BYE does not say the media failed:\n%s", bye)
	}
	rec := h.record(t, c.ID())
	if rec.Outcome != gateway.OutcomeFailed || !strings.Contains(rec.Reason, "media") {
		t.Errorf("record outcome %q (%s), want failed for the media", rec.Outcome, rec.Reason)
	}
	waitNoActiveCalls(t, h.gw)
}

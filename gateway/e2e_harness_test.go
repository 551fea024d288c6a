package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/internal/testpeer"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

const testPhoneNumberID = "1000000001"

// requirePeer is the path of a real peer (testpeer.Require: skipped on a
// laptop without it, a failure under CI).
func requirePeer(t *testing.T, bin string) string {
	t.Helper()
	return testpeer.Require(t, bin, peerPackages[bin])
}

// peerPackages are the Debian packages of the gateway tests' peers.
var peerPackages = map[string]string{"sipp": "sip-tester", "baresip": "baresip-core", "chromium": "chromium", "haproxy": "haproxy"}

// sipp runs one sipp UAS scenario as the PBX on loopback.
type sipp struct {
	Addr      string // SIP host:port
	MediaPort int    // where sipp takes (and echoes) RTP
	cmd       *exec.Cmd
	done      chan error
	stderr    bytes.Buffer
	msgTrace  string
}

// startSipp starts `sipp -sf scenario` as a UAS that handles up to calls
// calls, echoing RTP, and quits after timeout.
func startSipp(t *testing.T, scenario string, calls int, timeout time.Duration) *sipp {
	t.Helper()
	return startSippEcho(t, scenario, calls, timeout, true)
}

// startSippEcho is startSipp with RTP echo on or off (off for a scenario
// that plays its own audio with rtp_stream: sipp would mix the echo in).
func startSippEcho(t *testing.T, scenario string, calls int, timeout time.Duration, echo bool) *sipp {
	t.Helper()
	bin := requirePeer(t, "sipp")
	port, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	mport, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &sipp{Addr: "127.0.0.1:" + strconv.Itoa(port), MediaPort: mport, done: make(chan error, 1), msgTrace: filepath.Join(dir, "messages.log")}
	if !filepath.IsAbs(scenario) {
		scenario = filepath.Join("testdata", scenario)
	}
	args := []string{"-sf", scenario,
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mi", "127.0.0.1", "-mp", strconv.Itoa(mport),
		"-m", strconv.Itoa(calls), "-timeout", strconv.Itoa(int(timeout.Seconds())) + "s", "-timeout_error",
		"-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", s.msgTrace}
	if echo {
		args = append(args, "-rtp_echo")
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = &s.stderr
	s.cmd.Dir, _ = os.Getwd()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sipp: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	time.Sleep(200 * time.Millisecond) // let it bind
	return s
}

// wait returns nil when sipp ran its scenario to the end for every call.
func (s *sipp) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for Cleanup
		if err != nil {
			errs, _ := os.ReadFile(strings.TrimSuffix(s.msgTrace, "messages.log") + "errors.log")
			return fmt.Errorf("sipp failed (%v): %s %s", err, s.stderr.String(), errs)
		}
		return nil
	case <-time.After(within):
		return fmt.Errorf("sipp still running after %v", within)
	}
}

// request returns the first request of that method sipp received, as its
// message trace shows it ("" if none).
func (s *sipp) request(method string) string {
	b, _ := os.ReadFile(s.msgTrace)
	i := strings.Index(string(b), "\n"+method+" sip:")
	if i < 0 {
		return ""
	}
	msg := string(b[i+1:])
	if j := strings.Index(msg, "\r\n\r\n"); j >= 0 {
		msg = msg[:j]
	} else if j := strings.Index(msg, "\n\n"); j >= 0 {
		msg = msg[:j]
	}
	return msg
}

// invites counts the INVITE requests sipp received.
func (s *sipp) invites() int {
	b, _ := os.ReadFile(s.msgTrace)
	return strings.Count(string(b), "\nINVITE sip:")
}

// harness runs the simulated Cloud API and a gateway pointed at a PBX.
type harness struct {
	sim  *wasim.Sim
	gw   *gateway.Gateway
	cfg  *gateway.Config
	base string // http://host:port of the webhook listener (webhook only; opsURL has the metrics)
}

type harnessOptions struct {
	PBXAddr       string
	AnswerTimeout time.Duration
	NoMedia       time.Duration
	DTMF          string                // trunk dtmf mode (default rfc4733)
	Codecs        []string              // trunk codecs (default PCMU, PCMA)
	PingTrunk     bool                  // watch the trunk with OPTIONS (sipp scenarios abort on one they do not expect)
	Config        func(*gateway.Config) // last edit of the loopback config before New
	Sim           func(*wasim.Config)   // last edit of the simulator's config
	Secrets       *gateway.Secrets
	Log           *zap.Logger // the gateway's logger (default: zaptest at info)
}

var testSecrets = gateway.Secrets{AccessToken: "test-access-token", AppSecret: "test-app-secret", VerifyToken: "test-verify"}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	gwLog := o.Log
	if gwLog == nil {
		gwLog = log.Named("gateway")
	}
	secrets := o.Secrets
	if secrets == nil {
		s := testSecrets
		secrets = &s
	}
	httpPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	simCfg := wasim.Config{
		GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/webhook",
		AppSecret: secrets.AppSecret, AccessToken: secrets.AccessToken, PhoneNumberID: testPhoneNumberID,
		MediaIP: "127.0.0.1", NoMediaTimeout: o.NoMedia, Logger: log.Named("wasim"),
	}
	if o.Sim != nil {
		o.Sim(&simCfg)
	}
	sim, err := wasim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	cfg := gateway.LoopbackConfig(gateway.LoopbackOptions{
		HTTPPort: httpPort, UDPPort: udpPort, GraphURL: sim.GraphURL(), PBXAddr: o.PBXAddr,
		PhoneNumberID: testPhoneNumberID, AnswerTimeout: o.AnswerTimeout, PingTrunk: o.PingTrunk,
	})
	if o.DTMF != "" {
		cfg.Trunks[0].DTMF = o.DTMF
	}
	if len(o.Codecs) > 0 {
		cfg.Trunks[0].Codecs = o.Codecs
	}
	if o.Config != nil {
		o.Config(cfg)
	}
	// The free port the system chose must not lie in the RTP range a test
	// set (webrtc.udp_port there is an error).
	for tries := 0; cfg.WebRTC.UDPPort >= cfg.SIP.RTPPortMin && cfg.WebRTC.UDPPort <= cfg.SIP.RTPPortMax && tries < 20; tries++ {
		if cfg.WebRTC.UDPPort, err = wasim.FreeLoopbackPort("udp"); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, secrets, gwLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Close(cctx); err != nil {
			t.Errorf("gateway close: %v", err)
		}
	})
	return &harness{sim: sim, gw: gw, cfg: cfg, base: strings.TrimSuffix(gw.WebhookURL(), cfg.HTTP.WebhookPath)}
}

func (h *harness) call(t *testing.T, o wasim.CallOptions) *wasim.Call {
	t.Helper()
	if o.From == "" && o.FromUserID == "" {
		o.From, o.FromUserID = "15550001234", "US.1349120865530274"
	}
	if o.ProfileName == "" {
		o.ProfileName = "Ada Lovelace"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.sim.PlaceCall(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitReport(t *testing.T, c *wasim.Call, within time.Duration) *wasim.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r, err := c.Wait(ctx)
	if err != nil {
		t.Fatalf("call did not end within %v: %v", within, err)
	}
	t.Logf("report:\n%s", r)
	return r
}

// waitNoActiveCalls checks the gateway freed the call.
func waitNoActiveCalls(t *testing.T, gw *gateway.Gateway) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gw.ActiveCalls() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("gateway still holds %d calls", gw.ActiveCalls())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func actions(r *wasim.Report) string { return strings.Join(r.ActionsReceived, ",") }

// checkNoLeaks fails the test when, once everything the test started has
// been closed, goroutines or file descriptors (sockets: RTP ports, the ICE
// port, listeners) are left beyond what the process had before it. Call it
// first: cleanups run last-in first-out, so its check runs after the
// harness's.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	// The media workers (and their epoll sets) are the process's, started
	// by the first bridge and kept: not a call's leak.
	rtpbridge.Workers()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			g, f := runtime.NumGoroutine(), openFDs(t)
			if g <= goroutines && f <= fds {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("left behind: %d goroutines (was %d), %d open files (was %d)\n%s", g, goroutines, f, fds, buf[:n])
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// openFDs counts this process's open file descriptors (Linux: /proc).
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(entries)
}

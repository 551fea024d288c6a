package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// opsHarness is the e2e harness with the operations side switched on: call
// records to a file, fast trunk pings, optional admin API, and the config
// open to each test.
type opsHarness struct {
	sim     *wasim.Sim
	gw      *gateway.Gateway
	cfg     *gateway.Config
	records string
	base    string // http://host:port of the webhook listener (metrics, health)
}

type opsOptions struct {
	PBXAddr   string
	PingTrunk bool
	Config    func(*gateway.Config) // edits the loopback config before New
	Secrets   *gateway.Secrets
	Log       *zap.Logger // the gateway's logger (default: zaptest at warn)
}

var testSecrets = gateway.Secrets{AccessToken: "test-access-token", AppSecret: "test-app-secret", VerifyToken: "test-verify"}

func newOpsHarness(t *testing.T, o opsOptions) *opsHarness {
	t.Helper()
	simLog := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	log := o.Log
	if log == nil {
		log = simLog.Named("gateway")
	}
	secrets := o.Secrets
	if secrets == nil {
		s := testSecrets
		secrets = &s
	}
	httpPort, err := gateway.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, err := gateway.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sim, err := wasim.New(wasim.Config{
		GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/webhook",
		AppSecret: secrets.AppSecret, AccessToken: secrets.AccessToken, PhoneNumberID: testPhoneNumberID,
		MediaIP: "127.0.0.1", Logger: simLog.Named("wasim"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	cfg := gateway.LoopbackConfig(gateway.LoopbackOptions{
		HTTPPort: httpPort, UDPPort: udpPort, GraphURL: sim.GraphURL(), PBXAddr: o.PBXAddr,
		PhoneNumberID: testPhoneNumberID, PingTrunk: o.PingTrunk,
	})
	cfg.CallRecords.File = filepath.Join(t.TempDir(), "calls.jsonl")
	cfg.Health = gateway.HealthConfig{OptionsInterval: 200 * time.Millisecond, OptionsTimeout: 150 * time.Millisecond, DownAfter: 2}
	if o.Config != nil {
		o.Config(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, secrets, log)
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
	return &opsHarness{sim: sim, gw: gw, cfg: cfg, records: cfg.CallRecords.File,
		base: strings.TrimSuffix(gw.WebhookURL(), cfg.HTTP.WebhookPath)}
}

func (h *opsHarness) call(t *testing.T, o wasim.CallOptions) *wasim.Call {
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

// record waits for the call record of callID in the records file.
func (h *opsHarness) record(t *testing.T, callID string) gateway.CallRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range readRecords(t, h.records) {
			if r.CallID == callID {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call record for %s in %s", callID, h.records)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readRecords(t *testing.T, path string) []gateway.CallRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []gateway.CallRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r gateway.CallRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("call record is not one JSON object per line: %v: %s", err, sc.Text())
		}
		out = append(out, r)
	}
	return out
}

// scrape fetches /metrics over HTTP.
func (h *opsHarness) scrape(t *testing.T) metricsText {
	t.Helper()
	code, body := httpGet(t, h.base+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: HTTP %d", code)
	}
	return metricsText(body)
}

// metricsText is a Prometheus text exposition.
type metricsText string

// value returns the sample of series (name plus labels in the exposition's
// sorted order, e.g. `wagateway_calls_total{outcome="bridged"}`), 0 if absent.
func (m metricsText) value(t *testing.T, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(m), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

func httpGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, url, token)
}

func httpDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

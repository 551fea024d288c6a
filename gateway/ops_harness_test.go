package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
)

// opsHarness is the e2e harness with the operations side switched on: call
// records to a file and fast trunk pings (the options' Config runs after).
type opsHarness struct {
	*harness
	records string
}

type opsOptions = harnessOptions

func newOpsHarness(t *testing.T, o opsOptions) *opsHarness {
	t.Helper()
	records := filepath.Join(t.TempDir(), "calls.jsonl")
	edit := o.Config
	o.Config = func(c *gateway.Config) {
		c.CallRecords.File = records
		c.Health = gateway.HealthConfig{OptionsInterval: 200 * time.Millisecond, OptionsTimeout: 150 * time.Millisecond, DownAfter: 2}
		if edit != nil {
			edit(c)
		}
	}
	return &opsHarness{harness: newHarness(t, o), records: records}
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

// opsURL is http://host:port of the metrics listener (/metrics, /healthz,
// /readyz), never the webhook listener.
func (h *harness) opsURL() string { return "http://" + h.gw.MetricsAddr() }

// scrape fetches /metrics over HTTP from the metrics listener.
func (h *opsHarness) scrape(t *testing.T) metricsText {
	t.Helper()
	code, body := httpGet(t, h.opsURL()+"/metrics", "")
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

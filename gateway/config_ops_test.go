package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestOpsDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.DrainTimeout != 60*time.Second || c.Health.OptionsInterval != 30*time.Second || c.Health.OptionsTimeout != 5*time.Second ||
		c.Health.DownAfter != 2 || c.CallRecords.URLRetries != 3 || c.Admin.Listen != "" || !c.Trunks[0].optionsPing() {
		t.Fatalf("operations defaults not applied: %+v %+v %+v", c.DrainTimeout, c.Health, c.CallRecords)
	}
}

// Each bad operations setting is refused and named by its field.
func TestOpsBadConfigNamesTheField(t *testing.T) {
	cases := map[string]struct{ add, field string }{
		"negative drain":          {"drain_timeout: -5s\n", "drain_timeout"},
		"ping timeout > period":   {"health: {options_interval: 1s, options_timeout: 2s}\n", "health.options_timeout"},
		"ping too often":          {"health: {options_interval: 10ms, options_timeout: 5ms}\n", "health.options_interval"},
		"down_after zero":         {"health: {down_after: -1}\n", "health.down_after"},
		"admin without token":     {"admin: {listen: \"127.0.0.1:8081\"}\n", "admin.token"},
		"admin token, no listen":  {"admin: {token: {env: A}}\n", "admin.listen"},
		"admin on webhook port":   {"http: {listen: \":9000\"}\nadmin: {listen: \":9000\", token: {env: A}}\n", "admin.listen"},
		"admin bad listen":        {"admin: {listen: nowhere, token: {env: A}}\n", "admin.listen"},
		"records bad url":         {"call_records: {url: \"ftp://x\"}\n", "call_records.url"},
		"records url with creds":  {"call_records: {url: \"https://u:hunter2@x.example/r\"}\n", "call_records.url"},
		"records token, no url":   {"call_records: {url_token: {env: R}}\n", "call_records.url_token"},
		"records retries":         {"call_records: {url: \"https://x.example\", url_retries: 99}\n", "call_records.url_retries"},
		"records token inline":    {"call_records: {url: \"https://x.example\", url_token: hunter2}\n", "call_records.url_token"},
		"records token extra key": {"call_records: {url: \"https://x.example\", url_token: {env: R, value: hunter2}}\n", "call_records.url_token"},
		"admin token extra key":   {"admin: {listen: \"127.0.0.1:8081\", token: {env: A, value: hunter2}}\n", "admin.token"},
		"metrics on webhook":      {"http: {listen: \":9000\"}\nmetrics: {listen: \":9000\"}\n", "metrics.listen"},
		"metrics bad listen":      {"metrics: {listen: nowhere}\n", "metrics.listen"},
		"admin tls half":          {"admin: {listen: \"127.0.0.1:8081\", token: {env: A}, tls_cert_file: c}\n", "admin.tls_cert_file"},
		"admin tls, no listen":    {"admin: {tls_cert_file: c, tls_key_file: k}\n", "admin.tls_cert_file"},
		"metrics tls half":        {"metrics: {tls_key_file: k}\n", "metrics.tls_cert_file"},
		"metrics tls but shared":  {"admin: {listen: \"127.0.0.1:8081\", token: {env: A}}\nmetrics: {tls_cert_file: c, tls_key_file: k}\n", "metrics.tls_cert_file"},
	}
	for name, tc := range cases {
		_, err := ParseConfig([]byte(minimal + tc.add))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name %q", name, err, tc.field)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error repeats a secret: %v", name, err)
		}
	}
}

func TestOpsSecretsResolve(t *testing.T) {
	c, err := ParseConfig([]byte(minimal + "admin: {listen: \"127.0.0.1:0\", token: {env: WAGW_TEST_ADMIN}}\ncall_records: {url: \"https://crm.example/calls\", url_token: {env: WAGW_TEST_REC}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("T", "t")
	t.Setenv("S", "s")
	t.Setenv("V", "v")
	os.Unsetenv("WAGW_TEST_ADMIN")
	if _, err := c.ResolveSecrets(); err == nil || !strings.Contains(err.Error(), "admin.token") {
		t.Fatalf("missing admin token not reported: %v", err)
	}
	t.Setenv("WAGW_TEST_ADMIN", "adm")
	t.Setenv("WAGW_TEST_REC", "rec")
	s, err := c.ResolveSecrets()
	if err != nil || s.AdminToken != "adm" || s.CallRecordsToken != "rec" {
		t.Fatalf("secrets %+v %v", s, err)
	}
}

// The record POST retries on 5xx, not on 4xx, and carries the token.
func TestRecorderPostsWithRetries(t *testing.T) {
	var calls, fails atomic.Int32
	fails.Store(2)
	var lastAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		lastAuth.Store(r.Header.Get("Authorization"))
		var rec CallRecord
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil || rec.CallID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if rec.CallID == "wacid.refused" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if fails.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "calls.jsonl")
	m := newMetrics()
	r := newRecorder(CallRecordsConfig{File: file, URL: srv.URL, URLRetries: 3, URLTimeout: time.Second}, "tok", zap.NewNop(), m)
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	r.write(&CallRecord{CallID: "wacid.a", Outcome: OutcomeBridged})
	r.write(&CallRecord{CallID: "wacid.refused", Outcome: OutcomeFailed})
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.close(ctx)
	if n := calls.Load(); n != 4 { // 2 × 503, then 200; 403 once, not retried
		t.Errorf("%d POSTs, want 4", n)
	}
	if a, _ := lastAuth.Load().(string); a != "Bearer tok" {
		t.Errorf("Authorization %q", a)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], `{"call_id":"wacid.a"`) {
		t.Errorf("file:\n%s", b)
	}
	r.write(&CallRecord{CallID: "wacid.after-close"}) // dropped quietly, no panic
}

// metrics.listen: the admin listener when there is one, else loopback 9090;
// an explicit value is kept.
func TestMetricsListenDefaults(t *testing.T) {
	for _, tc := range []struct {
		add, want string
		shared    bool
	}{
		{"", "127.0.0.1:9090", false},
		{"admin: {listen: \"127.0.0.1:8081\", token: {env: A}}\n", "127.0.0.1:8081", true},
		{"admin: {listen: \"127.0.0.1:8081\", token: {env: A}}\nmetrics: {listen: \"127.0.0.1:9100\"}\n", "127.0.0.1:9100", false},
		{"metrics: {listen: \"10.0.0.5:9100\"}\n", "10.0.0.5:9100", false},
	} {
		c, err := ParseConfig([]byte(minimal + tc.add))
		if err != nil {
			t.Fatalf("%q: %v", tc.add, err)
		}
		if c.Metrics.Listen != tc.want || c.MetricsShareAdmin() != tc.shared || c.HTTP.HealthPath != "" {
			t.Errorf("%q: metrics.listen %q shared %v, want %q %v", tc.add, c.Metrics.Listen, c.MetricsShareAdmin(), tc.want, tc.shared)
		}
	}
}

// Admin or metrics on an address that is not loopback, without TLS, is a
// warning naming the field, not an error.
func TestConfigWarnings(t *testing.T) {
	for _, tc := range []struct {
		add  string
		want []string // fields warned about, in order
	}{
		{"", nil},
		{"admin: {listen: \"127.0.0.1:8081\", token: {env: A}}\n", nil},
		{"admin: {listen: \"[::1]:8081\", token: {env: A}}\nmetrics: {listen: \"localhost:9100\"}\n", nil},
		{"admin: {listen: \"0.0.0.0:8081\", token: {env: A}}\n", []string{"admin.listen"}}, // metrics share it: one warning
		{"admin: {listen: \":8081\", token: {env: A}}\nmetrics: {listen: \"127.0.0.1:9100\"}\n", []string{"admin.listen"}},
		{"admin: {listen: \"10.1.2.3:8081\", token: {env: A}}\nmetrics: {listen: \"0.0.0.0:9100\"}\n", []string{"admin.listen", "metrics.listen"}},
		{"metrics: {listen: \"[::]:9100\"}\n", []string{"metrics.listen"}},
		// With TLS, only the first warning that lacks it stays.
		{"admin: {listen: \"0.0.0.0:8081\", token: {env: A}, tls_cert_file: c, tls_key_file: k}\n", nil},
		{"admin: {listen: \"0.0.0.0:8081\", token: {env: A}, tls_cert_file: c, tls_key_file: k}\nmetrics: {listen: \":9100\"}\n", []string{"metrics.listen"}},
		{"metrics: {listen: \":9100\", tls_cert_file: c, tls_key_file: k}\n", nil},
	} {
		c, err := ParseConfig([]byte(minimal + "webrtc: {public_ips: [9.9.9.9]}\n" + tc.add))
		if err != nil {
			t.Fatalf("%q: %v", tc.add, err)
		}
		w := c.Warnings()
		if len(w) != len(tc.want) {
			t.Errorf("%q: warnings %q, want %v", tc.add, w, tc.want)
			continue
		}
		for i, field := range tc.want {
			if !strings.HasPrefix(w[i], field+": ") || !strings.Contains(w[i], "no TLS") {
				t.Errorf("%q: warning %q does not name %s", tc.add, w[i], field)
			}
		}
	}
}

package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

const opsConfig = `
log: {level: error}
http: {listen: "127.0.0.1:0"}
whatsapp: {graph_base_url: "http://127.0.0.1:9", access_token: {env: WAGW_T}, app_secret: {env: WAGW_S}, verify_token: {env: WAGW_V}}
webrtc: {udp_port: %d, listen_ips: [127.0.0.1]}
sip: {listen: "127.0.0.1:0", rtp_address: 127.0.0.1, rtp_port_min: 41000, rtp_port_max: 41099}
drain_timeout: 2s
metrics: {listen: "127.0.0.1:0"}
call_records: {file: %q}
trunks:
  - {name: pbx, address: "127.0.0.1:5999", options_ping: false}
%s
numbers:
  - phone_number_id: "1"
    routes: [{trunk: %s, destination: "sip:a@127.0.0.1"}]
`

func writeOpsConfig(t *testing.T, path string, udp int, extraTrunk, routeTrunk string) {
	t.Helper()
	raw := fmt.Sprintf(opsConfig, udp, filepath.Join(filepath.Dir(path), "calls.jsonl"), extraTrunk, routeTrunk)
	if udp >= 41000 && udp <= 41099 { // webrtc.udp_port inside the RTP range is an error
		raw = strings.Replace(raw, "rtp_port_min: 41000, rtp_port_max: 41099", "rtp_port_min: 42000, rtp_port_max: 42099", 1)
	}
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
}

func metricValue(t *testing.T, gw *gateway.Gateway, series string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	gw.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// SIGHUP reloads (a bad file changes nothing), SIGTERM drains and exits 0.
func TestSignalsReloadAndDrain(t *testing.T) {
	t.Setenv("WAGW_T", "t")
	t.Setenv("WAGW_S", "s")
	t.Setenv("WAGW_V", "v")
	udp, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeOpsConfig(t, path, udp, "", "pbx")

	sigs := make(chan os.Signal, 1)
	started := make(chan *gateway.Gateway, 1)
	exit := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { exit <- serveSignals(path, &stderr, sigs, func(gw *gateway.Gateway) { started <- gw }) }()
	var gw *gateway.Gateway
	select {
	case gw = <-started:
	case code := <-exit:
		t.Fatalf("gateway exited %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start")
	}
	waitMetric := func(series, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for metricValue(t, gw, series) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q, want %s", series, metricValue(t, gw, series), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The container's healthcheck finds /healthz on the metrics listener,
	// and no longer on the webhook listener.
	var hout, herr bytes.Buffer
	if code := run([]string{"healthcheck", "http://" + gw.MetricsAddr() + "/healthz"}, &hout, &herr); code != 0 {
		t.Errorf("healthcheck on the metrics listener: exit %d %s", code, herr.String())
	}
	webhookHealth := strings.TrimSuffix(gw.WebhookURL(), "/webhook") + "/healthz"
	if code := run([]string{"healthcheck", webhookHealth}, &hout, &herr); code != 1 {
		t.Errorf("healthcheck on the webhook listener: exit %d, want 1 (404)", code)
	}

	writeOpsConfig(t, path, udp, `  - {name: pbx2, address: "127.0.0.1:5998", options_ping: false}`, "pbx2")
	sigs <- syscall.SIGHUP
	waitMetric(`wagateway_config_reloads_total{result="ok"}`, "1")
	waitMetric(`wagateway_trunk_up{trunk="pbx2"}`, "1")

	if err := os.WriteFile(path, []byte("trunks: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs <- syscall.SIGHUP
	waitMetric(`wagateway_config_reloads_total{result="error"}`, "1")
	if metricValue(t, gw, `wagateway_trunk_up{trunk="pbx2"}`) != "1" {
		t.Fatal("a bad reload changed the trunks")
	}

	sigs <- syscall.SIGTERM
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM with no call")
	}
	if !gw.Draining() {
		t.Error("SIGTERM did not drain")
	}
}

// check-config reports problems of every kind: fields, operations
// settings, secrets and the files the config names.
func TestCheckConfigOpsProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`
drain_timeout: -1s
health: {options_interval: 1s, options_timeout: 3s}
admin: {listen: "127.0.0.1:8081"}
call_records: {url: "ftp://records"}
whatsapp: {access_token: {env: T}, app_secret: {env: S}, verify_token: {env: V}}
trunks: [{name: pbx, address: "127.0.0.1:5060"}]
numbers: [{phone_number_id: "12", routes: [{trunk: pbx, destination: "sip:a@b"}]}]
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, field := range []string{"drain_timeout", "health.options_timeout", "admin.token", "call_records.url"} {
		if !strings.Contains(errb.String(), field) {
			t.Errorf("check-config does not name %s:\n%s", field, errb.String())
		}
	}

	// Valid fields, but a missing secret, an unreadable certificate and a
	// record file in a folder that does not exist: all listed at once.
	files := filepath.Join(dir, "files.yaml")
	os.WriteFile(files, []byte(`
http: {tls_cert_file: `+filepath.Join(dir, "nope.crt")+`, tls_key_file: `+filepath.Join(dir, "nope.key")+`}
call_records: {file: /nonexistent-dir/calls.jsonl}
whatsapp: {access_token: {env: WAGW_CC_T}, app_secret: {env: WAGW_CC_S}, verify_token: {env: WAGW_CC_V}}
trunks: [{name: pbx, address: "127.0.0.1:5060"}]
numbers: [{phone_number_id: "12", routes: [{trunk: pbx, destination: "sip:a@b"}]}]
`), 0o600)
	t.Setenv("WAGW_CC_T", "t")
	t.Setenv("WAGW_CC_S", "s")
	os.Unsetenv("WAGW_CC_V")
	out.Reset()
	errb.Reset()
	if code := run([]string{"check-config", files}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, field := range []string{"whatsapp.verify_token", "http.tls_cert_file", "call_records.file"} {
		if !strings.Contains(errb.String(), field) {
			t.Errorf("check-config does not name %s:\n%s", field, errb.String())
		}
	}
}

func TestHealthcheckCommand(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"healthcheck", ok.URL}, &out, &errb); code != 0 {
		t.Errorf("healthy: exit %d %s", code, errb.String())
	}
	if code := run([]string{"healthcheck", down.URL}, &out, &errb); code != 1 {
		t.Errorf("503: exit %d", code)
	}
	if code := run([]string{"healthcheck", "http://127.0.0.1:1/healthz"}, &out, &errb); code != 1 {
		t.Errorf("nothing listening: exit %d", code)
	}
}

// check-config warns, without failing, when the admin API binds every
// interface without TLS; a loopback admin API draws no warning.
func TestCheckConfigWarnsOfExposedAdmin(t *testing.T) {
	t.Setenv("WAGW_W_T", "t")
	t.Setenv("WAGW_W_S", "s")
	t.Setenv("WAGW_W_V", "v")
	t.Setenv("WAGW_W_A", "admin-secret")
	base := `
whatsapp: {access_token: {env: WAGW_W_T}, app_secret: {env: WAGW_W_S}, verify_token: {env: WAGW_W_V}}
webrtc: {public_ips: [9.9.9.9]}
trunks: [{name: pbx, address: "127.0.0.1:5070"}]
numbers: [{phone_number_id: "12", routes: [{trunk: pbx, destination: "sip:a@b"}]}]
`
	dir := t.TempDir()
	for _, tc := range []struct {
		name, extra string
		warn        []string
	}{
		{"admin on every interface", `admin: {listen: "0.0.0.0:8081", token: {env: WAGW_W_A}}`, []string{"warning: admin.listen", "0.0.0.0:8081", "no TLS"}},
		{"metrics on every interface", `metrics: {listen: ":9100"}`, []string{"warning: metrics.listen", ":9100"}},
		{"loopback only", `admin: {listen: "127.0.0.1:8081", token: {env: WAGW_W_A}}`, nil},
		{"defaults", ``, nil},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
		os.WriteFile(path, []byte(base+tc.extra+"\n"), 0o600)
		var out, errb bytes.Buffer
		if code := run([]string{"check-config", path}, &out, &errb); code != 0 {
			t.Errorf("%s: exit %d (a warning is not an error): %s", tc.name, code, errb.String())
			continue
		}
		for _, want := range tc.warn {
			if !strings.Contains(errb.String(), want) {
				t.Errorf("%s: no %q in:\n%s", tc.name, want, errb.String())
			}
		}
		if tc.warn == nil && strings.Contains(errb.String(), "warning") {
			t.Errorf("%s: unexpected warning:\n%s", tc.name, errb.String())
		}
		if strings.Contains(errb.String()+out.String(), "admin-secret") {
			t.Errorf("%s: the admin token was printed", tc.name)
		}
		if !strings.Contains(out.String(), "/metrics, /healthz, /readyz on ") {
			t.Errorf("%s: the metrics listener is not shown:\n%s", tc.name, out.String())
		}
	}
}

// healthcheck -config probes /healthz on the metrics listener that config
// names (every interface reached on 127.0.0.1); with nothing, the default.
func TestHealthcheckFollowsConfig(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(404)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer ok.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(ok.URL, "http://"), ":")
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(path, []byte(`
whatsapp: {access_token: {env: X}, app_secret: {env: Y}, verify_token: {env: Z}}
trunks: [{name: pbx, address: "127.0.0.1:5060"}]
numbers: [{phone_number_id: "12", routes: [{trunk: pbx, destination: "sip:a@b"}]}]
metrics: {listen: "0.0.0.0:`+port+`"}
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"healthcheck", "-config", path}, &out, &errb); code != 0 {
		t.Errorf("healthcheck -config: exit %d %s", code, errb.String())
	}
	// A metrics listener with TLS is probed over https (its certificate,
	// made for a host name, is not verified by the liveness probe).
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	defer secure.Close()
	_, sport, _ := strings.Cut(strings.TrimPrefix(secure.URL, "https://"), ":")
	tlsPath := filepath.Join(t.TempDir(), "tls.yaml")
	os.WriteFile(tlsPath, []byte(`
whatsapp: {access_token: {env: X}, app_secret: {env: Y}, verify_token: {env: Z}}
trunks: [{name: pbx, address: "127.0.0.1:5060"}]
numbers: [{phone_number_id: "12", routes: [{trunk: pbx, destination: "sip:a@b"}]}]
metrics: {listen: ":`+sport+`", tls_cert_file: /etc/ops.crt, tls_key_file: /etc/ops.key}
`), 0o600)
	if code := run([]string{"healthcheck", "-config", tlsPath}, &out, &errb); code != 0 {
		t.Errorf("healthcheck -config, TLS: exit %d %s", code, errb.String())
	}
	if code := run([]string{"healthcheck", "-config", filepath.Join(t.TempDir(), "none.yaml")}, &out, &errb); code != 1 {
		t.Errorf("missing config: exit %d", code)
	}
	if code := run([]string{"healthcheck", "a", "b"}, &out, &errb); code != 2 {
		t.Errorf("two URLs: exit %d", code)
	}
}

package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// version and --version print the version and commit set with -ldflags -X
// (make build, the Dockerfile), "dev" without them; the daemon exports the
// same as wagateway_build_info.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 {
			t.Fatalf("%s: exit %d %s", arg, code, errb.String())
		}
		if !strings.HasPrefix(out.String(), "wagateway dev (commit ") || !strings.Contains(out.String(), runtime.Version()) {
			t.Errorf("%s: %q", arg, out.String())
		}
	}
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "1.4.0", "0123456789ab"
	var out bytes.Buffer
	run([]string{"--version"}, &out, &out)
	if want := "wagateway 1.4.0 (commit 0123456789ab, " + runtime.Version() + ")\n"; out.String() != want {
		t.Errorf("with -X: %q, want %q", out.String(), want)
	}

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
	select {
	case gw := <-started:
		series := `wagateway_build_info{commit="0123456789ab",go_version="` + runtime.Version() + `",version="1.4.0"}`
		if v := metricValue(t, gw, series); v != "1" {
			t.Errorf("%s = %q, want 1", series, v)
		}
	case code := <-exit:
		t.Fatalf("gateway exited %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start")
	}
	sigs <- syscall.SIGINT
	if code := <-exit; code != 0 {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

// The image's HEALTHCHECK is `wagateway healthcheck /etc/wagateway/gateway.yaml`:
// a config file as the only argument is read like -config FILE (metrics
// listener, https when it has a certificate); a URL stays a URL.
func TestHealthcheckConfigArgument(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(404)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(plain.Config.Handler)
	defer secure.Close()
	base := `
whatsapp: {access_token: {env: X}, app_secret: {env: Y}, verify_token: {env: Z}}
trunks: [{name: pbx, address: "127.0.0.1:5060"}]
numbers: [{phone_number_id: "12", routes: [{trunk: pbx, destination: "sip:a@b"}]}]
`
	dir := t.TempDir()
	port := func(u string) string { return u[strings.LastIndex(u, ":")+1:] }
	for name, extra := range map[string]string{
		"admin.yaml": `admin: {listen: "0.0.0.0:` + port(plain.URL) + `", token: {env: A}}`,
		"tls.yaml":   `metrics: {listen: ":` + port(secure.URL) + `", tls_cert_file: /etc/ops.crt, tls_key_file: /etc/ops.key}`,
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(base+extra+"\n"), 0o600)
		var out, errb bytes.Buffer
		if code := run([]string{"healthcheck", path}, &out, &errb); code != 0 {
			t.Errorf("healthcheck %s: exit %d %s", name, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"healthcheck", filepath.Join(dir, "none.yaml")}, &out, &errb); code != 1 {
		t.Errorf("missing config: exit %d", code)
	}
	if code := run([]string{"healthcheck", plain.URL + "/healthz"}, &out, &errb); code != 0 {
		t.Errorf("URL: exit %d %s", code, errb.String())
	}
}

// The Dockerfile's HEALTHCHECK is the command above, on the path the image
// copies its config to.
func TestDockerfileHealthcheck(t *testing.T) {
	raw, err := os.ReadFile("../../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{
		`CMD ["/usr/local/bin/wagateway", "healthcheck", "/etc/wagateway/gateway.yaml"]`,
		"COPY configs/gateway.yaml /etc/wagateway/gateway.yaml",
		"-X main.version=${VERSION} -X main.commit=${COMMIT}",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("docker/Dockerfile lacks %s", want)
		}
	}
}

// The compose files' gateway configs pass check-config after the README
// quick start's edits only: the secrets of docker/env.example filled in and
// webrtc.public_ips set to the host's public address.
func TestComposeGatewayConfigsAfterQuickStart(t *testing.T) {
	env, err := os.ReadFile("../../docker/env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			if v == "" {
				v = "secret-" + strings.ToLower(k)
			}
			t.Setenv(k, v)
		}
	}
	for _, name := range []string{"gateway.yaml", "gateway-freeswitch.yaml"} {
		raw, err := os.ReadFile(filepath.Join("../../docker", name))
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(raw), "public_ips: []", "public_ips: [81.2.69.160]", 1)
		if edited == string(raw) {
			t.Fatalf("%s: no public_ips line to edit as the README says", name)
		}
		// /var/lib/wagateway is the container's data volume.
		dir := t.TempDir()
		edited = strings.ReplaceAll(edited, "/var/lib/wagateway", dir)
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(edited), 0o600)
		var out, errb bytes.Buffer
		if code := run([]string{"check-config", path}, &out, &errb); code != 0 {
			t.Errorf("docker/%s after the quick start's edits: exit %d\n%s", name, code, errb.String())
		}
	}
}

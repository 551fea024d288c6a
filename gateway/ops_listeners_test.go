package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
)

// The webhook listener faces the internet: /metrics, /readyz, /healthz and
// the admin API are not there (404), and are on the metrics listener: its
// own, or the admin API's when they share it.
func TestOpsListenersKeepOpsOffTheWebhook(t *testing.T) {
	secrets := testSecrets
	secrets.AdminToken = "admin-token-for-tests"
	for _, tc := range []struct {
		name   string
		edit   func(*gateway.Config)
		shared bool
	}{
		{"metrics on their own listener", nil, false},
		{"metrics on the admin listener", func(c *gateway.Config) {
			c.Admin = gateway.AdminConfig{Listen: "127.0.0.1:0", Token: gateway.SecretRef{Env: "UNUSED_IN_TEST"}}
			c.Metrics.Listen = c.Admin.Listen
		}, true},
		{"admin and metrics apart", func(c *gateway.Config) {
			c.Admin = gateway.AdminConfig{Listen: "localhost:0", Token: gateway.SecretRef{Env: "UNUSED_IN_TEST"}}
			c.Metrics.Listen = "127.0.0.1:0"
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{PBXAddr: "127.0.0.1:9", Secrets: &secrets, Config: tc.edit})
			if h.gw.MetricsAddr() == "" || strings.HasSuffix(h.base, h.gw.MetricsAddr()) {
				t.Fatalf("metrics listener %q, webhook %s", h.gw.MetricsAddr(), h.base)
			}
			if shared := h.gw.MetricsAddr() == h.gw.AdminAddr(); shared != tc.shared {
				t.Errorf("metrics %s, admin %s: shared %v, want %v", h.gw.MetricsAddr(), h.gw.AdminAddr(), shared, tc.shared)
			}
			for _, path := range []string{"/metrics", "/readyz", "/healthz", "/admin/calls"} {
				if code, body := httpGet(t, h.base+path, secrets.AdminToken); code != http.StatusNotFound {
					t.Errorf("webhook listener %s: HTTP %d, want 404: %.200s", path, code, body)
				}
			}
			code, body := httpGet(t, h.opsURL()+"/metrics", "")
			if code != http.StatusOK || !strings.Contains(body, "wagateway_active_calls 0") {
				t.Errorf("metrics listener /metrics: HTTP %d: %.200s", code, body)
			}
			if code, body := httpGet(t, h.opsURL()+"/readyz", ""); code != http.StatusOK || !strings.Contains(body, `"trunks":{"pbx"`) {
				t.Errorf("metrics listener /readyz: HTTP %d %s", code, body)
			}
			if code, _ := httpGet(t, h.opsURL()+"/healthz", ""); code != http.StatusOK {
				t.Errorf("metrics listener /healthz: HTTP %d", code)
			}
			if admin := h.gw.AdminAddr(); admin != "" {
				code, _ := httpGet(t, "http://"+admin+"/metrics", "")
				if want := map[bool]int{true: 200, false: 404}[tc.shared]; code != want {
					t.Errorf("admin listener /metrics: HTTP %d, want %d", code, want)
				}
				if code, _ := httpGet(t, "http://"+admin+"/admin/calls", secrets.AdminToken); code != http.StatusOK {
					t.Errorf("admin API: HTTP %d", code)
				}
			}
			// The webhook itself still answers there (Meta's verification GET).
			if code, _ := httpGet(t, h.base+"/webhook?hub.mode=subscribe&hub.verify_token="+testSecrets.VerifyToken+"&hub.challenge=42", ""); code != http.StatusOK {
				t.Errorf("webhook verification: HTTP %d", code)
			}
		})
	}
}

// http.health_path answers on the webhook listener 200, then 503 once the
// gateway does not take calls (draining), with no detail; /readyz keeps the
// detail on the metrics listener.
func TestOpsPublicHealthPathWithoutDetail(t *testing.T) {
	h := newHarness(t, harnessOptions{PBXAddr: "127.0.0.1:9", Config: func(c *gateway.Config) {
		c.HTTP.HealthPath = "/healthz"
	}})
	code, body := httpGet(t, h.base+"/healthz", "")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("webhook listener /healthz: HTTP %d %q, want 200 \"ok\"", code, body)
	}
	for _, path := range []string{"/metrics", "/readyz"} {
		if code, _ := httpGet(t, h.base+path, ""); code != http.StatusNotFound {
			t.Errorf("webhook listener %s: HTTP %d, want 404", path, code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.gw.Drain(ctx); err != nil { // no call: returns at once
		t.Fatal(err)
	}
	code, body = httpGet(t, h.base+"/healthz", "")
	if code != http.StatusServiceUnavailable || body != "unavailable\n" {
		t.Errorf("webhook listener /healthz while draining: HTTP %d %q, want 503 without detail", code, body)
	}
	if code, body := httpGet(t, h.opsURL()+"/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, `"draining":true`) {
		t.Errorf("metrics listener /readyz while draining: HTTP %d %s", code, body)
	}
}

// admin.tls_* and metrics.tls_*: the admin API and a metrics listener of
// its own serve TLS (plain HTTP is refused there), and draw no warning on
// an address that is not loopback; a bad pair is named by its field.
func TestOpsAdminAndMetricsOverTLS(t *testing.T) {
	cert, key := writeSelfSigned(t)
	secrets := testSecrets
	secrets.AdminToken = "admin-token-for-tests"
	h := newHarness(t, harnessOptions{PBXAddr: "127.0.0.1:9", Secrets: &secrets, Config: func(c *gateway.Config) {
		c.Admin = gateway.AdminConfig{Listen: "localhost:0", Token: gateway.SecretRef{Env: "UNUSED_IN_TEST"},
			TLSCertFile: cert, TLSKeyFile: key}
		c.Metrics = gateway.MetricsConfig{Listen: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key}
		c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile = cert, key // the webhook listener, bound the same way
	}})
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(url, token string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := insecure.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode
	}
	if u := h.gw.WebhookURL(); !strings.HasPrefix(u, "https://") ||
		get(u+"?hub.mode=subscribe&hub.verify_token="+secrets.VerifyToken+"&hub.challenge=42", "") != http.StatusOK {
		t.Errorf("the webhook over TLS (%s) does not answer Meta's handshake", u)
	}
	if code := get("https://"+h.gw.MetricsAddr()+"/metrics", ""); code != http.StatusOK {
		t.Errorf("https /metrics: HTTP %d", code)
	}
	if code := get("https://"+h.gw.AdminAddr()+"/admin/calls", secrets.AdminToken); code != http.StatusOK {
		t.Errorf("https /admin/calls: HTTP %d", code)
	}
	for _, addr := range []string{h.gw.MetricsAddr(), h.gw.AdminAddr()} {
		if code, _ := httpGet(t, "http://"+addr+"/healthz", ""); code == http.StatusOK {
			t.Errorf("plain HTTP answered on the TLS listener %s", addr)
		}
	}

	// The same on every interface: no warning. A missing pair is named.
	c := *h.cfg
	c.Admin.Listen, c.Metrics.Listen = "0.0.0.0:8081", ":9100"
	for _, w := range c.Warnings() {
		if strings.HasPrefix(w, "admin.") || strings.HasPrefix(w, "metrics.") { // (loopback public_ips draw their own)
			t.Errorf("warning with TLS: %q", w)
		}
	}
	c.Admin.TLSKeyFile = filepath.Join(t.TempDir(), "none.key")
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "admin.tls_cert_file") {
		t.Errorf("a bad admin key pair: %v", err)
	}
}

// writeSelfSigned writes a throwaway certificate for localhost and
// 127.0.0.1 and its key, PEM, and returns their paths.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ops.crt"), filepath.Join(dir, "ops.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A full call at debug level (webhook verification, digest auth toward the
// PBX, Graph actions, admin API, call record POST) logs no secret: not the
// access token, the app secret, the verify token, the SIP password, the
// admin token nor the call record URL's token.
func TestOpsNoSecretInDebugLogs(t *testing.T) {
	pbx := startSipp(t, "pbx_auth_echo.xml", 1, 40*time.Second)

	secrets := gateway.Secrets{
		AccessToken:      "EAAtoken-SECRET-access-4242",
		AppSecret:        "appsecret-SECRET-9f8e7d",
		VerifyToken:      "verify-SECRET-token-1234",
		TrunkPasswords:   map[string]string{"pbx": "pbx-Pa55-do-not-log"}, // pbx_auth_echo.xml checks it
		AdminToken:       "admin-SECRET-token-5678",
		CallRecordsToken: "records-SECRET-token-0000",
	}
	var posted struct {
		sync.Mutex
		auth []string
		body []string
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posted.Lock()
		posted.auth = append(posted.auth, r.Header.Get("Authorization"))
		posted.body = append(posted.body, string(b))
		posted.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()

	var logs syncBuffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zapcore.DebugLevel)
	log := zap.New(core)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, Secrets: &secrets, Log: log, Config: func(c *gateway.Config) {
		c.Log.Level = "debug"
		c.Trunks[0].Username = "gw"
		c.Trunks[0].Password = gateway.SecretRef{Env: "UNUSED_PBX_PASSWORD"}
		c.Admin = gateway.AdminConfig{Listen: "127.0.0.1:0", Token: gateway.SecretRef{Env: "UNUSED_ADMIN"}}
		c.CallRecords.URL = sink.URL + "/records"
		c.CallRecords.URLToken = gateway.SecretRef{Env: "UNUSED_RECORDS"}
	}})

	// Meta's verification handshake, with the right token and a wrong one.
	q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {secrets.VerifyToken}, "hub.challenge": {"c123"}}
	if code, body := httpGet(t, h.gw.WebhookURL()+"?"+q.Encode(), ""); code != 200 || body != "c123" {
		t.Fatalf("verification: %d %q", code, body)
	}
	q.Set("hub.verify_token", "wrong")
	if code, _ := httpGet(t, h.gw.WebhookURL()+"?"+q.Encode(), ""); code != 403 {
		t.Fatalf("bad verification: %d", code)
	}

	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 2 * time.Second})
	waitFor(t, 10*time.Second, "the call accepted", func() bool { return c.State() == wasim.StateAccepted })
	admin := "http://" + h.gw.AdminAddr() + "/admin/calls"
	if code, _ := httpGet(t, admin, secrets.AdminToken); code != 200 {
		t.Errorf("admin list: %d", code)
	}
	httpGet(t, admin, "admin-wrong-token")
	r := waitReport(t, c, 20*time.Second)
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("graph actions %q (digest auth must have worked)", got)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h.record(t, c.ID())
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.gw.Close(cctx); err != nil { // flushes the record POST
		t.Fatal(err)
	}

	posted.Lock()
	if len(posted.auth) != 1 || posted.auth[0] != "Bearer "+secrets.CallRecordsToken || !strings.Contains(posted.body[0], c.ID()) {
		t.Errorf("call record POST: auth %q, bodies %d", posted.auth, len(posted.body))
	}
	posted.Unlock()

	out := logs.String()
	if testing.Verbose() {
		t.Logf("gateway log:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 30 || !strings.Contains(out, `"level":"debug"`) {
		t.Fatalf("only %d log lines at debug level: the test would prove nothing", len(lines))
	}
	for name, secret := range map[string]string{
		"access token": secrets.AccessToken, "app secret": secrets.AppSecret, "verify token": secrets.VerifyToken,
		"SIP password": secrets.TrunkPasswords["pbx"], "admin token": secrets.AdminToken, "call record token": secrets.CallRecordsToken,
	} {
		for _, l := range lines {
			if strings.Contains(l, secret) {
				t.Errorf("the %s is in a log line: %s", name, l)
				break
			}
		}
	}
	// Every line of the call's own logger carries both ids once the SIP leg exists.
	for _, l := range lines {
		if strings.Contains(l, `"msg":"call ended"`) &&
			(!strings.Contains(l, `"call_id":"`+c.ID()+`"`) || !strings.Contains(l, `"sip_call_id":"`)) {
			t.Errorf("call ended line without call_id and sip_call_id: %s", l)
		}
	}
}

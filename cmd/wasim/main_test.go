package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

const (
	secretValue = "s3cr3t-app-value"
	tokenValue  = "t0k3n-value"
)

func env(name string) string {
	switch name {
	case "WASIM_APP_SECRET":
		return secretValue
	case "WASIM_ACCESS_TOKEN":
		return tokenValue
	}
	return ""
}

func runCmd(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, getenv, &out, &errb, make(chan os.Signal))
	for _, s := range []string{out.String(), errb.String()} {
		if strings.Contains(s, secretValue) || strings.Contains(s, tokenValue) {
			t.Fatalf("a secret was printed:\n%s", s)
		}
	}
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	if code, _, e := runCmd(t, env); code != exitUsage || !strings.Contains(e, "wasim call [flags]") {
		t.Errorf("no args: %d %q", code, e)
	}
	if code, _, _ := runCmd(t, env, "help"); code != exitOK {
		t.Errorf("help: %d", code)
	}
	if code, _, _ := runCmd(t, env, "dial"); code != exitUsage {
		t.Errorf("unknown command: %d", code)
	}
	if code, _, e := runCmd(t, env, "call"); code != exitUsage || !strings.Contains(e, "-webhook is required") {
		t.Errorf("no webhook: %d %q", code, e)
	}
	none := func(string) string { return "" }
	code, _, e := runCmd(t, none, "call", "-webhook", "http://127.0.0.1:1/w", "-token-env", "MY_TOKEN")
	if code != exitUsage || !strings.Contains(e, `"WASIM_APP_SECRET"`) || !strings.Contains(e, `"MY_TOKEN"`) {
		t.Errorf("missing secrets: %d %q", code, e)
	}
}

// A gateway that refuses a badly signed webhook passes -bad-signature.
func TestBadSignatureRefused(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer gw.Close()
	code, out, e := runCmd(t, env, "call", "-webhook", gw.URL, "-graph-listen", "127.0.0.1:0", "-bad-signature")
	if code != exitOK || !strings.Contains(out, "webhook_rejected") {
		t.Errorf("exit %d\n%s%s", code, out, e)
	}
}

// A gateway that never answers fails, and the report says why.
func TestNotAnsweredFails(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer gw.Close()
	code, out, e := runCmd(t, env, "call", "-webhook", gw.URL, "-graph-listen", "127.0.0.1:0", "-accept-timeout", "300ms", "-json")
	if code != exitFailed || !strings.Contains(out, `"Outcome": "not_answered"`) || !strings.Contains(e, "never accepted") {
		t.Errorf("exit %d\n%s%s", code, out, e)
	}
}

// -webhook-copies N delivers each webhook N times (here with
// -webhook-shuffle: concurrently); 0 is a usage error.
func TestWebhookCopiesFlag(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		for _, ev := range []string{"connect", "terminate"} {
			if strings.Contains(string(b), `"event":"`+ev+`"`) {
				seen[ev]++
			}
		}
		mu.Unlock()
	}))
	defer gw.Close()
	code, out, e := runCmd(t, env, "call", "-webhook", gw.URL, "-graph-listen", "127.0.0.1:0", "-accept-timeout", "300ms",
		"-webhook-copies", "3", "-webhook-shuffle", "-json")
	if code != exitFailed || !strings.Contains(out, `"Outcome": "not_answered"`) {
		t.Errorf("exit %d\n%s%s", code, out, e)
	}
	mu.Lock()
	if seen["connect"] != 3 || seen["terminate"] != 3 {
		t.Errorf("webhooks seen %v, want 3 connect and 3 terminate", seen)
	}
	mu.Unlock()
	if code, _, e := runCmd(t, env, "call", "-webhook", gw.URL, "-webhook-copies", "0"); code != exitUsage || !strings.Contains(e, "-webhook-copies must be at least 1") {
		t.Errorf("-webhook-copies 0: %d %q", code, e)
	}
	for _, cmd := range []string{"bic", "load"} {
		if code, _, e := runCmd(t, env, cmd, "-h"); code != exitOK || !strings.Contains(e, "-webhook-copies") || !strings.Contains(e, "-webhook-shuffle") {
			t.Errorf("%s -h: %d, flags not listed", cmd, code)
		}
	}
}

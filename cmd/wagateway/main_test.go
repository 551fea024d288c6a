package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// The embedded default runs the whole main job: a simulated WhatsApp call
// through the gateway to the SIP echo endpoint, audio checked both ways.
func TestDemoCallRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Demo(ctx, DemoOptions{Talk: 2 * time.Second})
	if err != nil {
		t.Fatalf("demo failed: %v\n%v", err, rep)
	}
	if math.Abs(rep.ReceivedFreqHz-demoToneHz) > demoFreqTolerance {
		t.Fatalf("tone came back at %.0f Hz", rep.ReceivedFreqHz)
	}
}

// The demo's verdict really depends on the audio: a report whose tone is
// off, silent or from two SSRCs fails.
func TestDemoVerdictNeedsTheTone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good, err := Demo(ctx, DemoOptions{Talk: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(r *wasim.Report){
		"wrong tone": func(r *wasim.Report) { r.ReceivedFreqHz = 440 },
		"noise":      func(r *wasim.Report) { r.ReceivedPurity = 0.1 },
		"too quiet":  func(r *wasim.Report) { r.ReceivedLevelDBFS = -60 },
		"two ssrcs":  func(r *wasim.Report) { r.SSRCsReceived = 2 },
		"violation":  func(r *wasim.Report) { r.Violations = []string{"media before accept"} },
	} {
		bad := *good
		spoil(&bad)
		if checkDemoReport(&bad) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkDemoReport(good); err != nil {
		t.Errorf("the real report fails its own check: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("WA_ACCESS_TOKEN", "t")
	t.Setenv("WA_APP_SECRET", "s")
	t.Setenv("WA_VERIFY_TOKEN", "v")
	t.Setenv("PBX_PASSWORD", "p")
	if code := run([]string{"check-config", "../../configs/gateway.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("example config: exit %d: %s", code, errb.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`
http: {webhook_path: webhook}
whatsapp: {access_token: {env: T}, app_secret: {env: S}, verify_token: {env: V}}
trunks: [{name: pbx, address: nohost, codecs: [GSM]}]
numbers: [{phone_number_id: "12", routes: [{trunk: other, destination: "tel:123"}]}]
`), 0o600)
	out.Reset()
	errb.Reset()
	if code := run([]string{"check-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("bad config: exit %d", code)
	}
	for _, field := range []string{"http.webhook_path", "trunks[0].address", "trunks[0].codecs[0]", "numbers[0].routes[0].trunk", "numbers[0].routes[0].destination"} {
		if !strings.Contains(errb.String(), field) {
			t.Errorf("check-config output does not name %s:\n%s", field, errb.String())
		}
	}
	if code := run([]string{"bogus"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

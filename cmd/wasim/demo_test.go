package main

import (
	"context"
	"math"
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

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// Demo tone and what must come back: the caller's tone goes WhatsApp → Opus
// decode → PCMU → the PBX's echo → PCMU decode → Opus encode → WhatsApp, so
// hearing it proves both directions, transcoded twice.
const (
	demoToneHz        = 1000.0
	demoFreqTolerance = 20.0
	demoMinPurity     = 0.5
	demoMinLevelDBFS  = -40.0
	demoPhoneNumberID = "1000000001"
)

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wasim demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "log the gateway at debug level")
	seconds := fs.Int("seconds", 4, "how long the caller talks before hanging up")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *seconds < 1 || *seconds > 300 {
		fmt.Fprintln(stderr, "demo: -seconds must be within 1-300")
		return 2
	}
	logCfg := gateway.LogConfig{Level: "warn", Format: "console"}
	if *verbose {
		logCfg.Level = "debug"
	}
	log, err := gateway.NewLogger(logCfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer log.Sync()

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*seconds)*time.Second+90*time.Second)
	defer cancel()
	rep, err := Demo(ctx, DemoOptions{Talk: time.Duration(*seconds) * time.Second, Logger: log})
	if rep != nil {
		fmt.Fprintln(stdout, rep.String())
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "demo: OK — a %.0f Hz tone went WhatsApp → gateway → SIP echo → gateway → WhatsApp and came back at %.0f Hz\n",
		demoToneHz, rep.ReceivedFreqHz)
	return 0
}

// DemoOptions shape one demo call.
type DemoOptions struct {
	Talk   time.Duration
	Logger *zap.Logger
}

// Demo starts a SIP echo endpoint, a simulated Cloud API and the gateway on
// loopback, places one call, and checks the audio that comes back. The
// demo lives in the simulator's command, not the daemon, so the production
// binary links none of the simulator (nor pion's full WebRTC stack).
func Demo(ctx context.Context, o DemoOptions) (*wasim.Report, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	echo, err := sip.NewEchoServer(sip.EchoConfig{
		ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1", RTPPortMin: 41000, RTPPortMax: 41999,
		Logger: log.Named("echo"),
	})
	if err != nil {
		return nil, fmt.Errorf("echo endpoint: %w", err)
	}
	if err := echo.Start(ctx); err != nil {
		return nil, fmt.Errorf("echo endpoint: %w", err)
	}
	defer echo.Close()

	secrets := &gateway.Secrets{AccessToken: randomHex(16), AppSecret: randomHex(16), VerifyToken: randomHex(16)}
	httpPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		return nil, err
	}
	udpPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		return nil, err
	}
	webhookURL := "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/webhook"

	sim, err := wasim.New(wasim.Config{
		GraphListen: "127.0.0.1:0", WebhookURL: webhookURL,
		AppSecret: secrets.AppSecret, AccessToken: secrets.AccessToken,
		PhoneNumberID: demoPhoneNumberID, MediaIP: "127.0.0.1", Logger: log.Named("wasim"),
	})
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	if err := sim.Start(ctx); err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	defer sim.Close()

	cfg := gateway.LoopbackConfig(gateway.LoopbackOptions{
		HTTPPort: httpPort, UDPPort: udpPort, GraphURL: sim.GraphURL(), PBXAddr: echo.Addr(), PhoneNumberID: demoPhoneNumberID,
	})
	gw, err := gateway.New(cfg, secrets, log.Named("gateway"))
	if err != nil {
		return nil, err
	}
	if err := gw.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Close(cctx)
	}()

	call, err := sim.PlaceCall(ctx, wasim.CallOptions{
		From: "15550001234", FromUserID: "US.13491208655302741918", ProfileName: "Demo Caller",
		ToneHz: demoToneHz, Duration: o.Talk,
	})
	if err != nil {
		return nil, fmt.Errorf("place call: %w", err)
	}
	rep, err := call.Wait(ctx)
	if err != nil {
		return rep, fmt.Errorf("call: %w", err)
	}
	return rep, checkDemoReport(rep)
}

func checkDemoReport(r *wasim.Report) error {
	switch {
	case len(r.Violations) > 0:
		return fmt.Errorf("the gateway broke Meta's rules: %v", r.Violations)
	case r.AcceptAt.IsZero():
		return fmt.Errorf("the call was never accepted (outcome %s)", r.Outcome)
	case r.PacketsReceived == 0:
		return fmt.Errorf("no audio came back from the gateway")
	case r.SSRCsReceived != 1:
		return fmt.Errorf("audio toward WhatsApp used %d SSRCs, want exactly 1", r.SSRCsReceived)
	case math.Abs(r.ReceivedFreqHz-demoToneHz) > demoFreqTolerance || r.ReceivedPurity < demoMinPurity:
		return fmt.Errorf("the tone did not come back: dominant %.0f Hz (purity %.2f), want %.0f Hz", r.ReceivedFreqHz, r.ReceivedPurity, demoToneHz)
	case r.ReceivedLevelDBFS < demoMinLevelDBFS:
		return fmt.Errorf("the tone came back too quiet: %.1f dBFS", r.ReceivedLevelDBFS)
	}
	return nil
}

package main

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// A short load run in-process: 20 calls through the gateway (Opus ⇄ PCMU)
// to the built-in SIP echo, held 10 s. No call may fail or drop, loss must
// stay small and every call's latency markers must come back.
func TestShortLoadRun(t *testing.T) {
	if testing.Short() {
		t.Skip("load run")
	}
	calls := 20
	if v, err := strconv.Atoi(os.Getenv("WASIM_LOAD_CALLS")); err == nil && v > 0 {
		calls = v
	}
	rep := runInProcess(t, nil, calls, 10*time.Second)
	if rep.RoundTrip.PassthroughCalls != 0 || rep.RoundTrip.DecodedPackets == 0 {
		t.Errorf("transcoded calls, but %d markers came back byte for byte", rep.RoundTrip.PassthroughCalls)
	}
}

// The same with Opus passed through to the PBX: the markers come back byte
// for byte and nothing is decoded after each call's first marker.
func TestShortLoadRunPassthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("load run")
	}
	rep := runInProcess(t, []string{"opus"}, 10, 5*time.Second)
	if rep.RoundTrip.PassthroughCalls != 10 {
		t.Errorf("%d of 10 calls passed through", rep.RoundTrip.PassthroughCalls)
	}
}

// And G.711 end to end: the callers offer PCMA and PCMU beside Opus (the
// number's audio.additional_codecs), the trunk takes PCMU and passes it
// through (whatsapp_codec: g711): every call runs PCMU toward WhatsApp, its
// markers come back byte for byte, nothing is decoded.
func TestShortLoadRunG711Passthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("load run")
	}
	rep := runInProcess(t, []string{"PCMU"}, 10, 5*time.Second, func(cfg *gateway.Config, sim *wasim.Sim) {
		cfg.Trunks[0].WhatsAppCodec = gateway.WhatsAppCodecG711
		if err := sim.SetAdditionalCodecs(cfg.Numbers[0].PhoneNumberID, "PCMA", "PCMU"); err != nil {
			t.Fatal(err)
		}
	})
	if rep.WhatsAppCodecs["PCMU"] != 10 || rep.RoundTrip.PassthroughCalls != 10 || rep.RoundTrip.DecodedPackets != 0 {
		t.Errorf("codecs %v, %d of 10 calls passed through, %d packets decoded", rep.WhatsAppCodecs, rep.RoundTrip.PassthroughCalls, rep.RoundTrip.DecodedPackets)
	}
}

// runInProcess runs the echo, the gateway (trunk codecs as given, default
// if nil) and a load run in this process, and checks what every run must;
// setup, if given, edits the gateway's config and the simulator first.
func runInProcess(t *testing.T, codecs []string, calls int, hold time.Duration, setup ...func(*gateway.Config, *wasim.Sim)) *wasim.LoadReport {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	echo, err := sip.NewEchoServer(sip.EchoConfig{ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1", Logger: log.Named("echo")})
	if err != nil {
		t.Fatal(err)
	}
	if err := echo.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer echo.Close()

	secrets := &gateway.Secrets{AccessToken: "load-token", AppSecret: "load-secret", VerifyToken: "load-verify"}
	httpPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := wasim.New(wasim.Config{
		GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/webhook",
		AppSecret: secrets.AppSecret, AccessToken: secrets.AccessToken, PhoneNumberID: "1000000001",
		MediaIP: "127.0.0.1", Logger: log.Named("wasim"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := gateway.LoopbackConfig(gateway.LoopbackOptions{
		HTTPPort: httpPort, UDPPort: udpPort, GraphURL: sim.GraphURL(), PBXAddr: echo.Addr(), PhoneNumberID: "1000000001",
		RTPPortMin: 42000, RTPPortMax: 42999,
	})
	if codecs != nil {
		cfg.Trunks[0].Codecs = codecs
	}
	for _, f := range setup {
		f(cfg, sim)
	}
	gw, err := gateway.New(cfg, secrets, log.Named("gateway"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		_ = gw.Close(cctx)
	}()

	rep, err := sim.RunLoad(ctx, wasim.LoadOptions{
		Calls: calls, Rate: 10, Hold: hold,
		Watch:    []wasim.WatchedProcess{{Name: "test process (all in one)", PID: os.Getpid()}},
		Progress: testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.Attempted != calls || rep.Bridged != calls || rep.Failed != 0 || rep.Dropped != 0 {
		t.Errorf("calls: attempted %d, bridged %d, failed %d %v, dropped %d %v", rep.Attempted, rep.Bridged, rep.Failed, rep.FailedBy, rep.Dropped, rep.DroppedBy)
	}
	if rep.CallsWithViolations != 0 {
		t.Errorf("Meta rules broken: %v", rep.Violations)
	}
	if tw := rep.ToWhatsApp; tw.PacketsReceived == 0 || tw.LossPercent > 0.5 {
		t.Errorf("toward WhatsApp: %d packets, %.3f %% lost", tw.PacketsReceived, tw.LossPercent)
	}
	if rt := rep.RoundTrip; rt.Detected == 0 || rt.Missed*10 > rt.Markers {
		t.Errorf("latency markers: %d sent, %d found", rt.Markers, rt.Detected)
	}
	return rep
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

package sip

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func TestNewUAConfig(t *testing.T) {
	bad := map[string]UAConfig{
		"no listen":       {},
		"bad listen":      {ListenAddr: "localhost"},
		"name host":       {ListenAddr: "example.com:5060"},
		"bad transport":   {ListenAddr: "127.0.0.1:0", Transport: "sctp"},
		"tls without key": {ListenAddr: "127.0.0.1:0", Transport: "tls"},
		"bad rtp address": {ListenAddr: "127.0.0.1:0", RTPAddress: "nowhere"},
		"bad rtp range":   {ListenAddr: "127.0.0.1:0", RTPPortMin: 30000, RTPPortMax: 29000},
		"low rtp range":   {ListenAddr: "127.0.0.1:0", RTPPortMin: 100, RTPPortMax: 200},
		"bad public host": {ListenAddr: "127.0.0.1:0", PublicHost: "a b"},
	}
	for name, cfg := range bad {
		if _, err := NewUA(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if ua.cfg.RTPPortMin != DefaultRTPPortMin || ua.cfg.RTPPortMax != DefaultRTPPortMax || ua.cfg.UserAgent != "wagateway" {
		t.Errorf("defaults not applied: %+v", ua.cfg)
	}
	if ua.Addr() != "" {
		t.Errorf("Addr before Start: %q", ua.Addr())
	}
	if err := ua.Close(); err != nil {
		t.Error(err)
	}
	if err := ua.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestUAStartAndClose(t *testing.T) {
	checkLeaks(t)
	for _, tr := range []string{"udp", "tcp"} {
		ua := newTestUA(t, tr)
		host, port, err := net.SplitHostPort(ua.Addr())
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("%s: Addr %q", tr, ua.Addr())
		}
		if err := ua.Start(context.Background()); err == nil {
			t.Errorf("%s: second Start succeeded", tr)
		}
		if err := ua.Close(); err != nil {
			t.Error(err)
		}
		if err := ua.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ua.Start(ctx); err == nil {
		t.Error("Start with a cancelled context succeeded")
	}
	ua.Close()
}

// request sends one request to the UA from a separate sipgo client and
// returns the final response.
func request(t *testing.T, addr string, method sip.RequestMethod, toTag string) *sip.Response {
	t.Helper()
	host, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	cua, err := sipgo.NewUA(sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(newSlog(nil))),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(newSlog(nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer cua.Close()
	client, err := sipgo.NewClient(cua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(newSlog(nil)))
	if err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(method, sip.Uri{Scheme: "sip", User: "gw", Host: host, Port: port})
	if toTag != "" {
		to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "gw", Host: host}, Params: sip.NewParams()}
		to.Params.Add("tag", toTag)
		req.AppendHeader(to)
	}
	if method == sip.INVITE {
		req.AppendHeader(sip.NewHeader("Contact", "<sip:tester@127.0.0.1:9>"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res
}

func TestUAAnswersOutOfDialog(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	for _, tc := range []struct {
		method sip.RequestMethod
		toTag  string
		code   int
	}{
		{sip.OPTIONS, "", 200},          // keepalive / qualify
		{sip.INVITE, "", 403},           // the gateway only places calls
		{sip.BYE, "nosuchdialog", 481},  // unknown dialog
		{sip.INFO, "nosuchdialog", 481}, // unknown dialog
		{sip.OPTIONS, "nosuchdialog", 481},
		{sip.MESSAGE, "", 405},
	} {
		res := request(t, ua.Addr(), tc.method, tc.toTag)
		if res.StatusCode != tc.code {
			t.Errorf("%s (to tag %q): %d %s, want %d", tc.method, tc.toTag, res.StatusCode, res.Reason, tc.code)
		}
	}
}

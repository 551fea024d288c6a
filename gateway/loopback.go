package gateway

import (
	"strconv"
	"time"
)

// LoopbackOptions shape a config whose every listener is on 127.0.0.1.
type LoopbackOptions struct {
	HTTPPort, UDPPort      int    // webhook listener and the WebRTC UDP port
	GraphURL               string // the (simulated) Graph API
	PBXAddr                string // host:port of the PBX
	PhoneNumberID          string
	AnswerTimeout          time.Duration // default 15s
	RTPPortMin, RTPPortMax int           // default 40000-40999
	// PingTrunk watches the PBX with SIP OPTIONS, out of dialog and within
	// calls (sip.keepalive_interval) (off by default: a sipp scenario PBX
	// answers only what its scenario expects).
	PingTrunk bool
}

// LoopbackConfig is the embedded default of `wagateway demo` and the end-to-end
// tests: one trunk to PBXAddr, one number routed to it, nothing off loopback.
func LoopbackConfig(o LoopbackOptions) *Config {
	if o.AnswerTimeout == 0 {
		o.AnswerTimeout = 15 * time.Second
	}
	if o.RTPPortMin == 0 {
		o.RTPPortMin, o.RTPPortMax = 40000, 40999
		if o.UDPPort >= o.RTPPortMin && o.UDPPort <= o.RTPPortMax { // a free port the system chose
			o.RTPPortMin, o.RTPPortMax = 41000, 41999
		}
	}
	var keepalive *time.Duration
	if !o.PingTrunk {
		off := time.Duration(0)
		keepalive = &off
	}
	cfg := &Config{
		Log:  LogConfig{Level: "warn", Format: "console"},
		HTTP: HTTPConfig{Listen: "127.0.0.1:" + strconv.Itoa(o.HTTPPort), WebhookPath: "/webhook"},
		WhatsApp: WhatsAppConfig{GraphBaseURL: o.GraphURL, GraphTimeout: 5 * time.Second,
			AccessToken: SecretRef{Env: "WA_ACCESS_TOKEN"}, AppSecret: SecretRef{Env: "WA_APP_SECRET"}, VerifyToken: SecretRef{Env: "WA_VERIFY_TOKEN"}},
		WebRTC: WebRTCConfig{UDPPort: o.UDPPort, ListenIPs: []string{"127.0.0.1"}},
		SIP: SIPConfig{Listen: "127.0.0.1:0", RTPAddress: "127.0.0.1", RTPPortMin: o.RTPPortMin, RTPPortMax: o.RTPPortMax,
			KeepaliveInterval: keepalive},
		// A port of its own per gateway: several run side by side in tests.
		Metrics: MetricsConfig{Listen: "127.0.0.1:0"},
		Trunks:  []TrunkConfig{{Name: "pbx", Address: o.PBXAddr, OptionsPing: &o.PingTrunk}},
		Numbers: []NumberConfig{{PhoneNumberID: o.PhoneNumberID, Routes: []RouteConfig{
			{Name: "pbx", Trunk: "pbx", Destination: "sip:agents@" + o.PBXAddr, AnswerTimeout: o.AnswerTimeout},
		}}},
	}
	cfg.ApplyDefaults()
	return cfg
}

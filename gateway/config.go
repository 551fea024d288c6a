package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wagateway/wagateway/sip"
)

// Config is the gateway's whole configuration, read from YAML. Secrets are
// never in it: only the names of the environment variables or files that
// hold them (SecretRef).
type Config struct {
	Log      LogConfig      `yaml:"log"`
	HTTP     HTTPConfig     `yaml:"http"`
	WhatsApp WhatsAppConfig `yaml:"whatsapp"`
	WebRTC   WebRTCConfig   `yaml:"webrtc"`
	SIP      SIPConfig      `yaml:"sip"`
	Media    MediaConfig    `yaml:"media"`
	Trunks   []TrunkConfig  `yaml:"trunks"`
	Numbers  []NumberConfig `yaml:"numbers"`
	// Outbound: agents dial WhatsApp users (config_outbound.go).
	Outbound OutboundConfig `yaml:"outbound"`

	// Operations (config_ops.go).
	DrainTimeout time.Duration     `yaml:"drain_timeout"` // SIGTERM: how long active calls may go on, default 60s
	Health       HealthConfig      `yaml:"health"`
	CallRecords  CallRecordsConfig `yaml:"call_records"`
	Admin        AdminConfig       `yaml:"admin"`
	Metrics      MetricsConfig     `yaml:"metrics"`

	// MaxCalls bounds the calls in progress, both directions (0: no
	// limit); with a cluster, over all its instances.
	MaxCalls int `yaml:"max_calls"`
	// Cluster: several gateways as one (config_cluster.go).
	Cluster ClusterConfig `yaml:"cluster"`

	// CallingStateFile is where `wagateway settings apply` records the
	// voicemail announcements it uploaded (each number's file hash and
	// Meta's media id), so a later diff knows whether the file changed.
	// Default (LoadConfig): beside the config file, <name>.calling-state.json.
	CallingStateFile string `yaml:"calling_state_file"`

	// envNotes are the warnings of the environment's overrides;
	// where is each decoded field's line ("(line 12)") or variable.
	envNotes []string
	where    map[string]string
}

type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // console (default) or json
	// SIPTrace logs every SIP message sent and received (at debug: needs
	// level debug), credentials masked. Default false.
	SIPTrace bool `yaml:"sip_trace"`
}

type HTTPConfig struct {
	Listen      string `yaml:"listen"`       // default ":8080"
	WebhookPath string `yaml:"webhook_path"` // default "/webhook"
	// HealthPath, when set (e.g. /healthz), answers GET on the webhook
	// listener with 200 when the gateway takes calls and 503 when it does
	// not (draining, a trunk down), with no detail: for a load balancer in
	// front. Empty (default): the webhook listener serves the webhook only.
	HealthPath  string `yaml:"health_path"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

type WhatsAppConfig struct {
	GraphBaseURL string        `yaml:"graph_base_url"` // default https://graph.facebook.com
	APIVersion   string        `yaml:"api_version"`    // default DefaultAPIVersion
	GraphTimeout time.Duration `yaml:"graph_timeout"`  // per attempt, default 10s
	AccessToken  SecretRef     `yaml:"access_token"`
	AppSecret    SecretRef     `yaml:"app_secret"`
	VerifyToken  SecretRef     `yaml:"verify_token"`
}

type WebRTCConfig struct {
	UDPPort   int      `yaml:"udp_port"`   // default 3478; one port for every call
	ListenIPs []string `yaml:"listen_ips"` // default: every interface address
	PublicIPs []string `yaml:"public_ips"` // advertised instead (NAT 1:1)
}

type SIPConfig struct {
	Listen      string `yaml:"listen"`    // default "0.0.0.0:5060"
	Transport   string `yaml:"transport"` // udp (default), tcp, tls
	PublicHost  string `yaml:"public_host"`
	RTPAddress  string `yaml:"rtp_address"`
	RTPPortMin  int    `yaml:"rtp_port_min"` // default 20000
	RTPPortMax  int    `yaml:"rtp_port_max"` // default 20999
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// KeepaliveInterval: how often a call in progress probes its PBX with
	// in-dialog OPTIONS; two unanswered end the call (pbx_unreachable).
	// Default 30s; 0s turns it off.
	KeepaliveInterval *time.Duration `yaml:"keepalive_interval"`
}

// defaultPBXRTPTimeout is media.pbx_rtp_timeout when the config says nothing.
const defaultPBXRTPTimeout = 30 * time.Second

type MediaConfig struct {
	// OpusComplexity is the Opus encoder's complexity on transcoded calls,
	// 0-10. Unset: rtpbridge's default for the PBX codec's rate (3 for
	// G.711, 5 for G.722).
	OpusComplexity *int `yaml:"opus_complexity"`
	// PBXRTPTimeout ends a bridged call after this long without a packet
	// from the PBX while it does not hold the call: a dead or silent PBX.
	// Default 30s; 0s turns it off.
	PBXRTPTimeout *time.Duration `yaml:"pbx_rtp_timeout"`
}

type TrunkConfig struct {
	Name       string    `yaml:"name"`
	Address    string    `yaml:"address"`   // host:port of the PBX
	Transport  string    `yaml:"transport"` // udp (default), tcp, tls
	Username   string    `yaml:"username"`
	Password   SecretRef `yaml:"password"`
	FromDomain string    `yaml:"from_domain"`
	Codecs     []string  `yaml:"codecs"` // default [PCMU, PCMA]; also G722, opus (passed through)
	// WhatsAppCodec is the WhatsApp leg's codec on this trunk's calls:
	// opus (default: Opus toward WhatsApp, transcoded unless the PBX takes
	// Opus) or g711: when Meta offers PCMU or PCMA (the number's calling
	// audio.additional_codecs) and the PBX answers the same, the call runs
	// G.711 end to end, passed through; else Opus as with opus.
	WhatsAppCodec string `yaml:"whatsapp_codec"`
	DTMF          string `yaml:"dtmf"` // rfc4733 (default), info (SIP INFO) or inband (tones in the audio)
	// DTMFFallback is how caller digits go when dtmf is rfc4733 and the
	// PBX's answer has no telephone-event: info (default; Asterisk and
	// FreeSWITCH take SIP INFO out of the box), inband, or none (dropped).
	DTMFFallback string `yaml:"dtmf_fallback"`
	// OptionsPing: send SIP OPTIONS to watch the trunk (default true); a
	// trunk that stops answering is marked down and its calls rejected.
	OptionsPing *bool `yaml:"options_ping"`
	// AllowFrom: more sources (IPs or CIDR prefixes) whose SIP requests are
	// taken as this trunk's, e.g. the other nodes of a PBX cluster. Requests
	// from addresses that are no trunk's are dropped unanswered.
	AllowFrom []string `yaml:"allow_from"`
}

// NumberConfig is one business phone number, the routes of its calls and,
// when Calling is set, its calling settings at Meta (config_calling.go).
type NumberConfig struct {
	PhoneNumberID string         `yaml:"phone_number_id"`
	Routes        []RouteConfig  `yaml:"routes"`
	Calling       *CallingConfig `yaml:"calling"`
	// MaxCalls bounds this number's calls in progress, both directions,
	// over the cluster: default and at most 1000, Meta's limit (138002).
	MaxCalls int `yaml:"max_calls"`
}

// RouteConfig sends matching calls to a trunk. Routes are tried in order;
// a route with no match fields takes every call (put it last).
type RouteConfig struct {
	Name            string        `yaml:"name"`
	CTAPayload      string        `yaml:"cta_payload"`      // exact match, or prefix with a trailing *
	DeeplinkPayload string        `yaml:"deeplink_payload"` // likewise
	Trunk           string        `yaml:"trunk"`
	Destination     string        `yaml:"destination"`    // SIP URI, e.g. sip:support@pbx.example.com
	AnswerTimeout   time.Duration `yaml:"answer_timeout"` // default 45s
	// EarlyMedia is what a PBX's early media (183 Session Progress with
	// SDP) does: ringback (default) drops it and the caller keeps hearing
	// WhatsApp's ringback until the 200 OK; answer accepts the WhatsApp call
	// at the 183, so an IVR greeting played before the answer is heard from
	// its first syllable. answer_timeout still bounds the wait for the 200 OK.
	EarlyMedia string `yaml:"early_media"`
	// Hours, if set, is when the route is open (hours.go); outside them a
	// call goes to AfterHoursDestination, or, without one, to the next
	// route that matches (an after-hours IVR on the PBX).
	Hours                 *HoursConfig `yaml:"hours"`
	AfterHoursDestination string       `yaml:"after_hours_destination"`
}

// SecretRef names where a secret lives: an environment variable or a file
// (a Docker secret, say). Its value is read at start and never logged.
type SecretRef struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// A trunk's whatsapp_codec.
const (
	WhatsAppCodecOpus = "opus"
	WhatsAppCodecG711 = "g711"
)

// A route's early_media.
const (
	EarlyMediaRingback = "ringback"
	EarlyMediaAnswer   = "answer"
)

const (
	DefaultAPIVersion    = "v23.0"
	DefaultGraphBaseURL  = "https://graph.facebook.com"
	DefaultAnswerTimeout = 45 * time.Second
)

// ConfigError lists every problem found in a config, each naming its field
// (and, when it comes from the file, its line: "line 12: sip.listen: …").
// Warnings are what Config.Warnings would say of the same file: check-config
// prints them beside the problems.
type ConfigError struct {
	Problems []string
	Warnings []string
}

func (e *ConfigError) Error() string {
	return "config: " + strings.Join(e.Problems, "; ")
}

// LoadConfig reads, defaults and validates a config file, with the
// environment's overrides (config_env.go). Unknown fields are errors, so a
// typo is not silently ignored; every problem is listed at once.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parseConfig(raw, os.Environ())
	if err != nil {
		return nil, err
	}
	if c.CallingStateFile == "" {
		c.CallingStateFile = defaultCallingStatePath(path)
	}
	return c, nil
}

// ParseConfig is LoadConfig on bytes, without the environment's overrides.
func ParseConfig(raw []byte) (*Config, error) { return parseConfig(raw, nil) }

// ParseConfigEnv is ParseConfig with the overrides of environ (KEY=VALUE
// lines, as os.Environ gives them).
func ParseConfigEnv(raw []byte, environ []string) (*Config, error) { return parseConfig(raw, environ) }

func parseConfig(raw []byte, environ []string) (*Config, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, &ConfigError{Problems: []string{"yaml: " + err.Error()}}
	}
	// A secret written in the file is refused before anything else, so
	// that no later message can quote it.
	if p := checkSecretRefs(&doc); len(p) > 0 {
		return nil, &ConfigError{Problems: p}
	}
	d := nodeDecoder{origin: map[*yaml.Node]string{}, budget: maxDecodeNodes, where: map[string]string{}}
	p, notes := applyEnvOverrides(&doc, environ, d.origin)
	var c Config
	if doc.Kind != 0 {
		d.decode(&doc, reflect.ValueOf(&c).Elem(), "", 0)
	}
	p = append(p, d.problems...)
	c.envNotes = notes
	c.where = d.where
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		var ce *ConfigError
		errors.As(err, &ce)
		for _, problem := range ce.Problems {
			if !underFailed(problem, d.failed) {
				p = append(p, c.placed(problem))
			}
		}
	}
	if len(p) > 0 {
		sortByLine(p)
		return nil, &ConfigError{Problems: p, Warnings: c.Warnings()}
	}
	return &c, nil
}

// sortByLine orders the problems placed in the file by line (a stable
// sort: the problems of one line keep their order); those set by the
// environment come first, those without a place last.
func sortByLine(p []string) {
	line := func(s string) int {
		if strings.HasPrefix(s, envPrefix) {
			return -1
		}
		var n int
		if _, err := fmt.Sscanf(s, "line %d: ", &n); err != nil {
			return 1 << 30
		}
		return n
	}
	sort.SliceStable(p, func(i, j int) bool { return line(p[i]) < line(p[j]) })
}

// placed puts before a problem ("field: text") the line of its field in
// the file, or the environment variable that set it.
func (c *Config) placed(problem string) string {
	field, _, _ := strings.Cut(problem, ": ")
	return c.where[field] + problem
}

// ApplyDefaults fills every field left empty.
func (c *Config) ApplyDefaults() {
	c.normalizeAliases()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "console")
	def(&c.HTTP.Listen, ":8080")
	def(&c.HTTP.WebhookPath, "/webhook")
	def(&c.WhatsApp.GraphBaseURL, DefaultGraphBaseURL)
	def(&c.WhatsApp.APIVersion, DefaultAPIVersion)
	if c.WhatsApp.GraphTimeout == 0 {
		c.WhatsApp.GraphTimeout = 10 * time.Second
	}
	if c.WebRTC.UDPPort == 0 {
		c.WebRTC.UDPPort = 3478
	}
	def(&c.SIP.Listen, "0.0.0.0:5060")
	def(&c.SIP.Transport, "udp")
	if c.SIP.RTPPortMin == 0 && c.SIP.RTPPortMax == 0 {
		c.SIP.RTPPortMin, c.SIP.RTPPortMax = 20000, 20999
	}
	if c.SIP.KeepaliveInterval == nil {
		d := sip.DefaultKeepaliveInterval
		c.SIP.KeepaliveInterval = &d
	}
	if c.Media.PBXRTPTimeout == nil {
		d := defaultPBXRTPTimeout
		c.Media.PBXRTPTimeout = &d
	}
	for i := range c.Trunks {
		t := &c.Trunks[i]
		def(&t.Transport, "udp")
		if len(t.Codecs) == 0 {
			t.Codecs = []string{"PCMU", "PCMA"}
		}
		def(&t.WhatsAppCodec, WhatsAppCodecOpus)
		def(&t.DTMF, "rfc4733")
		def(&t.DTMFFallback, "info")
	}
	for i := range c.Numbers {
		for j := range c.Numbers[i].Routes {
			r := &c.Numbers[i].Routes[j]
			if r.AnswerTimeout == 0 {
				r.AnswerTimeout = DefaultAnswerTimeout
			}
			if r.EarlyMedia == "" {
				r.EarlyMedia = EarlyMediaRingback
			}
			if r.Name == "" {
				r.Name = fmt.Sprintf("%s#%d", c.Numbers[i].PhoneNumberID, j)
			}
		}
	}
	c.applyOutboundDefaults()
	c.applyOpsDefaults()
	c.applyClusterDefaults()
}

// supportedCodecs are the SIP codecs the bridge can carry today.
var supportedCodecs = map[string]bool{"PCMU": true, "PCMA": true, "G722": true, "OPUS": true}

// Validate reports every problem at once, each with its field path.
func (c *Config) Validate() error {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "console" && c.Log.Format != "json" {
		bad("log.format", "%q is not console or json", c.Log.Format)
	}
	if c.Log.SIPTrace && c.Log.Level != "debug" {
		bad("log.sip_trace", "the SIP trace is logged at debug: set log.level: debug (level is %q)", c.Log.Level)
	}
	if err := checkHostPort(c.HTTP.Listen, true); err != nil {
		bad("http.listen", "%v", err)
	}
	if !strings.HasPrefix(c.HTTP.WebhookPath, "/") {
		bad("http.webhook_path", "%q must start with /", c.HTTP.WebhookPath)
	}
	if hp := c.HTTP.HealthPath; hp != "" {
		switch {
		case !strings.HasPrefix(hp, "/"):
			bad("http.health_path", "%q must start with /", hp)
		case strings.ContainsAny(hp, "{} \t"):
			bad("http.health_path", "%q is not a plain path", hp)
		case hp == c.HTTP.WebhookPath:
			bad("http.health_path", "%q is the webhook path", hp)
		}
	}
	if err := webhookMuxError(c.HTTP.WebhookPath, c.HTTP.HealthPath); err != nil {
		bad("http", "webhook_path %q and health_path %q cannot be served: %v", c.HTTP.WebhookPath, c.HTTP.HealthPath, err)
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		bad("http.tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	if u, err := url.Parse(c.WhatsApp.GraphBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("whatsapp.graph_base_url", "%q is not an http(s) URL", c.WhatsApp.GraphBaseURL)
	}
	if !strings.HasPrefix(c.WhatsApp.APIVersion, "v") {
		bad("whatsapp.api_version", "%q should look like v23.0", c.WhatsApp.APIVersion)
	}
	if c.WhatsApp.GraphTimeout < 0 {
		bad("whatsapp.graph_timeout", "must be positive")
	}
	for field, ref := range map[string]SecretRef{
		"whatsapp.access_token": c.WhatsApp.AccessToken,
		"whatsapp.app_secret":   c.WhatsApp.AppSecret,
		"whatsapp.verify_token": c.WhatsApp.VerifyToken,
	} {
		if err := ref.check(true); err != nil {
			bad(field, "%v", err)
		}
	}
	if c.WebRTC.UDPPort < 0 || c.WebRTC.UDPPort > 65535 {
		bad("webrtc.udp_port", "%d is not a port", c.WebRTC.UDPPort)
	}
	for i, s := range c.WebRTC.ListenIPs {
		if net.ParseIP(s) == nil {
			bad(fmt.Sprintf("webrtc.listen_ips[%d]", i), "%q is not an IP address", s)
		}
	}
	for i, s := range c.WebRTC.PublicIPs {
		if ip := net.ParseIP(s); ip == nil {
			bad(fmt.Sprintf("webrtc.public_ips[%d]", i), "%q is not an IP address", s)
		} else if ip.IsUnspecified() {
			bad(fmt.Sprintf("webrtc.public_ips[%d]", i), "%q cannot be reached by Meta", s)
		}
	}
	if err := checkHostPort(c.SIP.Listen, true); err != nil {
		bad("sip.listen", "%v", err)
	}
	if !validTransport(c.SIP.Transport) {
		bad("sip.transport", "%q is not udp, tcp or tls", c.SIP.Transport)
	}
	if c.SIP.Transport == "tls" && (c.SIP.TLSCertFile == "" || c.SIP.TLSKeyFile == "") {
		bad("sip.tls_cert_file", "transport tls needs tls_cert_file and tls_key_file")
	}
	if c.SIP.RTPAddress != "" && net.ParseIP(c.SIP.RTPAddress) == nil {
		bad("sip.rtp_address", "%q is not an IP address", c.SIP.RTPAddress)
	}
	if c.SIP.RTPPortMin < 1024 || c.SIP.RTPPortMax > 65535 || c.SIP.RTPPortMax-c.SIP.RTPPortMin < 1 {
		bad("sip.rtp_port_min", "RTP range %d-%d must lie within 1024-65535 and hold at least two ports", c.SIP.RTPPortMin, c.SIP.RTPPortMax)
	}
	if oc := c.Media.OpusComplexity; oc != nil && (*oc < 0 || *oc > 10) {
		bad("media.opus_complexity", "%d is not within 0-10", *oc)
	}
	if d := *c.SIP.KeepaliveInterval; d != 0 && (d < 5*time.Second || d > 10*time.Minute) {
		bad("sip.keepalive_interval", "%s is not 0s (off) nor within 5s-10m", d)
	}
	if d := *c.Media.PBXRTPTimeout; d != 0 && (d < 5*time.Second || d > 10*time.Minute) {
		bad("media.pbx_rtp_timeout", "%s is not 0s (off) nor within 5s-10m", d)
	}

	trunks := map[string]bool{}
	for i, t := range c.Trunks {
		f := fmt.Sprintf("trunks[%d]", i)
		if t.Name == "" {
			bad(f+".name", "missing")
		} else if trunks[t.Name] {
			bad(f+".name", "%q is used twice", t.Name)
		}
		trunks[t.Name] = true
		if err := checkHostPort(t.Address, false); err != nil {
			bad(f+".address", "%v", err)
		}
		if !validTransport(t.Transport) {
			bad(f+".transport", "%q is not udp, tcp or tls", t.Transport)
		}
		if err := t.Password.check(t.Username != ""); err != nil {
			bad(f+".password", "%v", err)
		}
		seenCodec := map[string]int{}
		for j, name := range t.Codecs {
			u := strings.ToUpper(name)
			if !supportedCodecs[u] {
				bad(fmt.Sprintf("%s.codecs[%d]", f, j), "%q is not supported (PCMU or ulaw, PCMA or alaw, G722, opus)", name)
			} else if k, dup := seenCodec[u]; dup {
				bad(fmt.Sprintf("%s.codecs[%d]", f, j), "%s is already codecs[%d] (ulaw is PCMU, alaw PCMA)", name, k)
			} else {
				seenCodec[u] = j
			}
		}
		switch t.WhatsAppCodec {
		case WhatsAppCodecOpus:
		case WhatsAppCodecG711:
			_, pcmu := seenCodec["PCMU"]
			_, pcma := seenCodec["PCMA"]
			if !pcmu && !pcma {
				bad(f+".whatsapp_codec", "g711 needs PCMU or PCMA in codecs: the PBX must take the G.711 codec WhatsApp sends")
			}
		default:
			bad(f+".whatsapp_codec", "%q is not opus or g711", t.WhatsAppCodec)
		}
		for j, a := range t.AllowFrom {
			if _, err := sip.ParseAllowFrom(a); err != nil {
				bad(fmt.Sprintf("%s.allow_from[%d]", f, j), "%q is not an IP address or CIDR prefix", a)
			}
		}
		switch t.DTMF {
		case "rfc4733", "info", "inband":
		default:
			bad(f+".dtmf", "%q is not rfc4733 (or rfc2833), info or inband", t.DTMF)
		}
		switch t.DTMFFallback {
		case "info", "inband", "none":
		case "rfc4733":
			bad(f+".dtmf_fallback", "%q is what it falls back from: info, inband or none", t.DTMFFallback)
		default:
			bad(f+".dtmf_fallback", "%q is not info, inband or none", t.DTMFFallback)
		}
	}
	if len(c.Trunks) == 0 {
		bad("trunks", "at least one trunk is needed")
	}
	numbers := map[string]bool{}
	for i, n := range c.Numbers {
		f := fmt.Sprintf("numbers[%d]", i)
		if n.PhoneNumberID == "" {
			bad(f+".phone_number_id", "missing")
		} else if _, err := strconv.ParseUint(n.PhoneNumberID, 10, 64); err != nil {
			bad(f+".phone_number_id", "%q is not a numeric phone number id (not the phone number itself)", n.PhoneNumberID)
		} else if numbers[n.PhoneNumberID] {
			bad(f+".phone_number_id", "%q is listed twice", n.PhoneNumberID)
		}
		numbers[n.PhoneNumberID] = true
		// A number whose settings only are managed (calling: without
		// routes) takes no calls: it may not turn calling on.
		switch {
		case len(n.Routes) > 0:
		case n.callingEnabled():
			bad(f+".routes", "calling.status is enabled, so its calls need at least one route")
		case n.Calling == nil:
			bad(f+".routes", "at least one route is needed (or calling: alone, to manage the number's settings only)")
		}
		if n.Calling != nil {
			p = append(p, validateCalling(f+".calling", n.Calling)...)
		}
		for j, r := range n.Routes {
			rf := fmt.Sprintf("%s.routes[%d]", f, j)
			if !trunks[r.Trunk] {
				bad(rf+".trunk", "%q is not a configured trunk", r.Trunk)
			}
			if !strings.HasPrefix(r.Destination, "sip:") && !strings.HasPrefix(r.Destination, "sips:") {
				bad(rf+".destination", "%q is not a sip: URI", r.Destination)
			}
			if r.AnswerTimeout < time.Second || r.AnswerTimeout > 60*time.Second {
				bad(rf+".answer_timeout", "%v must lie within 1s-60s (Meta gives up after about 60 s)", r.AnswerTimeout)
			}
			if r.EarlyMedia != EarlyMediaRingback && r.EarlyMedia != EarlyMediaAnswer {
				bad(rf+".early_media", "%q is not ringback or answer", r.EarlyMedia)
			}
			if r.Hours != nil {
				_, problems := r.Hours.compile(rf + ".hours")
				p = append(p, problems...)
			}
			if d := r.AfterHoursDestination; d != "" {
				switch {
				case r.Hours == nil:
					bad(rf+".after_hours_destination", "needs hours")
				case !strings.HasPrefix(d, "sip:") && !strings.HasPrefix(d, "sips:"):
					bad(rf+".after_hours_destination", "%q is not a sip: URI", d)
				}
			}
		}
	}
	if len(c.Numbers) == 0 && len(c.Outbound.Routes) == 0 {
		bad("numbers", "at least one business number is needed (or an outbound route)")
	}
	p = append(p, c.validateOutbound(trunks)...)
	p = append(p, c.validateOps()...)
	p = append(p, c.validateCluster()...)
	p = append(p, c.validateDeployment()...)
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// validSource: an IP address or a CIDR prefix (trunks[].allow_from).
func validTransport(t string) bool { return t == "udp" || t == "tcp" || t == "tls" }

func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if !listen && host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || (!listen && n == 0) {
		return fmt.Errorf("%q has a bad port", s)
	}
	return nil
}

func (r SecretRef) check(required bool) error {
	switch {
	case r.Env != "" && r.File != "":
		return errors.New("give env or file, not both")
	case r.Env == "" && r.File == "":
		if required {
			return errors.New("missing: name an environment variable (env:) or a file (file:) that holds it")
		}
	}
	return nil
}

// UnmarshalYAML takes exactly {env: NAME} or {file: PATH}. It refuses a
// secret written inline and any other key (as in {env: X, value: <secret>}),
// without repeating what was written (the error is printed and logged).
// ParseConfig checks the same before decoding, naming the field.
func (r *SecretRef) UnmarshalYAML(n *yaml.Node) error {
	if err := checkSecretNode(n); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	type plain SecretRef
	return n.Decode((*plain)(r))
}

// Resolve reads the secret. The error names the variable or file, never the value.
func (r SecretRef) Resolve() (string, error) {
	switch {
	case r.Env != "":
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", r.Env)
		}
		return v, nil
	case r.File != "":
		b, err := os.ReadFile(r.File)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", r.File)
		}
		return v, nil
	}
	return "", nil
}

// Secrets are the resolved secret values.
type Secrets struct {
	AccessToken, AppSecret, VerifyToken string
	TrunkPasswords                      map[string]string
	AdminToken, CallRecordsToken        string // admin.token, call_records.url_token (empty when unused)
	ClusterSecret, RedisPassword        string // cluster.secret, cluster.redis.password (empty when unused)
}

// ResolveSecrets reads every secret the config names, reporting all that are missing.
func (c *Config) ResolveSecrets() (*Secrets, error) {
	s := &Secrets{TrunkPasswords: map[string]string{}}
	var p []string
	get := func(field string, ref SecretRef, dst *string) {
		v, err := ref.Resolve()
		if err != nil {
			p = append(p, field+": "+err.Error())
		}
		*dst = v
	}
	get("whatsapp.access_token", c.WhatsApp.AccessToken, &s.AccessToken)
	get("whatsapp.app_secret", c.WhatsApp.AppSecret, &s.AppSecret)
	get("whatsapp.verify_token", c.WhatsApp.VerifyToken, &s.VerifyToken)
	for i, t := range c.Trunks {
		var v string
		get(fmt.Sprintf("trunks[%d].password", i), t.Password, &v)
		s.TrunkPasswords[t.Name] = v
	}
	get("admin.token", c.Admin.Token, &s.AdminToken)
	get("call_records.url_token", c.CallRecords.URLToken, &s.CallRecordsToken)
	p = append(p, c.resolveClusterSecrets(get, s)...)
	if len(p) > 0 {
		return nil, &ConfigError{Problems: p}
	}
	return s, nil
}

// webhookMuxError registers the webhook listener's paths on a throwaway mux
// as Start does: net/http panics on a pattern it refuses (an unclean path,
// a bad escape, two patterns in conflict), which must be a config problem,
// not a crash at start.
func webhookMuxError(webhookPath, healthPath string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux := http.NewServeMux()
	mux.Handle(webhookPath, http.NotFoundHandler())
	if healthPath != "" {
		mux.Handle("GET "+healthPath, http.NotFoundHandler())
	}
	return nil
}

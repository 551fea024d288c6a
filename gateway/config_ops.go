package gateway

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HealthConfig sets how trunks are watched with SIP OPTIONS.
type HealthConfig struct {
	OptionsInterval time.Duration `yaml:"options_interval"` // between pings of one trunk, default 30s
	OptionsTimeout  time.Duration `yaml:"options_timeout"`  // wait for an answer, default 5s
	DownAfter       int           `yaml:"down_after"`       // unanswered pings in a row that mark a trunk down, default 2
	// InviteFailures: INVITEs in a row a trunk refuses (401/403/407, 5xx)
	// or leaves without any response that mark it invite_failing, and the
	// gateway not ready; default 5.
	InviteFailures int `yaml:"invite_failures"`
}

// CallRecordsConfig: one JSON object per ended call, appended to File and,
// if URL is set, POSTed there (asynchronously, with bounded retries).
type CallRecordsConfig struct {
	File       string        `yaml:"file"`        // JSON lines; empty = no file
	URL        string        `yaml:"url"`         // optional http(s) endpoint
	URLToken   SecretRef     `yaml:"url_token"`   // optional: sent as "Authorization: Bearer …"
	URLRetries int           `yaml:"url_retries"` // attempts after the first, default 3
	URLTimeout time.Duration `yaml:"url_timeout"` // per attempt, default 5s
	// Voicemails callers leave (Meta's voicemail setting): downloaded into
	// VoicemailDir as <call_id>.ogg and/or POSTed to VoicemailURL; either
	// way a record line of type voicemail names the call.
	VoicemailDir string `yaml:"voicemail_dir"`
	VoicemailURL string `yaml:"voicemail_url"`
	// Format of the file: json (default: one JSON object per line, every
	// field) or csv (Asterisk's Master.csv columns, docs/call-records.md).
	// What is POSTed to url is always JSON.
	Format string `yaml:"format"`
	// BizOpaque is the biz_opaque_callback_data the gateway gives Meta when
	// it accepts a user-initiated call, which Meta's terminate webhook
	// repeats: sip_call_id (default: the Call-ID of the INVITE to the PBX,
	// so the PBX's CDR and Meta's webhook correlate) or none.
	BizOpaque string `yaml:"biz_opaque"`
}

// call_records.format and call_records.biz_opaque values.
const (
	RecordFormatJSON   = "json"
	RecordFormatCSV    = "csv"
	BizOpaqueSIPCallID = "sip_call_id"
	BizOpaqueNone      = "none"
)

// AdminConfig enables the admin API (list calls, hang one up) on its own
// listener. Off unless Listen is set; Token is then required.
type AdminConfig struct {
	Listen string    `yaml:"listen"` // e.g. 127.0.0.1:8081; empty = off
	Token  SecretRef `yaml:"token"`  // "Authorization: Bearer …" on every admin request
	// TLSCertFile and TLSKeyFile (both or neither): the admin listener
	// serves TLS 1.2+ (and so do the metrics when they share it).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// MetricsConfig says where the operational endpoints are served: /metrics,
// /readyz (readiness with each trunk's detail) and /healthz. They are never
// on the webhook listener, which faces the internet.
type MetricsConfig struct {
	// Listen: host:port. Default: admin.listen when the admin API is on (the
	// endpoints share its listener, without a token), else 127.0.0.1:9090.
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile (both or neither): a metrics listener of
	// its own serves TLS 1.2+. Sharing the admin listener, it takes admin's.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// DefaultMetricsListen is metrics.listen when neither it nor admin.listen is set.
const DefaultMetricsListen = "127.0.0.1:9090"

// Defaults of the operations settings.
const (
	DefaultDrainTimeout    = 60 * time.Second
	DefaultOptionsInterval = 30 * time.Second
	DefaultOptionsTimeout  = 5 * time.Second
	DefaultDownAfter       = 2
	DefaultInviteFailures  = 5
	DefaultRecordRetries   = 3
	DefaultRecordTimeout   = 5 * time.Second
)

func (c *Config) applyOpsDefaults() {
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Health.OptionsInterval == 0 {
		c.Health.OptionsInterval = DefaultOptionsInterval
	}
	if c.Health.OptionsTimeout == 0 {
		c.Health.OptionsTimeout = DefaultOptionsTimeout
	}
	if c.Health.DownAfter == 0 {
		c.Health.DownAfter = DefaultDownAfter
	}
	if c.Health.InviteFailures == 0 {
		c.Health.InviteFailures = DefaultInviteFailures
	}
	if c.CallRecords.Format == "" {
		c.CallRecords.Format = RecordFormatJSON
	}
	if c.CallRecords.BizOpaque == "" {
		c.CallRecords.BizOpaque = BizOpaqueSIPCallID
	}
	if c.CallRecords.URLRetries == 0 {
		c.CallRecords.URLRetries = DefaultRecordRetries
	}
	if c.CallRecords.URLTimeout == 0 {
		c.CallRecords.URLTimeout = DefaultRecordTimeout
	}
	if c.Metrics.Listen == "" {
		c.Metrics.Listen = DefaultMetricsListen
		if c.Admin.Listen != "" {
			c.Metrics.Listen = c.Admin.Listen
		}
	}
}

// MetricsTLS reports whether /metrics, /healthz and /readyz are served over
// TLS: the admin listener's when they share it, else their own.
func (c *Config) MetricsTLS() bool {
	if c.MetricsShareAdmin() {
		return c.Admin.TLSCertFile != ""
	}
	return c.Metrics.TLSCertFile != ""
}

// MetricsShareAdmin reports whether the operational endpoints are served on
// the admin API's listener (metrics.listen is admin.listen).
func (c *Config) MetricsShareAdmin() bool {
	return c.Admin.Listen != "" && c.Metrics.Listen == c.Admin.Listen
}

// validateOps returns the problems of the operations settings, each with its field.
func (c *Config) validateOps() []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }
	if c.DrainTimeout < 0 || c.DrainTimeout > time.Hour {
		bad("drain_timeout", "%v must lie within 0-1h", c.DrainTimeout)
	}
	if c.Health.OptionsInterval < 100*time.Millisecond {
		bad("health.options_interval", "%v is shorter than 100ms", c.Health.OptionsInterval)
	}
	if c.Health.OptionsTimeout <= 0 || c.Health.OptionsTimeout > c.Health.OptionsInterval {
		bad("health.options_timeout", "%v must be positive and at most options_interval (%v)", c.Health.OptionsTimeout, c.Health.OptionsInterval)
	}
	if c.Health.DownAfter < 1 || c.Health.DownAfter > 100 {
		bad("health.down_after", "%d must lie within 1-100", c.Health.DownAfter)
	}
	if c.Health.InviteFailures < 0 || c.Health.InviteFailures > 1000 {
		bad("health.invite_failures", "%d must lie within 1-1000 (0: the default, 5)", c.Health.InviteFailures)
	}
	cr := c.CallRecords
	if f := strings.ToLower(cr.Format); f != RecordFormatJSON && f != RecordFormatCSV {
		bad("call_records.format", "%q must be json or csv", cr.Format)
	}
	if b := strings.ToLower(cr.BizOpaque); b != BizOpaqueSIPCallID && b != BizOpaqueNone {
		bad("call_records.biz_opaque", "%q must be sip_call_id or none", cr.BizOpaque)
	}
	if cr.File != "" && (filepath.Base(cr.File) == "." || filepath.Base(cr.File) == string(filepath.Separator)) {
		bad("call_records.file", "%q is not a file path", cr.File)
	}
	if v := cr.VoicemailURL; v != "" {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			bad("call_records.voicemail_url", "%q is not an http(s) URL without credentials (the bearer token is url_token)", v)
		}
	}
	if d := cr.VoicemailDir; d != "" && !filepath.IsAbs(d) && !strings.HasPrefix(d, ".") {
		bad("call_records.voicemail_dir", "%q: give an absolute path (or one starting with ./)", d)
	}
	if cr.URL != "" {
		if u, err := url.Parse(cr.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("call_records.url", "%q is not an http(s) URL", cr.URL)
		} else if u.User != nil {
			bad("call_records.url", "credentials in the URL would be logged: use url_token")
		}
	}
	if err := cr.URLToken.check(false); err != nil {
		bad("call_records.url_token", "%v", err)
	}
	if (cr.URLToken.Env != "" || cr.URLToken.File != "") && cr.URL == "" {
		bad("call_records.url_token", "set without call_records.url")
	}
	if cr.URLRetries < 0 || cr.URLRetries > 20 {
		bad("call_records.url_retries", "%d must lie within 0-20", cr.URLRetries)
	}
	if cr.URLTimeout < 0 || cr.URLTimeout > time.Minute {
		bad("call_records.url_timeout", "%v must lie within 0-1m", cr.URLTimeout)
	}
	if c.Admin.Listen != "" {
		if err := checkHostPort(c.Admin.Listen, true); err != nil {
			bad("admin.listen", "%v", err)
		} else if sameListener(c.Admin.Listen, c.HTTP.Listen) {
			bad("admin.listen", "%q is the webhook listener; give the admin API its own", c.Admin.Listen)
		}
		if err := c.Admin.Token.check(true); err != nil {
			bad("admin.token", "%v (the admin API is never served without a token)", err)
		}
	} else if c.Admin.Token.Env != "" || c.Admin.Token.File != "" {
		bad("admin.listen", "admin.token is set but admin.listen is empty (the admin API is off)")
	}
	if (c.Admin.TLSCertFile == "") != (c.Admin.TLSKeyFile == "") {
		bad("admin.tls_cert_file", "tls_cert_file and tls_key_file go together")
	} else if c.Admin.TLSCertFile != "" && c.Admin.Listen == "" {
		bad("admin.tls_cert_file", "set but admin.listen is empty (the admin API is off)")
	}
	if (c.Metrics.TLSCertFile == "") != (c.Metrics.TLSKeyFile == "") {
		bad("metrics.tls_cert_file", "tls_cert_file and tls_key_file go together")
	} else if c.Metrics.TLSCertFile != "" && c.MetricsShareAdmin() {
		bad("metrics.tls_cert_file", "the metrics share the admin listener (metrics.listen is admin.listen): its TLS is admin.tls_cert_file")
	}
	if err := checkHostPort(c.Metrics.Listen, true); err != nil {
		bad("metrics.listen", "%v", err)
	} else if sameListener(c.Metrics.Listen, c.HTTP.Listen) {
		bad("metrics.listen", "%q is the webhook listener, which faces the internet; use http.health_path there for a load balancer", c.Metrics.Listen)
	}
	return p
}

// Warnings lists what is allowed but risky, each naming its field: the
// admin API or the metrics listener on an address that is not loopback,
// without TLS (the admin API carries a bearer token; /readyz and /metrics
// show trunk names, their errors and call counts); and those of
// deploymentWarnings (webrtc.public_ips empty or private, a PBX on this
// host on sip.listen's port) and of the environment's overrides.
// check-config prints them; the gateway logs them at start.
func (c *Config) Warnings() []string {
	var w []string
	if c.Admin.Listen != "" && c.Admin.TLSCertFile == "" && !loopbackListen(c.Admin.Listen) {
		what := "the admin API"
		if c.MetricsShareAdmin() {
			what += " (and /metrics, /readyz on the same listener)"
		}
		w = append(w, fmt.Sprintf("admin.listen: %q is not a loopback address and %s has no TLS: its bearer token and call data cross the network in clear; bind 127.0.0.1, set admin.tls_cert_file and tls_key_file, or reach it through a private network only", c.Admin.Listen, what))
	}
	if !c.MetricsShareAdmin() && c.Metrics.TLSCertFile == "" && !loopbackListen(c.Metrics.Listen) {
		w = append(w, fmt.Sprintf("metrics.listen: %q is not a loopback address and has no TLS: /metrics and /readyz (trunk names, their errors, call counts) are open to whoever reaches it; bind 127.0.0.1, set metrics.tls_cert_file and tls_key_file, or firewall it to the scraper", c.Metrics.Listen))
	}
	for i, n := range c.Numbers {
		if len(n.Routes) == 0 && n.Calling != nil && n.Calling.Status == "" {
			w = append(w, fmt.Sprintf("numbers[%d]: %s has calling settings but no routes, and leaves calling.status as Meta has it: if calling is enabled there, its calls are refused (no_route)", i, n.PhoneNumberID))
		}
	}
	w = append(w, c.deploymentWarnings()...)
	return append(w, c.envNotes...)
}

// sameListener: the two listen addresses are one socket (port 0 picks a
// free port each time: never the same).
func sameListener(a, b string) bool {
	_, port, err := net.SplitHostPort(a)
	return a == b && err == nil && port != "0"
}

// loopbackListen reports whether a listen address binds loopback only
// (127.0.0.0/8, ::1, localhost); an empty host or 0.0.0.0 is every interface.
func loopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// optionsPing reports whether the trunk is watched with OPTIONS.
func (t TrunkConfig) optionsPing() bool { return t.OptionsPing == nil || *t.OptionsPing }

// CheckFiles looks at the files the config names (TLS certificates and
// keys, the call record file's folder) as `wagateway check-config` does; the
// daemon finds the same problems at start. Each problem names its field.
func (c *Config) CheckFiles() error {
	var p []string
	pair := func(field, cert, key string) {
		if cert == "" || key == "" {
			return
		}
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			p = append(p, field+": "+err.Error())
		}
	}
	pair("http.tls_cert_file", c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile)
	pair("sip.tls_cert_file", c.SIP.TLSCertFile, c.SIP.TLSKeyFile)
	pair("admin.tls_cert_file", c.Admin.TLSCertFile, c.Admin.TLSKeyFile)
	pair("metrics.tls_cert_file", c.Metrics.TLSCertFile, c.Metrics.TLSKeyFile)
	if f := c.CallRecords.File; f != "" {
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			p = append(p, fmt.Sprintf("call_records.file: folder %s does not exist", filepath.Dir(f)))
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

package gateway

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// base is a valid config of known lines (line 1 is "log: …"); each case
// appends or replaces lines. public_ips is set: its warnings are cases.
const base = `log: {level: info}
whatsapp:
  access_token: {env: T}
  app_secret: {env: S}
  verify_token: {env: V}
webrtc:
  public_ips: [9.9.9.9]
trunks:
  - name: pbx
    address: "10.20.30.40:5060"
numbers:
  - phone_number_id: "1"
    routes:
      - {name: sales, cta_payload: "sales*", trunk: pbx, destination: "sip:sales@pbx"}
      - {name: support, trunk: pbx, destination: "sip:support@pbx"}
`

// finding is one expected problem (or warning): its field path, and its
// line in the file (0: none, the field is not in the file).
type finding struct {
	path string
	line int
	warn bool
}

func (f finding) String() string {
	kind := "error"
	if f.warn {
		kind = "warning"
	}
	return fmt.Sprintf("%s %s line %d", kind, f.path, f.line)
}

// found reports whether one of lines is about f.
func (f finding) in(lines []string) bool {
	prefix := f.path + ": "
	if f.line > 0 {
		prefix = fmt.Sprintf("line %d: %s", f.line, prefix)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// problemsOf parses raw and returns its errors and warnings.
func problemsOf(t *testing.T, raw string, env []string) (errs, warns []string) {
	t.Helper()
	c, err := ParseConfigEnv([]byte(raw), env)
	if err != nil {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("not a ConfigError: %v", err)
		}
		return ce.Problems, ce.Warnings
	}
	return nil, c.Warnings()
}

func TestConfigBaseIsClean(t *testing.T) {
	errs, warns := problemsOf(t, base, nil)
	if len(errs)+len(warns) > 0 {
		t.Fatalf("base: %q %q", errs, warns)
	}
}

// Each broken config: every problem expected is reported, by field path
// and line, and no other error.
func TestConfigProblemsTable(t *testing.T) {
	repl := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("base has no %q", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	cases := []struct {
		name string
		raw  string
		env  []string
		want []finding
	}{
		{"duration type", base + "sip: {keepalive_interval: 30x}\n", nil,
			[]finding{{path: "sip.keepalive_interval", line: 16}}},
		{"int type", base + "sip: {rtp_port_min: lots, rtp_port_max: 20999}\n", nil,
			[]finding{{path: "sip.rtp_port_min", line: 16}}},
		{"bool type", repl(`    address: "10.20.30.40:5060"`, "    address: \"10.20.30.40:5060\"\n    options_ping: maybe"), nil,
			[]finding{{path: "trunks[0].options_ping", line: 11}}},
		{"list item type", repl(`    address: "10.20.30.40:5060"`, "    address: \"10.20.30.40:5060\"\n    codecs: [PCMU, {x: 1}]"), nil,
			[]finding{{path: "trunks[0].codecs[1]", line: 11}}},
		{"section is a value", base + "sip: fast\n", nil, []finding{{path: "sip", line: 16}}},
		{"list is a value", repl("    address: \"10.20.30.40:5060\"", "    address: \"10.20.30.40:5060\"\n    codecs: PCMU"), nil,
			[]finding{{path: "trunks[0].codecs", line: 11}}},
		{"unknown key", base + "sip: {listn: \"0.0.0.0:5070\"}\n", nil, []finding{{path: "sip.listn", line: 16}}},
		{"key twice", base + "log: {level: debug}\n", nil, []finding{{path: "log", line: 16}}},
		{"bad codec of the second trunk", repl("numbers:", "  - {name: fs, address: \"10.20.30.41:5080\", codecs: [PCMU, GSM]}\nnumbers:"), nil,
			[]finding{{path: "trunks[1].codecs[1]", line: 11}}},
		{"documentation public ip", repl("[9.9.9.9]", "[203.0.113.10]"), nil, []finding{{path: "webrtc.public_ips[0]", line: 7}}},
		{"documentation public ipv6", repl("[9.9.9.9]", "[9.9.9.9, \"2001:db8::1\"]"), nil, []finding{{path: "webrtc.public_ips[1]", line: 7}}},
		{"private public ip", repl("[9.9.9.9]", "[10.0.0.5]"), nil, []finding{{path: "webrtc.public_ips[0]", line: 7, warn: true}}},
		{"cgnat public ip", repl("[9.9.9.9]", "[100.64.1.1]"), nil, []finding{{path: "webrtc.public_ips[0]", line: 7, warn: true}}},
		{"empty public ips", repl("  public_ips: [9.9.9.9]", "  public_ips: []"), nil, []finding{{path: "webrtc.public_ips", line: 7, warn: true}}},
		{"no public ips, private listen ips", repl("  public_ips: [9.9.9.9]", "  listen_ips: [192.168.1.5]"), nil,
			[]finding{{path: "webrtc.public_ips", warn: true}}},
		{"udp port is the sip port", repl("webrtc:", "webrtc:\n  udp_port: 5060"), nil, []finding{{path: "webrtc.udp_port", line: 7}}},
		{"udp port in the rtp range", repl("webrtc:", "webrtc:\n  udp_port: 20010"), nil, []finding{{path: "webrtc.udp_port", line: 7}}},
		{"udp port in a set rtp range", base + "sip: {rtp_port_min: 3000, rtp_port_max: 3999}\n", nil, []finding{{path: "webrtc.udp_port"}}},
		{"catch-all first", repl(`      - {name: sales, cta_payload: "sales*", trunk: pbx, destination: "sip:sales@pbx"}
      - {name: support, trunk: pbx, destination: "sip:support@pbx"}`, `      - {name: support, trunk: pbx, destination: "sip:support@pbx"}
      - {name: sales, cta_payload: "sales*", trunk: pbx, destination: "sip:sales@pbx"}`), nil,
			[]finding{{path: "numbers[0].routes[0]", line: 14}}},
		{"catch-all star", repl(`cta_payload: "sales*"`, `cta_payload: "*"`), nil, []finding{{path: "numbers[0].routes[0]", line: 14}}},
		{"duplicate route name", repl("name: support", "name: sales"), nil, []finding{{path: "numbers[0].routes[1].name", line: 15}}},
		{"duplicate route name across numbers", base + `  - phone_number_id: "2"
    routes: [{name: support, trunk: pbx, destination: "sip:support@pbx"}]
`, nil, []finding{{path: "numbers[1].routes[0].name", line: 17}}},
		{"pbx on this host on sip.listen's port", repl(`"10.20.30.40:5060"`, `"127.0.0.1:5060"`), nil,
			[]finding{{path: "sip.listen", warn: true}}},
		{"whatsapp codec unknown", repl(`    address: "10.20.30.40:5060"`, "    address: \"10.20.30.40:5060\"\n    whatsapp_codec: g729"), nil,
			[]finding{{path: "trunks[0].whatsapp_codec", line: 11}}},
		{"whatsapp codec g711 without G.711 toward the PBX", repl(`    address: "10.20.30.40:5060"`, "    address: \"10.20.30.40:5060\"\n    codecs: [opus, G722]\n    whatsapp_codec: g711"), nil,
			[]finding{{path: "trunks[0].whatsapp_codec", line: 12}}},
		{"dtmf fallback alias is the mode itself", repl(`    address: "10.20.30.40:5060"`, "    address: \"10.20.30.40:5060\"\n    dtmf_fallback: rfc2833"), nil,
			[]finding{{path: "trunks[0].dtmf_fallback", line: 11}}},
		{"env: bad value", base, []string{"WAGATEWAY_SIP_LISTEN=nohostport"}, []finding{{path: "WAGATEWAY_SIP_LISTEN: sip.listen"}}},
		{"env: bad type", base, []string{"WAGATEWAY_WEBRTC_UDP_PORT=x"}, []finding{{path: "WAGATEWAY_WEBRTC_UDP_PORT: webrtc.udp_port"}}},
		{"env: a section", base, []string{"WAGATEWAY_SIP=x"}, []finding{{path: "WAGATEWAY_SIP: sip"}}},
		{"env: index too far", base, []string{"WAGATEWAY_TRUNKS_3_NAME=x"}, []finding{{path: "WAGATEWAY_TRUNKS_3_NAME: trunks[3].name"}}},
		{"env: no such setting", base, []string{"WAGATEWAY_SIP_LISTN=x"}, []finding{{path: "WAGATEWAY_SIP_LISTN", warn: true}}},
		{"env: a secret's value", base, []string{"WAGATEWAY_WHATSAPP_APP_SECRET=hunter2"}, []finding{{path: "WAGATEWAY_WHATSAPP_APP_SECRET", warn: true}}},
	}
	for _, tc := range cases {
		errs, warns := problemsOf(t, tc.raw, tc.env)
		wantErrs := 0
		for _, f := range tc.want {
			lines := errs
			if f.warn {
				lines = warns
			} else {
				wantErrs++
			}
			if !f.in(lines) {
				t.Errorf("%s: no %v in\nerrors:   %q\nwarnings: %q", tc.name, f, errs, warns)
			}
		}
		if len(errs) != wantErrs {
			t.Errorf("%s: %d errors, want %d: %q", tc.name, len(errs), wantErrs, errs)
		}
		for _, l := range append(errs, warns...) {
			if strings.Contains(l, "hunter2") {
				t.Errorf("%s: a secret repeated: %q", tc.name, l)
			}
			if strings.Contains(l, "time.Duration") || strings.Contains(l, "gateway.") {
				t.Errorf("%s: names a Go type: %q", tc.name, l)
			}
		}
	}
}

// One file with problems of every kind: all are reported at once, in the
// order of the file; a field whose value could not be read is reported
// once (not again by the checks of its default).
func TestConfigAllProblemsAtOnce(t *testing.T) {
	raw := `whatsapp:
  access_token: {env: T}
  app_secret: {env: S}
  verify_token: {env: V}
  graph_timeout: 10 seconds
webrtc: {udp_port: 5060, public_ips: [203.0.113.10]}
sip:
  keepalive_interval: 30x
  rtp_port_min: -5
trunks:
  - {name: pbx, address: "10.0.0.9:5060", transport: carrier-pigeon}
  - {name: fs, address: "10.0.0.9:5080", codecs: [PCMU, GSM]}
numbers:
  - phone_number_id: "1"
    routes:
      - {trunk: pbx, destination: "sip:a@pbx", bogus: 1}
      - {trunk: nope, destination: "sip:b@pbx"}
`
	errs, _ := problemsOf(t, raw, nil)
	want := []string{
		"line 5: whatsapp.graph_timeout: ",
		"line 6: webrtc.udp_port: ",
		"line 6: webrtc.public_ips[0]: ",
		"line 8: sip.keepalive_interval: ",
		"line 9: sip.rtp_port_min: ",
		"line 11: trunks[0].transport: ",
		"line 12: trunks[1].codecs[1]: ",
		"line 16: numbers[0].routes[0].bogus: ",
		"line 16: numbers[0].routes[0]: ", // catch-all before routes[1]
		"line 17: numbers[0].routes[1].trunk: ",
	}
	if len(errs) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(errs), len(want), strings.Join(errs, "\n"))
	}
	for _, w := range want {
		if !slicesHasPrefix(errs, w) {
			t.Errorf("no %q in:\n%s", w, strings.Join(errs, "\n"))
		}
	}
	for i := 1; i < len(errs); i++ {
		var a, b int
		fmt.Sscanf(errs[i-1], "line %d:", &a)
		fmt.Sscanf(errs[i], "line %d:", &b)
		if a > b {
			t.Errorf("not in file order: %q before %q", errs[i-1], errs[i])
		}
	}
	for _, e := range errs {
		if strings.Contains(e, "time.Duration") || strings.Contains(e, "gateway.") || strings.Contains(e, "unmarshal") {
			t.Errorf("a Go type or yaml.v3's wording: %q", e)
		}
	}
	if !strings.Contains(strings.Join(errs, "\n"), `"30x" is not a duration`) {
		t.Errorf("the duration error does not quote the value: %q", errs)
	}
}

func slicesHasPrefix(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// Asterisk's ulaw/alaw and FreeSWITCH's rfc2833, in any case, are accepted
// and written in the gateway's names.
func TestConfigAliases(t *testing.T) {
	raw := strings.Replace(base, `    address: "10.20.30.40:5060"`, `    address: "10.20.30.40:5060"
    codecs: [ulaw, ALAW, g722, Opus, pcmu]
    dtmf: RFC2833`, 1)
	c, err := ParseConfig([]byte(raw))
	if err == nil {
		t.Fatal("pcmu twice (as ulaw and pcmu) accepted") // sip.Trunk refuses a codec listed twice
	}
	raw = strings.Replace(raw, ", pcmu]", "]", 1)
	if c, err = ParseConfig([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	tr := c.Trunks[0]
	if got := strings.Join(tr.Codecs, ","); got != "PCMU,PCMA,G722,opus" || tr.DTMF != "rfc4733" {
		t.Fatalf("codecs %s dtmf %s", got, tr.DTMF)
	}
	c2, err := ParseConfig([]byte(strings.Replace(base, `    address: "10.20.30.40:5060"`, `    address: "10.20.30.40:5060"
    dtmf: INFO
    dtmf_fallback: Inband
    whatsapp_codec: G711`, 1)))
	if err != nil || c2.Trunks[0].DTMF != "info" || c2.Trunks[0].DTMFFallback != "inband" || c2.Trunks[0].WhatsAppCodec != WhatsAppCodecG711 {
		t.Fatalf("%+v %v", c2, err)
	}
	if c.Trunks[0].WhatsAppCodec != WhatsAppCodecOpus {
		t.Fatalf("whatsapp_codec defaults to %q, want opus", c.Trunks[0].WhatsAppCodec)
	}
}

// WAGATEWAY_<PATH> overrides any key, with the file's types and checks.
func TestConfigEnvOverrides(t *testing.T) {
	env := []string{
		"WAGATEWAY_SIP_LISTEN=127.0.0.1:5070",
		"WAGATEWAY_WEBRTC_PUBLIC_IPS=1.2.3.4, 5.6.7.8",
		"WAGATEWAY_TRUNKS_0_ADDRESS=10.9.9.9:5080",
		"WAGATEWAY_TRUNKS_0_CODECS=alaw,ulaw",
		"WAGATEWAY_TRUNKS_0_OPTIONS_PING=false",
		"WAGATEWAY_TRUNKS_1_NAME=backup", // one past the end: a new trunk
		"WAGATEWAY_TRUNKS_1_ADDRESS=10.9.9.10:5060",
		"WAGATEWAY_NUMBERS_0_ROUTES_1_ANSWER_TIMEOUT=20s",
		"WAGATEWAY_NUMBERS_0_PHONE_NUMBER_ID=1000000001",
		"WAGATEWAY_SIP_KEEPALIVE_INTERVAL=0s",
		"WAGATEWAY_DRAIN_TIMEOUT=2m",
		"WAGATEWAY_CALL_RECORDS_FILE=/tmp/calls.jsonl",
		"WAGATEWAY_WHATSAPP_APP_SECRET_FILE=/run/secrets/app_secret", // replaces {env: S}
		"WAGATEWAY_ADMIN_TOKEN=some-secret",                          // a secret's value: never an override
		"OTHER_VARIABLE=1",
	}
	c, err := ParseConfigEnv([]byte(base), env)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.SIP.Listen != "127.0.0.1:5070":
		t.Errorf("sip.listen %q", c.SIP.Listen)
	case strings.Join(c.WebRTC.PublicIPs, " ") != "1.2.3.4 5.6.7.8":
		t.Errorf("public_ips %q", c.WebRTC.PublicIPs)
	case c.Trunks[0].Address != "10.9.9.9:5080" || strings.Join(c.Trunks[0].Codecs, ",") != "PCMA,PCMU" || c.Trunks[0].optionsPing():
		t.Errorf("trunks[0] %+v", c.Trunks[0])
	case len(c.Trunks) != 2 || c.Trunks[1].Name != "backup" || c.Trunks[1].Address != "10.9.9.10:5060":
		t.Errorf("trunks %+v", c.Trunks)
	case c.Numbers[0].Routes[1].AnswerTimeout != 20*time.Second || c.Numbers[0].PhoneNumberID != "1000000001":
		t.Errorf("numbers %+v", c.Numbers)
	case *c.SIP.KeepaliveInterval != 0 || c.DrainTimeout != 2*time.Minute || c.CallRecords.File != "/tmp/calls.jsonl":
		t.Errorf("keepalive %v drain %v records %q", *c.SIP.KeepaliveInterval, c.DrainTimeout, c.CallRecords.File)
	case c.WhatsApp.AppSecret != (SecretRef{File: "/run/secrets/app_secret"}):
		t.Errorf("app_secret %+v", c.WhatsApp.AppSecret)
	case c.Admin.Listen != "" || c.Admin.Token != (SecretRef{}):
		t.Errorf("admin %+v", c.Admin)
	}
	for _, w := range c.Warnings() {
		if strings.Contains(w, "some-secret") {
			t.Errorf("a secret in a warning: %q", w)
		}
	}
	// The same overrides through LoadConfig's environment.
	t.Setenv("WAGATEWAY_SIP_LISTEN", "127.0.0.1:5071")
	if c, err := LoadConfig("../configs/gateway.yaml"); err != nil || c.SIP.Listen != "127.0.0.1:5071" {
		t.Errorf("LoadConfig: %v %v", c, err)
	}
	// An empty file, the whole config from the environment.
	c, err = ParseConfigEnv(nil, []string{
		"WAGATEWAY_WHATSAPP_ACCESS_TOKEN_ENV=T", "WAGATEWAY_WHATSAPP_APP_SECRET_ENV=S", "WAGATEWAY_WHATSAPP_VERIFY_TOKEN_ENV=V",
		"WAGATEWAY_TRUNKS_0_NAME=pbx", "WAGATEWAY_TRUNKS_0_ADDRESS=10.0.0.2:5060",
		"WAGATEWAY_NUMBERS_0_PHONE_NUMBER_ID=5", "WAGATEWAY_NUMBERS_0_ROUTES_0_TRUNK=pbx",
		"WAGATEWAY_NUMBERS_0_ROUTES_0_DESTINATION=sip:a@pbx",
	})
	if err != nil || c.Trunks[0].Address != "10.0.0.2:5060" || c.WhatsApp.AccessToken.Env != "T" {
		t.Fatalf("from the environment alone: %+v %v", c, err)
	}
}

// An override in an anchored node changes that place only, not the
// anchor's other users.
func TestConfigEnvOverrideLeavesAnchorsAlone(t *testing.T) {
	raw := strings.Replace(base, "numbers:", `  - &t2 {name: b, address: "10.0.0.3:5060"}
  - {<<: *t2, name: c}
numbers:`, 1)
	c, err := ParseConfigEnv([]byte(raw), []string{"WAGATEWAY_TRUNKS_2_ADDRESS=10.0.0.4:5060"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Trunks[1].Address != "10.0.0.3:5060" || c.Trunks[2].Address != "10.0.0.4:5060" || c.Trunks[2].Name != "c" {
		t.Fatalf("trunks %+v", c.Trunks)
	}
}

// An empty variable is no override (a blank line of an .env file).
func TestConfigEnvEmptyIsUnset(t *testing.T) {
	c, err := ParseConfigEnv([]byte(base), []string{"WAGATEWAY_WEBRTC_PUBLIC_IPS=", "WAGATEWAY_TRUNKS_0_ADDRESS="})
	if err != nil || len(c.WebRTC.PublicIPs) != 1 || c.Trunks[0].Address != "10.20.30.40:5060" {
		t.Fatalf("%+v %v", c, err)
	}
}

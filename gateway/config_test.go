package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wagateway/wagateway/rtpbridge"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadConfig("../configs/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.WhatsApp.APIVersion != DefaultAPIVersion || c.HTTP.WebhookPath != "/webhook" || c.WebRTC.UDPPort != 3478 {
		t.Fatalf("unexpected values: %+v", c)
	}
	r, err := NewRouter(c.Numbers).RouteFor("1000000001", "billing-eu", "")
	if err != nil || r.Name != "billing" || r.AnswerTimeout != DefaultAnswerTimeout {
		t.Fatalf("billing route: %+v %v", r, err)
	}
	r, err = NewRouter(c.Numbers).RouteFor("1000000001", "", "")
	if err != nil || r.Name != "support" || r.Destination != "sip:support@pbx.example.com" {
		t.Fatalf("default route: %+v %v", r, err)
	}
	if _, err := NewRouter(c.Numbers).RouteFor("999", "", ""); err == nil {
		t.Fatal("unknown number routed")
	}
}

const minimal = `
whatsapp:
  access_token: {env: T}
  app_secret: {env: S}
  verify_token: {env: V}
trunks:
  - {name: pbx, address: "127.0.0.1:5070"}
numbers:
  - phone_number_id: "1"
    routes: [{trunk: pbx, destination: "sip:a@127.0.0.1"}]
`

// media.pbx_rtp_timeout: 0s turns the watch off, a value is kept.
func TestPBXRTPTimeoutConfig(t *testing.T) {
	for raw, want := range map[string]time.Duration{"0s": 0, "45s": 45 * time.Second} {
		c, err := ParseConfig([]byte(minimal + "media: {pbx_rtp_timeout: " + raw + "}\n"))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if *c.Media.PBXRTPTimeout != want {
			t.Errorf("%s: %v", raw, *c.Media.PBXRTPTimeout)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Trunks[0].Transport != "udp" || strings.Join(c.Trunks[0].Codecs, ",") != "PCMU,PCMA" ||
		c.Numbers[0].Routes[0].AnswerTimeout != 45*time.Second || c.Media.OpusComplexity != nil ||
		c.SIP.RTPPortMin != 20000 || c.HTTP.Listen != ":8080" || *c.Media.PBXRTPTimeout != 30*time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// Each bad config is refused, and the error names the field.
func TestBadConfigNamesTheField(t *testing.T) {
	cases := map[string]struct{ edit, field string }{
		"unknown field":     {"\nbogus: 1", "bogus"},
		"secret inline":     {"", ""},
		"bad trunk address": {strings.Replace(minimal, `"127.0.0.1:5070"`, `"pbx"`, 1), "trunks[0].address"},
		"unknown trunk":     {strings.Replace(minimal, "{trunk: pbx", "{trunk: nope", 1), "numbers[0].routes[0].trunk"},
		"bad destination":   {strings.Replace(minimal, `"sip:a@127.0.0.1"`, `"a@127.0.0.1"`, 1), "numbers[0].routes[0].destination"},
		"bad codec":         {strings.Replace(minimal, `address: "127.0.0.1:5070"}`, `address: "127.0.0.1:5070", codecs: [GSM]}`, 1), "trunks[0].codecs[0]"},
		"bad keepalive":     {minimal + "sip: {keepalive_interval: 1s}\n", "sip.keepalive_interval"},
		"bad allow_from":    {strings.Replace(minimal, `address: "127.0.0.1:5070"}`, `address: "127.0.0.1:5070", allow_from: [10.0.0.0/8, pbx2]}`, 1), "trunks[0].allow_from[1]"},
		"missing secret":    {strings.Replace(minimal, "app_secret: {env: S}", "", 1), "whatsapp.app_secret"},
		"empty secret":      {strings.Replace(minimal, "app_secret: {env: S}", "app_secret:", 1), "whatsapp.app_secret: missing"},
		"phone not id":      {strings.Replace(minimal, `phone_number_id: "1"`, `phone_number_id: "+1 555"`, 1), "numbers[0].phone_number_id"},
		"bad log level":     {minimal + "log: {level: loud}\n", "log.level"},
		"bad public ip":     {minimal + "webrtc: {public_ips: [0.0.0.0]}\n", "webrtc.public_ips[0]"},
		"timeout too long":  {strings.Replace(minimal, `destination: "sip:a@127.0.0.1"}`, `destination: "sip:a@127.0.0.1", answer_timeout: 90s}`, 1), "answer_timeout"},
		"password no ref":   {strings.Replace(minimal, `address: "127.0.0.1:5070"}`, `address: "127.0.0.1:5070", username: gw}`, 1), "trunks[0].password"},
		"bad rtp range":     {minimal + "sip: {rtp_port_min: 100, rtp_port_max: 90}\n", "sip.rtp_port_min"},
		"pbx rtp timeout":   {minimal + "media: {pbx_rtp_timeout: 1s}\n", "media.pbx_rtp_timeout"},
		"health path root":  {minimal + "http: {health_path: /}\n", "health_path"},
		"unclean health":    {minimal + "http: {health_path: //x}\n", "health_path"},
		// A secret reference takes env or file and nothing else: a value
		// next to it would be a secret in the config.
		"secret extra key":      {strings.Replace(minimal, "app_secret: {env: S}", "app_secret: {env: S, value: hunter2}", 1), "whatsapp.app_secret"},
		"secret only bad key":   {strings.Replace(minimal, "app_secret: {env: S}", "app_secret: {secret: hunter2}", 1), "whatsapp.app_secret"},
		"secret as key":         {strings.Replace(minimal, "app_secret: {env: S}", "app_secret: {env: S, hunter2}", 1), "whatsapp.app_secret"},
		"secret nested":         {strings.Replace(minimal, "app_secret: {env: S}", "app_secret: {env: {hunter2: x}}", 1), "whatsapp.app_secret"},
		"trunk password extra":  {strings.Replace(minimal, `address: "127.0.0.1:5070"}`, `address: "127.0.0.1:5070", username: gw, password: {file: /run/p, value: hunter2}}`, 1), "trunks[0].password"},
		"secret in block style": {strings.Replace(minimal, "app_secret: {env: S}", "app_secret:\n    env: S\n    value: hunter2", 1), "whatsapp.app_secret"},
		"bad health path":       {minimal + "http: {health_path: healthz}\n", "http.health_path"},
		"health path = webhook": {minimal + "http: {health_path: /webhook}\n", "http.health_path"},
	}
	for name, tc := range cases {
		raw := tc.edit
		if name == "unknown field" {
			raw = minimal + tc.edit
		}
		if name == "secret inline" {
			raw = strings.Replace(minimal, "app_secret: {env: S}", "app_secret: hunter2", 1)
			tc.field = "whatsapp.app_secret"
		}
		_, err := ParseConfig([]byte(raw))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name %q", name, err, tc.field)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error repeats the secret", name)
		}
	}
}

func TestResolveSecrets(t *testing.T) {
	c, err := ParseConfig([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("T", "tok")
	t.Setenv("S", "")
	os.Unsetenv("S")
	file := filepath.Join(t.TempDir(), "v")
	os.WriteFile(file, []byte("verify\n"), 0o600)
	c.WhatsApp.VerifyToken = SecretRef{File: file}
	_, err = c.ResolveSecrets()
	if err == nil || !strings.Contains(err.Error(), "whatsapp.app_secret: environment variable S is not set") {
		t.Fatalf("missing env not reported: %v", err)
	}
	t.Setenv("S", "sec")
	s, err := c.ResolveSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if s.AccessToken != "tok" || s.AppSecret != "sec" || s.VerifyToken != "verify" {
		t.Fatalf("secrets: %+v", s)
	}
}

func TestPayloadMatch(t *testing.T) {
	for _, c := range []struct {
		p, v string
		want bool
	}{{"", "x", true}, {"a", "a", true}, {"a", "ab", false}, {"a*", "ab", true}, {"a*", "b", false}, {"*", "", true}} {
		if got := matchPayload(c.p, c.v); got != c.want {
			t.Errorf("match(%q,%q)=%v", c.p, c.v, got)
		}
	}
}

func TestRegistryRemembersEndedCalls(t *testing.T) {
	r := newRegistry(time.Minute)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	if ok, _ := r.begin("a", &call{}); !ok {
		t.Fatal("first connect refused")
	}
	if ok, _ := r.begin("a", &call{}); ok {
		t.Fatal("duplicate connect accepted")
	}
	r.end("a")
	if ok, _ := r.begin("a", &call{}); ok {
		t.Fatal("connect after end accepted")
	}
	r.markEnded("b") // terminate before connect
	if ok, _ := r.begin("b", &call{}); ok {
		t.Fatal("late connect accepted")
	}
	now = now.Add(2 * time.Minute)
	r.markEnded("c") // triggers pruning
	if ok, _ := r.begin("a", &call{}); !ok {
		t.Fatal("ended ids should be forgotten after keepFor")
	}
}

// The secret reference's own check (UnmarshalYAML) refuses the same keys
// when a SecretRef is decoded on its own, and {env} or {file} still load.
func TestSecretRefDecodesOnlyEnvOrFile(t *testing.T) {
	var r SecretRef
	for _, raw := range []string{"{env: A, value: hunter2}", "{file: /x, token: hunter2}", "hunter2", "[hunter2]"} {
		err := yaml.Unmarshal([]byte(raw), &r)
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error repeats the secret: %v", raw, err)
		}
	}
	for raw, want := range map[string]SecretRef{"{env: A}": {Env: "A"}, "{file: /run/secrets/x}": {File: "/run/secrets/x"}} {
		var got SecretRef
		if err := yaml.Unmarshal([]byte(raw), &got); err != nil || got != want {
			t.Errorf("%s: %+v %v", raw, got, err)
		}
	}
	// Anchors and merge keys do not smuggle a key past the check.
	anchored := strings.Replace(minimal, "app_secret: {env: S}", "app_secret: {<<: {env: S, value: hunter2}}", 1)
	if _, err := ParseConfig([]byte(anchored)); err == nil || !strings.Contains(err.Error(), "whatsapp.app_secret") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("merge key: %v", err)
	}
}

// media.opus_complexity unset leaves the complexity to rtpbridge, by rate.
func TestOpusComplexityDefault(t *testing.T) {
	if got := opusComplexity(MediaConfig{}); got != rtpbridge.OpusComplexityAuto {
		t.Fatalf("unset: %d", got)
	}
	one := 1
	if got := opusComplexity(MediaConfig{OpusComplexity: &one}); got != 1 {
		t.Fatalf("1: %d", got)
	}
}

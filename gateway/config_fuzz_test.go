package gateway

import (
	"strings"
	"testing"
)

// Any config file: ParseConfig never panics nor hangs (the seeds include
// self-merging anchors), and returns a config or an error, never both.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		minimal,
		minimal + "media: {pbx_rtp_timeout: 45s, opus_complexity: 11}\n",
		minimal + "admin: {listen: \"127.0.0.1:8081\", token: {env: A}}\ncall_records: {url: \"http://x\", url_token: {file: /t}}\n",
		minimal + "sip: {transport: tls, rtp_port_min: 30000, rtp_port_max: 20000}\nwebrtc: {udp_port: 70000, listen_ips: [x]}\n",
		"whatsapp:\n  app_secret: inline\n",
		"whatsapp: {app_secret: {env: X, value: Y}}\n",
		"a: &a [*a, *a]\n",
		"numbers: [{routes: [{cta_payload: \"*\", answer_timeout: -1s}]}]\n",
		"{", "", "---\n---\n", "drain_timeout: 1e400h\n",
		// Anchors merged into themselves (the secret check once walked
		// them exponentially: a hang at start or reload).
		"whatsapp: &x {<<: [*x, *x, *x, *x, *x, *x, *x, *x]}\n",
		"whatsapp: &a {graph_timeout: 1s}\nhttp: &b {<<: [*a, *a, *a]}\nlog: &c {<<: [*b, *b, *b, *b]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseConfig(raw)
		if (err == nil) == (c == nil) {
			t.Fatalf("config %v with error %v: want exactly one", c != nil, err)
		}
	})
}

// secretFields are where a secret is named; {X} is replaced with a shape.
var secretFields = []struct{ from, to string }{
	{"  app_secret: {env: S}", "  app_secret: {X}"},
	{"  access_token: {env: T}", "  access_token: {X}"},
	{"  verify_token: {env: V}", "  verify_token: {X}"},
	{`  - {name: pbx, address: "127.0.0.1:5070"}`, `  - {name: pbx, address: "127.0.0.1:5070", password: {X}}`},
}

// secretShapes are ways to write a secret value (S) where only its name
// belongs: inline, quoted, beside or inside a reference, under a tag, in
// a sequence, as a key, anchored and reused elsewhere.
var secretShapes = []string{
	`S`, `"S"`, `'S'`, `[S]`, `{S: E}`, `{env: E, value: S}`, `{value: S, env: E}`,
	`{env: E, env: S}`, `{env: [S]}`, `{env: {k: S}}`, `!!int S`, `!!binary S`,
	`{env: !!map S}`, `{env: !!seq S}`, `&x S`, `{env: E, value: &x S}`,
}

// secretShapesEchoed are shapes this fuzz target found whose error once
// repeated the secret: a tagged scalar inside the reference made yaml.v3
// quote it ("cannot decode !!str `<secret>` as a !!int"). The secret check
// now refuses a tagged name before decoding.
var secretShapesEchoed = []string{
	`{env: !!int S}`, `{file: !!bool S}`, `{env: !!float S}`, `{env: !!timestamp S}`,
}

// A secret written where the config only names one (issue 13's inline
// secret edge) must never be repeated in the error ParseConfig returns:
// check-config prints it and the logs keep it. rest is more YAML after the
// document (it may refer to the anchor x).
func FuzzParseConfigSecretNotEchoed(f *testing.F) {
	// shape is field + len(secretFields)*shape index.
	for i := range secretShapes {
		for j := range secretFields {
			f.Add(uint8(i*len(secretFields)+j), "Abc123secretXyz", "")
		}
	}
	anchored := 14 * len(secretFields) // `&x S`
	f.Add(uint8(anchored), "Abc123secretXyz", "log: {level: *x}\n")
	f.Add(uint8(anchored+1), "Abc123secretXyz", "http: {listen: *x}\n")
	f.Add(uint8(anchored+2), "Abc123secretXyz", "sip: {transport: *x}\n")
	f.Fuzz(func(t *testing.T, shape uint8, secret, rest string) {
		if !plausibleSecret(secret) || strings.Contains(rest, secret) {
			return
		}
		field := secretFields[int(shape)%len(secretFields)]
		x := strings.ReplaceAll(secretShapes[int(shape/uint8(len(secretFields)))%len(secretShapes)], "S", secret)
		doc := strings.Replace(minimal, field.from, strings.Replace(field.to, "{X}", x, 1), 1) + rest
		_, err := ParseConfig([]byte(doc))
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("the error repeats the secret:\n%v\nconfig:\n%s", err, doc)
		}
	})
}

// Found by FuzzParseConfigSecretNotEchoed; see secretShapesEchoed.
func TestSecretInTaggedReferenceNotEchoed(t *testing.T) {
	const secret = "Abc123secretXyz"
	var echoed []string
	for _, shape := range secretShapesEchoed {
		x := strings.ReplaceAll(shape, "S", secret)
		doc := strings.Replace(minimal, "  app_secret: {env: S}", "  app_secret: "+x, 1)
		if _, err := ParseConfig([]byte(doc)); err != nil && strings.Contains(err.Error(), secret) {
			echoed = append(echoed, "app_secret: "+x+" -> "+err.Error())
		}
	}
	if len(echoed) > 0 {
		t.Errorf("the error repeats an inline secret:\n%s", strings.Join(echoed, "\n"))
	}
}

// Found by FuzzParseConfigSecretNotEchoed (inputs: shape 127 or 63, secret
// "00000000000A", rest "log: {*x}" or "sip: {transport: *x}"): a secret
// written beside a reference under an unknown key is accepted (the
// SecretRef unknown-key edge of issue 13); anchored, and its alias used
// elsewhere, it was named by yaml's unknown-field error or by Validate.
// SecretRef now refuses unknown keys before anything is decoded.
func TestSecretAliasedNotEchoed(t *testing.T) {
	const secret = "00000000000A"
	var echoed []string
	for _, rest := range []string{"log: {*x}\n", "sip: {transport: *x}\n"} {
		doc := strings.Replace(minimal, `  - {name: pbx, address: "127.0.0.1:5070"}`,
			`  - {name: pbx, address: "127.0.0.1:5070", password: {env: E, value: &x `+secret+`}}`, 1) + rest
		if _, err := ParseConfig([]byte(doc)); err != nil && strings.Contains(err.Error(), secret) {
			echoed = append(echoed, strings.TrimSpace(rest)+" -> "+err.Error())
		}
	}
	if len(echoed) > 0 {
		t.Errorf("the error repeats an inline secret:\n%s", strings.Join(echoed, "\n"))
	}
}

// plausibleSecret keeps secrets that cannot be mistaken for text of the
// config or of an error: 12-64 letters and digits, with both.
func plausibleSecret(s string) bool {
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	var letter, digit bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letter = true
		default:
			return false
		}
	}
	return letter && digit
}

package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// strictLine decodes one JSON log line, failing on a key repeated in any
// object (what Elasticsearch and other strict parsers reject), on trailing
// data and on anything but an object.
func strictLine(line []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object: %v", tok)
	}
	if err := walkObject(dec); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the object")
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// walkObject reads an object's members after its '{', through its '}'.
func walkObject(dec *json.Decoder) error {
	seen := map[string]bool{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return nil
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("key %v is not a string", tok)
		}
		if seen[key] {
			return fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if err := walkValue(dec); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
}

func walkValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		return walkObject(dec)
	case '[':
		for dec.More() {
			if err := walkValue(dec); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return fmt.Errorf("unexpected %v", d)
}

func TestLogStrictDecoderCatchesDuplicates(t *testing.T) {
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":[{"b":1,"b":1}]}`, `[1]`, `{"a":1} {}`} {
		if _, err := strictLine([]byte(bad)); err == nil {
			t.Errorf("%s passed the strict decoder", bad)
		}
	}
	if _, err := strictLine([]byte(`{"a":{"b":1},"b":[{"a":1},{"a":2}]}`)); err != nil {
		t.Errorf("valid line refused: %v", err)
	}
}

// parseLogs parses every line of a JSON log strictly and checks the
// schema's keys: ts (RFC 3339, UTC, milliseconds), level, msg, src.
func parseLogs(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for i, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l == "" {
			t.Errorf("line %d empty", i+1)
			continue
		}
		m, err := strictLine([]byte(l))
		if err != nil {
			t.Errorf("line %d: %v: %s", i+1, err, l)
			continue
		}
		ts, _ := m["ts"].(string)
		if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") || tm.IsZero() {
			t.Errorf("line %d: ts %q is not RFC 3339 UTC with milliseconds", i+1, ts)
		}
		for _, k := range []string{"level", "msg", "src"} {
			if s, _ := m[k].(string); s == "" {
				t.Errorf("line %d: no %q: %s", i+1, k, l)
			}
		}
		if _, ok := m["caller"]; ok {
			t.Errorf("line %d: key \"caller\" (the source is src, the caller's number caller_number): %s", i+1, l)
		}
		lines = append(lines, m)
	}
	return lines
}

// An error line carries no stack trace at info level, one at debug; the
// schema's keys are not repeated by a field or a With chain.
func TestLogErrorStacktraceOnlyAtDebug(t *testing.T) {
	for _, level := range []string{"info", "debug"} {
		var buf syncBuffer
		log, err := gateway.NewLoggerTo(gateway.LogConfig{Level: level, Format: "json"}, zapcore.AddSync(&buf))
		if err != nil {
			t.Fatal(err)
		}
		l := log.Named("gateway").With(zap.String("call_id", "wacid.1"), zap.String("sip_call_id", "a@b"))
		l = l.With(zap.String("sip_call_id", "a@b"), zap.String("src", "10.0.0.1:5060"))
		l.Error("it failed", zap.Error(errors.New("boom")), zap.String("call_id", "wacid.1"), zap.String("msg", "x"), zap.String("ts", "y"))
		l.Warn("a warning")
		lines := parseLogs(t, buf.String())
		if len(lines) != 2 {
			t.Fatalf("%s: %d lines: %s", level, len(lines), buf.String())
		}
		_, stack := lines[0]["stacktrace"]
		if stack != (level == "debug") {
			t.Errorf("level %s: error line stacktrace present %v: %s", level, stack, buf.String())
		}
		if _, ok := lines[1]["stacktrace"]; ok {
			t.Errorf("level %s: warning with a stack trace", level)
		}
		if lines[0]["logger"] != "gateway" || lines[0]["level"] != "error" || lines[0]["msg"] != "it failed" || lines[0]["src_field"] != "10.0.0.1:5060" {
			t.Errorf("level %s: %v", level, lines[0])
		}
	}
	// Console keeps a human's layout with the same ISO time.
	var buf syncBuffer
	log, err := gateway.NewLoggerTo(gateway.LogConfig{Level: "info", Format: "console"}, zapcore.AddSync(&buf))
	if err != nil {
		t.Fatal(err)
	}
	log.Error("console line", zap.String("call_id", "wacid.2"))
	f := strings.Split(buf.String(), "\t")
	if len(f) < 4 || len(f[0]) != len("2006-01-02T15:04:05.000Z") || f[1] != "ERROR" || !strings.Contains(buf.String(), `{"call_id": "wacid.2"}`) || strings.Contains(buf.String(), "goroutine") {
		t.Errorf("console line %q", buf.String())
	}
}

// logCall runs one call through digest auth at debug level with the
// daemon's JSON logger and returns its lines and the call's id.
func logCall(t *testing.T, trace bool) ([]map[string]any, string) {
	t.Helper()
	pbx := startSipp(t, "pbx_auth_echo.xml", 1, 40*time.Second)
	dropped := gateway.LogKeysDropped()
	var buf syncBuffer
	log, err := gateway.NewLoggerTo(gateway.LogConfig{Level: "debug", Format: "json", SIPTrace: trace}, zapcore.AddSync(&buf))
	if err != nil {
		t.Fatal(err)
	}
	secrets := testSecrets
	secrets.TrunkPasswords = map[string]string{"pbx": "pbx-Pa55-do-not-log"}
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr, Log: log, Secrets: &secrets, Config: func(c *gateway.Config) {
		c.Log = gateway.LogConfig{Level: "debug", Format: "json", SIPTrace: trace}
		c.Trunks[0].Username = "gw"
		c.Trunks[0].Password = gateway.SecretRef{Env: "UNUSED_PBX_PASSWORD"}
	}})
	c := h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 2 * time.Second})
	r := waitReport(t, c, 30*time.Second)
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("graph actions %q (digest auth must have worked)", got)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitNoActiveCalls(t, h.gw)
	time.Sleep(200 * time.Millisecond) // the call's last lines
	out := buf.String()
	if testing.Verbose() {
		t.Logf("log:\n%s", out)
	}
	if n := gateway.LogKeysDropped() - dropped; n > 0 {
		t.Errorf("%d log fields repeated a key of their line (dropped by the logger): fix the call sites", n)
	}
	if strings.Contains(out, "pbx-Pa55-do-not-log") {
		t.Error("the SIP password is in the log")
	}
	return parseLogs(t, out), c.ID()
}

// callScoped reports whether a line must carry the call's call_id: a line
// logged by the gateway (root logger), its sip or webrtc loggers or the
// SIP trace from the "whatsapp call connect" line to the "call ended" line
// of the call, except the few lines about the process rather than a call
// (listed), sipgo's own records (sip.sipgo: transport and transaction
// layers, no call context) and SIP trace lines of messages outside any
// call's dialog (OPTIONS pings).
func callScoped(m map[string]any) bool {
	name, _ := m["logger"].(string)
	switch name {
	case "", "sip", "webrtc", "sip.trace":
	default:
		return false
	}
	if name == "sip.trace" {
		s, _ := m["start_line"].(string)
		return !strings.Contains(s, "OPTIONS")
	}
	return true
}

func checkCallIDs(t *testing.T, lines []map[string]any, callID string) {
	t.Helper()
	in, n := false, 0
	for _, m := range lines {
		msg, _ := m["msg"].(string)
		if msg == "whatsapp call connect" {
			in = true
		}
		if in && callScoped(m) {
			n++
			if got, _ := m["call_id"].(string); got != callID {
				b, _ := json.Marshal(m)
				t.Errorf("call line without call_id %q: %s", callID, b)
			}
		}
		if msg == "call ended" && m["call_id"] == callID {
			in = false
		}
	}
	if n < 10 {
		t.Errorf("only %d lines of the call", n)
	}
}

// A call at debug level: every line parses strictly (no repeated key),
// follows the schema, and every line of the call carries its call_id; the
// SIP trace shows every message of the call, the digest answer masked.
func TestLogCallSchemaAndTrace(t *testing.T) {
	lines, callID := logCall(t, true)
	checkCallIDs(t, lines, callID)
	var sent, recv []string
	for _, m := range lines {
		if m["logger"] != "sip.trace" {
			continue
		}
		msg, _ := m["sip_msg"].(string)
		start, _ := m["start_line"].(string)
		if len(msg) > sip.MaxTraceMessage+40 {
			t.Errorf("trace line of %d bytes", len(msg))
		}
		if m["level"] != "debug" || m["sip_call_id"] == "" || !strings.HasPrefix(msg, start) {
			t.Errorf("trace line %v", m)
		}
		if strings.Contains(msg, "response=") || strings.Contains(msg, "nonce=\"") && strings.Contains(msg, "Authorization: Digest u") {
			t.Errorf("digest answer in the trace: %s", msg)
		}
		if strings.HasPrefix(start, "INVITE ") && strings.Contains(msg, "Authorization:") && !strings.Contains(msg, "Authorization: Digest <masked>") {
			t.Errorf("Authorization not masked: %s", msg)
		}
		switch m["dir"] {
		case "send":
			sent = append(sent, start)
		case "recv":
			recv = append(recv, start)
		}
	}
	want := func(list []string, prefix string, n int) {
		c := 0
		for _, s := range list {
			if strings.HasPrefix(s, prefix) {
				c++
			}
		}
		if c < n {
			t.Errorf("trace: %d %q lines, want %d (sent %q, received %q)", c, prefix, n, sent, recv)
		}
	}
	want(sent, "INVITE ", 2) // the first, then with credentials
	want(sent, "ACK ", 2)    // the 401's, the 200's
	want(sent, "BYE ", 1)
	want(recv, "SIP/2.0 401", 1)
	want(recv, "SIP/2.0 200", 2) // INVITE, BYE
	masked := false
	for _, m := range lines {
		if s, _ := m["sip_msg"].(string); strings.Contains(s, "Authorization: Digest <masked>") {
			masked = true
		}
	}
	if !masked {
		t.Error("no masked Authorization header in the trace")
	}
}

// Without log.sip_trace, no trace line even at debug.
func TestLogCallNoTraceUnlessEnabled(t *testing.T) {
	lines, callID := logCall(t, false)
	checkCallIDs(t, lines, callID)
	for _, m := range lines {
		if m["logger"] == "sip.trace" || m["sip_msg"] != nil {
			t.Fatalf("trace line without sip_trace: %v", m)
		}
	}
}

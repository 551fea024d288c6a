package sip

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestTrunkValidate(t *testing.T) {
	good := []Trunk{
		{Address: "127.0.0.1:5060"},
		{Address: "pbx.example:5061", Transport: "TLS", Username: "gw", Password: "x", Codecs: []string{"opus", "pcma"}},
		{Address: "[2001:db8::1]:5060", Transport: "tcp", FromDomain: "wa.example"},
		{Address: "pbx:5060", Codecs: []string{"PCMU", "PCMA", "G722", "opus"}},
		{Address: "pbx:5060", Codecs: []string{"g722", "OPUS", "pcmu"}},
	}
	for _, tr := range good {
		if err := tr.Validate(); err != nil {
			t.Errorf("%+v: %v", tr.Address, err)
		}
	}
	bad := map[string]Trunk{
		"address":     {Address: "pbx.example"},
		"address ":    {Address: ":5060"},
		"port":        {Address: "pbx:99999"},
		"transport":   {Address: "pbx:5060", Transport: "ws"},
		"username":    {Address: "pbx:5060", Password: "secret"},
		"username\"":  {Address: "pbx:5060", Username: "a\"b"},
		"from_domain": {Address: "pbx:5060", FromDomain: "a b"},
		"codecs[1]":   {Address: "pbx:5060", Codecs: []string{"PCMU", "G729"}},
		"codecs[2]":   {Address: "pbx:5060", Codecs: []string{"PCMU", "PCMA", "pcmu"}},
	}
	for field, tr := range bad {
		err := tr.Validate()
		if err == nil {
			t.Errorf("%s: accepted", field)
			continue
		}
		want := strings.TrimSpace(strings.TrimSuffix(field, "\""))
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not name the field", field, err)
		}
	}
	var nilTrunk *Trunk
	if nilTrunk.Validate() == nil {
		t.Error("nil trunk accepted")
	}
}

// TestTrunkCodecs: the four codec names resolve, in the trunk's order, to
// the payload types and clocks we offer (G.722 at 8000 per RFC 3551).
func TestTrunkCodecs(t *testing.T) {
	tr := &Trunk{Address: "pbx:5060", Codecs: []string{"g722", "OPUS", "pcmu", "PCMA"}}
	want := []Codec{{"G722", 9, 8000}, {"opus", 111, 48000}, {"PCMU", 0, 8000}, {"PCMA", 8, 8000}}
	got := tr.codecs()
	if len(got) != len(want) {
		t.Fatalf("codecs %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("codec %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestTrunkDefaults(t *testing.T) {
	tr := &Trunk{Address: "192.0.2.5:5070"}
	if tr.fromDomain() != "192.0.2.5" || tr.transport() != "udp" {
		t.Errorf("defaults: %q %q", tr.fromDomain(), tr.transport())
	}
	cs := tr.codecs()
	if len(cs) != 2 || cs[0].Name != "PCMU" || cs[1].Name != "PCMA" {
		t.Errorf("default codecs %+v", cs)
	}
}

// TestTrunkPasswordNeverLogged: String and zap both leave the password out.
func TestTrunkPasswordNeverLogged(t *testing.T) {
	tr := &Trunk{Name: "main", Address: "pbx:5060", Username: "gw", Password: "hunter2-secret"}
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel)
	log := zap.New(core)
	log.Info("trunk", zap.Object("trunk", tr), zap.Stringer("s", tr), zap.Any("any", tr))
	log.Sync()
	if strings.Contains(buf.String(), "hunter2") || strings.Contains(tr.String(), "hunter2") {
		t.Errorf("password logged: %s", buf.String())
	}
	if !strings.Contains(buf.String(), `"auth":true`) {
		t.Errorf("log lacks the auth flag: %s", buf.String())
	}
}

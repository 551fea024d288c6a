package gateway

import (
	"errors"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wagateway/wagateway/sip"
)

// TestTrunkHealthAuthChallenge: a challenged OPTIONS ping counts as up;
// how the challenge went is logged once per change, not once per ping
// (Debug without credentials, Warn when they are refused, Info when they
// work again), and refused credentials show as auth_failed in /readyz's
// state and in wagateway_trunk_auth_failed.
func TestTrunkHealthAuthChallenge(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	m := newMetrics()
	tm := newTrunkMonitor(HealthConfig{OptionsInterval: time.Hour, OptionsTimeout: time.Second, DownAfter: 2}, zap.New(core), m)
	tm.run(map[string]*sip.Trunk{"pbx": {Name: "pbx", Address: "127.0.0.1:5060"}}, map[string]bool{"pbx": false})
	defer tm.stop()
	// Pinged, without starting a pinger: the results are fed below.
	tm.mu.Lock()
	tm.states["pbx"].Pinged = true
	tm.mu.Unlock()

	state := func() trunkState {
		t.Helper()
		_, states := tm.ready()
		return states["pbx"]
	}
	gauge := func() float64 {
		t.Helper()
		var d dto.Metric
		if err := m.trunkAuthFail.WithLabelValues("pbx").Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetGauge().GetValue()
	}
	type entry struct {
		level zapcore.Level
		msg   string
	}
	taken := 0
	newLogs := func() []entry {
		all := logs.All()
		var out []entry
		for _, e := range all[taken:] {
			out = append(out, entry{e.Level, e.Message})
		}
		taken = len(all)
		return out
	}
	feed := func(n int, res sip.OptionsResult, err error) {
		for i := 0; i < n; i++ {
			tm.result("pbx", "gw", res, time.Millisecond, err)
		}
	}

	feed(3, sip.OptionsResult{Code: 401, Auth: sip.OptionsAuthNoCredentials}, nil)
	if st := state(); !st.Up || !st.Answered || st.LastCode != 401 || st.AuthFailed {
		t.Errorf("challenged, no credentials: %+v, want up, answered, 401, no auth_failed", st)
	}
	if got := newLogs(); len(got) != 1 || got[0].level != zapcore.DebugLevel {
		t.Errorf("three challenged pings without credentials logged %+v, want one Debug line", got)
	}

	feed(3, sip.OptionsResult{Code: 401, Auth: sip.OptionsAuthRefused}, nil)
	if st := state(); !st.Up || !st.AuthFailed || st.LastCode != 401 {
		t.Errorf("credentials refused: %+v, want up with auth_failed", st)
	}
	if g := gauge(); g != 1 {
		t.Errorf("trunk_auth_failed %v, want 1", g)
	}
	if got := newLogs(); len(got) != 1 || got[0].level != zapcore.WarnLevel {
		t.Errorf("three refused pings logged %+v, want one Warn line", got)
	} else if ws := logs.FilterMessageSnippet("wrong username/password").All(); len(ws) != 1 || ws[0].ContextMap()["username"] != "gw" {
		t.Errorf("warning %+v, want the username", ws)
	}

	// An unanswered ping leaves the auth state as it was (and logs its own line).
	feed(1, sip.OptionsResult{}, errors.New("timeout"))
	if st := state(); !st.AuthFailed || st.Failures != 1 {
		t.Errorf("after one unanswered ping: %+v", st)
	}
	newLogs()
	feed(1, sip.OptionsResult{Code: 401, Auth: sip.OptionsAuthRefused}, nil)
	if got := newLogs(); len(got) != 0 {
		t.Errorf("still refused after an unanswered ping logged %+v, want nothing new", got)
	}

	feed(2, sip.OptionsResult{Code: 200, Auth: sip.OptionsAuthAccepted}, nil)
	if st := state(); !st.Up || st.AuthFailed || st.LastCode != 200 {
		t.Errorf("credentials accepted: %+v", st)
	}
	if g := gauge(); g != 0 {
		t.Errorf("trunk_auth_failed %v after acceptance, want 0", g)
	}
	if got := newLogs(); len(got) != 1 || got[0].level != zapcore.InfoLevel {
		t.Errorf("credentials accepted again logged %+v, want one Info line", got)
	}

	feed(2, sip.OptionsResult{Code: 200}, nil)
	if got := newLogs(); len(got) != 1 || got[0].level != zapcore.DebugLevel {
		t.Errorf("no challenge any more logged %+v, want one Debug line", got)
	}
	if ok, _ := tm.ready(); !ok {
		t.Error("not ready")
	}
}

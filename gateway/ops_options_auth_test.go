package gateway_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wagateway/wagateway/gateway"
)

// A trunk whose PBX (sipp) requires digest auth for OPTIONS: with the right
// password the ping's retry gets 200; with a wrong one the retry is
// challenged again, the trunk still counts as up (the PBX answers) but
// /readyz and wagateway_trunk_auth_failed say the credentials are refused,
// and the warning is logged once, not on every ping, without the password.
func TestOpsTrunkOptionsDigestAuth(t *testing.T) {
	for _, tc := range []struct {
		name, password string
		refused        bool
	}{
		{"right password", "pbx-0ptions-pass", false},
		{"wrong password", "not-the-0ptions-pass", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pbx := startSipp(t, "pbx_options_auth.xml", 100000, 60*time.Second)
			core, logs := observer.New(zapcore.DebugLevel)
			secrets := testSecrets
			secrets.TrunkPasswords = map[string]string{"pbx": tc.password}
			h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, PingTrunk: true, Secrets: &secrets, Log: zap.New(core),
				Config: func(c *gateway.Config) {
					c.Log.Level = "debug"
					c.Trunks[0].Username = "gw"
					c.Trunks[0].Password = gateway.SecretRef{Env: "UNUSED_PBX_PASSWORD"}
				}})

			type trunk struct {
				Up         bool `json:"up"`
				Answered   bool `json:"answered"`
				LastCode   int  `json:"last_code"`
				AuthFailed bool `json:"auth_failed"`
			}
			readyz := func() (int, trunk) {
				code, body := httpGet(t, h.opsURL()+"/readyz", "")
				var rz struct {
					Trunks map[string]trunk `json:"trunks"`
				}
				if err := json.Unmarshal([]byte(body), &rz); err != nil {
					t.Fatalf("/readyz %d: %v: %s", code, err, body)
				}
				return code, rz.Trunks["pbx"]
			}
			wantCode := 200
			if tc.refused {
				wantCode = 401
			}
			waitFor(t, 5*time.Second, "the trunk answered", func() bool { _, tr := readyz(); return tr.Answered })
			// Several more pings (every 200 ms), to see each logged once.
			time.Sleep(time.Second)
			code, tr := readyz()
			if code != 200 || !tr.Up || tr.LastCode != wantCode || tr.AuthFailed != tc.refused {
				t.Errorf("/readyz %d, trunk %+v: want ready, up, last_code %d, auth_failed %v", code, tr, wantCode, tc.refused)
			}
			want := 0.0
			if tc.refused {
				want = 1
			}
			if v := h.scrape(t).value(t, `wagateway_trunk_auth_failed{trunk="pbx"}`); v != want {
				t.Errorf("trunk_auth_failed %v, want %v", v, want)
			}

			// sipp logs a failed check (no Authorization for user gw) here.
			if errs, _ := os.ReadFile(filepath.Join(filepath.Dir(pbx.msgTrace), "errors.log")); len(errs) > 0 {
				t.Errorf("sipp errors:\n%s", errs)
			}
			trace, _ := os.ReadFile(pbx.msgTrace)
			if n := strings.Count(string(trace), "\nOPTIONS sip:"); n < 8 { // 4 pings, each retried once
				t.Errorf("sipp got %d OPTIONS, want several pings with their retries", n)
			}
			refusedLogs := logs.FilterMessageSnippet("refuses the credentials").All()
			acceptedLogs := logs.FilterMessageSnippet("answered with the trunk's credentials").All()
			if tc.refused {
				if len(refusedLogs) != 1 || refusedLogs[0].Level != zapcore.WarnLevel || refusedLogs[0].ContextMap()["username"] != "gw" {
					t.Errorf("refused credentials logged %d times (%+v), want one warning with the username", len(refusedLogs), refusedLogs)
				}
			} else if len(refusedLogs) != 0 || len(acceptedLogs) != 1 || acceptedLogs[0].Level != zapcore.DebugLevel {
				t.Errorf("accepted credentials logged %d debug lines and %d warnings, want one debug line", len(acceptedLogs), len(refusedLogs))
			}
			for _, e := range logs.All() {
				if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, tc.password) {
					t.Errorf("the trunk password is in the log: %s", line)
				}
			}
		})
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example configs pass check-config as shipped, with only the secrets
// in the environment (no trunk password: the example trunk is identified by
// IP, as the README's pjsip snippet): the one warning left is the edit the
// user must make, webrtc.public_ips; set (here by its override), it goes.
// The Docker configs' record folder is the container's volume: here an
// override points it at a folder that exists.
func TestCheckConfigExamplesPass(t *testing.T) {
	for _, v := range []string{"WA_ACCESS_TOKEN", "WA_APP_SECRET", "WA_VERIFY_TOKEN", "WAGATEWAY_ADMIN_TOKEN"} {
		t.Setenv(v, "x-"+v)
	}
	os.Unsetenv("PBX_PASSWORD")
	dir := t.TempDir()
	for _, path := range []string{"../../configs/gateway.yaml", "../../docker/gateway.yaml", "../../docker/gateway-freeswitch.yaml"} {
		t.Setenv("WAGATEWAY_CALL_RECORDS_FILE", "")
		if strings.Contains(path, "docker") {
			t.Setenv("WAGATEWAY_CALL_RECORDS_FILE", filepath.Join(dir, "calls.jsonl"))
		}
		for _, publicIP := range []string{"", "9.9.9.9,2620:fe::9"} {
			t.Setenv("WAGATEWAY_WEBRTC_PUBLIC_IPS", publicIP)
			if publicIP == "" {
				os.Unsetenv("WAGATEWAY_WEBRTC_PUBLIC_IPS")
			}
			var out, errb bytes.Buffer
			if code := run([]string{"check-config", path}, &out, &errb); code != 0 {
				t.Errorf("%s: exit %d:\n%s", path, code, errb.String())
				continue
			}
			warned := strings.Contains(errb.String(), "warning: line ") && strings.Contains(errb.String(), "webrtc.public_ips: empty")
			if warned != (publicIP == "") {
				t.Errorf("%s, public_ips %q: warning about public_ips %v:\n%s", path, publicIP, warned, errb.String())
			}
			for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
				if l != "" && !strings.Contains(l, "webrtc.public_ips") && !strings.Contains(l, "admin.listen") {
					t.Errorf("%s: unexpected: %s", path, l)
				}
			}
			if strings.Contains(errb.String()+out.String(), "x-WA_") {
				t.Errorf("%s: a secret printed", path)
			}
		}
	}
}

// check-config prints every problem of a broken file, by field path and
// line, and its warnings beside them.
func TestCheckConfigListsEveryProblem(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`whatsapp: {access_token: {env: T}, app_secret: {env: S}, verify_token: {env: V}}
webrtc: {public_ips: [10.0.0.5]}
sip: {keepalive_interval: 30x}
trunks:
  - {name: pbx, address: "10.0.0.9:5060"}
  - {name: fs, address: "10.0.0.9:5080", codecs: [ulaw, GSM]}
numbers: [{phone_number_id: "1", routes: [{trunk: pbx, destination: "sip:a@b"}, {trunk: fs, destination: "sip:a@b"}]}]
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"config has 3 problem(s)",
		`line 3: sip.keepalive_interval: "30x" is not a duration`,
		`line 6: trunks[1].codecs[1]: "GSM" is not supported`,
		"line 7: numbers[0].routes[0]: takes every call",
		"warning: line 2: webrtc.public_ips[0]: 10.0.0.5 is a private address",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("no %q in:\n%s", want, errb.String())
		}
	}
}

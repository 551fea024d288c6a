package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("WA_ACCESS_TOKEN", "t")
	t.Setenv("WA_APP_SECRET", "s")
	t.Setenv("WA_VERIFY_TOKEN", "v")
	t.Setenv("PBX_PASSWORD", "p")
	if code := run([]string{"check-config", "../../configs/gateway.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("example config: exit %d: %s", code, errb.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`
http: {webhook_path: webhook}
whatsapp: {access_token: {env: T}, app_secret: {env: S}, verify_token: {env: V}}
trunks: [{name: pbx, address: nohost, codecs: [GSM]}]
numbers: [{phone_number_id: "12", routes: [{trunk: other, destination: "tel:123"}]}]
`), 0o600)
	out.Reset()
	errb.Reset()
	if code := run([]string{"check-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("bad config: exit %d", code)
	}
	for _, field := range []string{"http.webhook_path", "trunks[0].address", "trunks[0].codecs[0]", "numbers[0].routes[0].trunk", "numbers[0].routes[0].destination"} {
		if !strings.Contains(errb.String(), field) {
			t.Errorf("check-config output does not name %s:\n%s", field, errb.String())
		}
	}
	if code := run([]string{"bogus"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

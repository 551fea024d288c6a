package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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

// The cluster's examples pass check-config as each instance runs them:
// docker/gateway-cluster.yaml with the environment docker/compose.cluster.yml
// gives each gateway service (its ${VAR}s as docker/.env would set them), and
// the Kubernetes ConfigMap's config with the StatefulSet's environment (the
// downward API's values made up, $(VAR) expanded as Kubernetes does). The
// shared compose file alone is refused: cluster.advertise is per instance.
func TestCheckConfigClusterExamplesPass(t *testing.T) {
	secrets := map[string]string{
		"WA_ACCESS_TOKEN": "x-WA_ACCESS_TOKEN", "WA_APP_SECRET": "x-WA_APP_SECRET", "WA_VERIFY_TOKEN": "x-WA_VERIFY_TOKEN",
		"WAGATEWAY_ADMIN_TOKEN":    "x-admin-token",
		"REDIS_PASSWORD":           "x5e1c0a3b9d7f2e4a6c8b0d1f3e5a7c9b",
		"WAGATEWAY_CLUSTER_SECRET": "x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	t.Setenv("WAGATEWAY_CALL_RECORDS_FILE", filepath.Join(dir, "calls.jsonl"))
	os.Unsetenv("PBX_PASSWORD")

	check := func(t *testing.T, name, path string, env map[string]string, allowed ...string) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		defer func() {
			for k := range env {
				os.Unsetenv(k)
			}
		}()
		var out, errb bytes.Buffer
		if code := run([]string{"check-config", path}, &out, &errb); code != 0 {
			t.Errorf("%s: exit %d:\n%s", name, code, errb.String())
			return
		}
	lines:
		for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
			for _, a := range allowed {
				if strings.Contains(l, a) {
					continue lines
				}
			}
			if l != "" {
				t.Errorf("%s: unexpected: %s", name, l)
			}
		}
		for _, v := range secrets {
			if strings.Contains(errb.String()+out.String(), v) {
				t.Errorf("%s: a secret printed", name)
			}
		}
	}

	// docker/compose.cluster.yml's gateway services.
	raw, err := os.ReadFile("../../docker/compose.cluster.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	dotenv := map[string]string{"GATEWAY_A_PUBLIC_IPS": "81.2.69.160", "GATEWAY_B_PUBLIC_IPS": "81.2.69.160,2001:67c:2e8::1"}
	interp := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}`)
	var instances int
	for name, svc := range compose.Services {
		if !slices.Contains(svc.Volumes, "./gateway-cluster.yaml:/etc/wagateway/gateway.yaml:ro") {
			continue
		}
		instances++
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = interp.ReplaceAllStringFunc(v, func(m string) string {
				val, ok := dotenv[interp.FindStringSubmatch(m)[1]]
				if !ok {
					t.Fatalf("%s: %s=%s: no value for %s here", name, k, v, m)
				}
				return val
			})
		}
		check(t, "docker/gateway-cluster.yaml as "+name, "../../docker/gateway-cluster.yaml", env, "admin.listen")
	}
	if instances < 2 {
		t.Errorf("docker/compose.cluster.yml: %d gateway instances", instances)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "../../docker/gateway-cluster.yaml"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "cluster.advertise: required") {
		t.Errorf("docker/gateway-cluster.yaml without its instance's environment: exit %d\n%s", code, errb.String())
	}

	// configs/kubernetes/wagateway-cluster.yaml: the ConfigMap's config, the
	// StatefulSet's environment.
	raw, err = os.ReadFile("../../configs/kubernetes/wagateway-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfgText string
	env := map[string]string{}
	fake := map[string]string{"status.podIP": "10.0.1.5", "status.hostIP": "81.2.69.160", "metadata.name": "wagateway-0"}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Env []struct {
								Name      string `yaml:"name"`
								Value     string `yaml:"value"`
								ValueFrom struct {
									FieldRef struct {
										FieldPath string `yaml:"fieldPath"`
									} `yaml:"fieldRef"`
									SecretKeyRef struct {
										Key string `yaml:"key"`
									} `yaml:"secretKeyRef"`
								} `yaml:"valueFrom"`
							} `yaml:"env"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			cfgText = doc.Data["gateway.yaml"]
		case "StatefulSet":
			for _, e := range doc.Spec.Template.Spec.Containers[0].Env {
				switch {
				case e.ValueFrom.FieldRef.FieldPath != "":
					env[e.Name] = fake[e.ValueFrom.FieldRef.FieldPath]
				case e.ValueFrom.SecretKeyRef.Key != "":
					if secrets[e.ValueFrom.SecretKeyRef.Key] == "" {
						t.Errorf("StatefulSet env %s: secret key %s unknown here", e.Name, e.ValueFrom.SecretKeyRef.Key)
					}
				default:
					env[e.Name] = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(e.Value, func(m string) string {
						return env[m[2:len(m)-1]]
					})
				}
			}
		}
	}
	if cfgText == "" || env["WAGATEWAY_CLUSTER_ADVERTISE"] == "" {
		t.Fatalf("configs/kubernetes/wagateway-cluster.yaml: no ConfigMap gateway.yaml or StatefulSet environment")
	}
	path := filepath.Join(dir, "k8s-gateway.yaml")
	os.WriteFile(path, []byte(cfgText), 0o600)
	check(t, "configs/kubernetes/wagateway-cluster.yaml", path, env, "metrics.listen")
}

package deploytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The examples for several instances (docs/cluster.md) outside compose:
// configs/haproxy/haproxy.cfg and configs/kubernetes/wagateway-cluster.yaml.

// selfSigned writes a PEM with a throwaway certificate and its key (as
// HAProxy's crt takes them: one file).
func selfSigned(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wa.example.com"},
		DNSNames:     []string{"wa.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&b, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	p := filepath.Join(dir, "wagateway.pem")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The HAProxy example passes haproxy -c as shipped, its certificate path
// given the way the file says an operator may (WAGATEWAY_TLS_PEM in
// HAProxy's environment), and agrees with the cluster's gateway config:
// round-robin, the health path checked on every server, the webhook path
// and port.
func TestHAProxyExample(t *testing.T) {
	const cfgPath = "configs/haproxy/haproxy.cfg"
	text := read(t, cfgPath)
	var gw gatewayYAML
	if err := yaml.Unmarshal([]byte(read(t, "docker/gateway-cluster.yaml")), &gw); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	has := func(want string) bool {
		for _, l := range lines {
			if l == want {
				return true
			}
		}
		return false
	}
	for _, want := range []string{
		"balance roundrobin",
		"option httpchk GET " + gw.HTTP.HealthPath,
		"http-check expect status 200",
		"acl is_webhook path " + gw.HTTP.WebhookPath,
		"option redispatch",
	} {
		if !has(want) {
			t.Errorf("%s: no line %q", cfgPath, want)
		}
	}
	var servers int
	for _, l := range lines {
		f := strings.Fields(l)
		if f[0] != "server" {
			continue
		}
		servers++
		if len(f) < 4 || f[3] != "check" {
			t.Errorf("%s: %q: no health check", cfgPath, l)
		}
		if len(f) < 3 {
			continue
		}
		if _, port, err := net.SplitHostPort(f[2]); err != nil || port != strconv.Itoa(listenPort(t, gw.HTTP.Listen)) {
			t.Errorf("%s: %q: not the webhook port of http.listen %s", cfgPath, l, gw.HTTP.Listen)
		}
	}
	if servers < 2 {
		t.Errorf("%s: %d server lines", cfgPath, servers)
	}

	haproxy := requireProgram(t, "haproxy")
	pemFile := selfSigned(t, t.TempDir())
	cmd := exec.Command(haproxy, "-c", "-f", filepath.Join(root, cfgPath))
	cmd.Env = append(cleanEnv(), "WAGATEWAY_TLS_PEM="+pemFile)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Configuration file is valid")) {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfgPath, err, out)
	}
	if bytes.Contains(out, []byte("[WARNING]")) {
		t.Errorf("haproxy -c -f %s warns:\n%s", cfgPath, out)
	}
	// Without it, the file's own path: the certificate is what the check
	// above depended on (unless this machine has a file there).
	const def = "/etc/haproxy/certs/wagateway.pem"
	if !strings.Contains(text, "presetenv WAGATEWAY_TLS_PEM "+def) {
		t.Errorf("%s: no default certificate path %s", cfgPath, def)
	}
	if _, err := os.Stat(def); errors.Is(err, os.ErrNotExist) {
		cmd := exec.Command(haproxy, "-c", "-f", filepath.Join(root, cfgPath))
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte(def)) {
			t.Errorf("haproxy -c without a certificate: err %v\n%s", err, out)
		}
	}
}

// k8sDocs reads every document of a multi-document YAML file.
func k8sDocs(t *testing.T, rel string) []map[string]any {
	t.Helper()
	d := yaml.NewDecoder(strings.NewReader(read(t, rel)))
	var out []map[string]any
	for {
		var doc map[string]any
		err := d.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", rel, len(out)+1, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

// dig follows keys (and list indexes) through decoded YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := dig(v, path...).(string); return s }
func list(v any, path ...any) []any { l, _ := dig(v, path...).([]any); return l }
func num(v any, path ...any) int    { n, _ := dig(v, path...).(int); return n }

// onlyKeys reports keys of a mapping that are not Kubernetes fields of its
// type (kubectl's validation needs a cluster; this catches a misspelt key
// at the levels the manifest is most likely to get wrong).
func onlyKeys(t *testing.T, what string, v any, allowed string) {
	t.Helper()
	ok := map[string]bool{}
	for _, k := range strings.Fields(allowed) {
		ok[k] = true
	}
	m, _ := v.(map[string]any)
	for k := range m {
		if !ok[k] {
			t.Errorf("%s: %q is not a field of it", what, k)
		}
	}
}

const (
	podSpecFields = `activeDeadlineSeconds affinity automountServiceAccountToken containers dnsConfig dnsPolicy
		enableServiceLinks ephemeralContainers hostAliases hostIPC hostNetwork hostPID hostUsers hostname imagePullSecrets
		initContainers nodeName nodeSelector os overhead preemptionPolicy priority priorityClassName readinessGates
		resourceClaims restartPolicy runtimeClassName schedulerName schedulingGates securityContext serviceAccountName
		setHostnameAsFQDN shareProcessNamespace subdomain terminationGracePeriodSeconds tolerations topologySpreadConstraints volumes`
	containerFields = `args command env envFrom image imagePullPolicy lifecycle livenessProbe name ports readinessProbe
		resizePolicy resources restartPolicy securityContext startupProbe stdin stdinOnce terminationMessagePath
		terminationMessagePolicy tty volumeDevices volumeMounts workingDir`
	probeFields = `exec failureThreshold grpc httpGet initialDelaySeconds periodSeconds successThreshold tcpSocket
		terminationGracePeriodSeconds timeoutSeconds`
	statefulSetSpecFields = `minReadySeconds ordinals persistentVolumeClaimRetentionPolicy podManagementPolicy replicas
		revisionHistoryLimit selector serviceName template updateStrategy volumeClaimTemplates`
	serviceSpecFields = `allocateLoadBalancerNodePorts clusterIP clusterIPs externalIPs externalName externalTrafficPolicy
		healthCheckNodePort internalTrafficPolicy ipFamilies ipFamilyPolicy loadBalancerClass loadBalancerIP
		loadBalancerSourceRanges ports publishNotReadyAddresses selector sessionAffinity sessionAffinityConfig trafficDistribution type`
)

// The Kubernetes example parses, its objects reference each other (labels,
// Services, named ports, the ConfigMap, the Secret) and its ports, probes and
// per-pod environment agree with the gateway config it carries.
func TestKubernetesExample(t *testing.T) {
	const rel = "configs/kubernetes/wagateway-cluster.yaml"
	docs := k8sDocs(t, rel)
	byKind := map[string][]map[string]any{}
	for i, d := range docs {
		if str(d, "apiVersion") == "" || str(d, "kind") == "" || str(d, "metadata", "name") == "" {
			t.Errorf("%s: document %d has no apiVersion, kind or metadata.name", rel, i+1)
		}
		byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
	}
	one := func(kind string) map[string]any {
		if len(byKind[kind]) != 1 {
			t.Fatalf("%s: %d %s objects, want one", rel, len(byKind[kind]), kind)
		}
		return byKind[kind][0]
	}
	sts, cm := one("StatefulSet"), one("ConfigMap")
	if str(sts, "apiVersion") != "apps/v1" {
		t.Errorf("StatefulSet apiVersion %q", str(sts, "apiVersion"))
	}
	onlyKeys(t, "StatefulSet spec", dig(sts, "spec"), statefulSetSpecFields)
	pod := dig(sts, "spec", "template", "spec")
	onlyKeys(t, "pod spec", pod, podSpecFields)
	labels, _ := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			return false
		}
		for k, v := range m {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(dig(sts, "spec", "selector", "matchLabels")) {
		t.Errorf("StatefulSet selector %v does not match its pods' labels %v", dig(sts, "spec", "selector"), labels)
	}
	containers := list(pod, "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers", len(containers))
	}
	c := containers[0]
	onlyKeys(t, "container", c, containerFields)
	onlyKeys(t, "readinessProbe", dig(c, "readinessProbe"), probeFields)
	onlyKeys(t, "livenessProbe", dig(c, "livenessProbe"), probeFields)

	// The config: the ConfigMap's gateway.yaml, mounted where -config reads it.
	raw := str(cm, "data", "gateway.yaml")
	var gw gatewayYAML
	if err := yaml.Unmarshal([]byte(raw), &gw); err != nil {
		t.Fatalf("ConfigMap gateway.yaml: %v", err)
	}
	args := fmt.Sprint(dig(c, "args"))
	var cfgDir string
	for _, vm := range list(c, "volumeMounts") {
		for _, v := range list(pod, "volumes") {
			if str(v, "name") == str(vm, "name") && str(v, "configMap", "name") == str(cm, "metadata", "name") {
				cfgDir = str(vm, "mountPath")
			}
		}
	}
	if cfgDir == "" || args != "[-config "+cfgDir+"/gateway.yaml]" {
		t.Errorf("args %s, the ConfigMap mounted at %q", args, cfgDir)
	}

	// The environment: $(VAR) only of variables listed before (Kubernetes
	// expands those alone), every {env: X} of the config from the Secret.
	env := map[string]string{}
	fields := map[string]string{}
	fake := map[string]string{"status.podIP": "10.0.1.5", "status.hostIP": "10.0.1.5", "metadata.name": "wagateway-0"}
	for _, e := range list(c, "env") {
		name := str(e, "name")
		switch {
		case str(e, "valueFrom", "fieldRef", "fieldPath") != "":
			fields[name] = str(e, "valueFrom", "fieldRef", "fieldPath")
			env[name] = fake[fields[name]]
		case str(e, "valueFrom", "secretKeyRef", "name") != "":
			env[name] = "secret"
		default:
			v := str(e, "value")
			for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(v, -1) {
				if _, ok := env[m[1]]; !ok {
					t.Errorf("env %s uses $(%s), not listed before it", name, m[1])
				}
				v = strings.ReplaceAll(v, m[0], env[m[1]])
			}
			env[name] = v
		}
	}
	if fields["WAGATEWAY_CLUSTER_NODE_ID"] != "metadata.name" {
		t.Errorf("WAGATEWAY_CLUSTER_NODE_ID: the pod's name (metadata.name), not %q", fields["WAGATEWAY_CLUSTER_NODE_ID"])
	}
	refs := map[string]bool{}
	var generic any
	yaml.Unmarshal([]byte(raw), &generic)
	envRefs(generic, refs)
	for v := range refs {
		if env[v] != "secret" {
			t.Errorf("the config reads {env: %s}: not from a secretKeyRef", v)
		}
	}
	if gw.Cluster.NodeID != "" || gw.Cluster.Advertise != "" || len(gw.Cluster.Redis.Addresses) == 0 {
		t.Errorf("the ConfigMap's cluster: node_id %q and advertise %q (per pod), redis %v", gw.Cluster.NodeID, gw.Cluster.Advertise, gw.Cluster.Redis.Addresses)
	}
	gw.override(t, env, refs)

	// Named ports agree with the listeners.
	type port struct {
		n     int
		proto string
	}
	named := map[string]port{}
	hostNet, _ := dig(pod, "hostNetwork").(bool)
	for _, p := range list(c, "ports") {
		proto := str(p, "protocol")
		if proto == "" {
			proto = "TCP"
		}
		named[str(p, "name")] = port{num(p, "containerPort"), proto}
		if hp := num(p, "hostPort"); hostNet && hp != 0 && hp != num(p, "containerPort") {
			t.Errorf("port %s: hostPort %d ≠ containerPort under hostNetwork", str(p, "name"), hp)
		}
	}
	clusterListen := gw.Cluster.Listen
	if clusterListen == "" {
		clusterListen = ":9444"
	}
	for name, want := range map[string]port{
		"http":    {listenPort(t, gw.HTTP.Listen), "TCP"},
		"cluster": {listenPort(t, clusterListen), "TCP"},
		"metrics": {listenPort(t, gw.Metrics.Listen), "TCP"},
		"sip":     {listenPort(t, gw.SIP.Listen), "UDP"},
		"webrtc":  {gw.WebRTC.UDPPort, "UDP"},
	} {
		if named[name] != want {
			t.Errorf("container port %s %v, the config says %v", name, named[name], want)
		}
	}
	if !hostNet {
		// hostPort for the WebRTC port at least: Meta reaches it on the node.
		for _, p := range list(c, "ports") {
			if str(p, "name") == "webrtc" && num(p, "hostPort") != gw.WebRTC.UDPPort {
				t.Errorf("webrtc: no hostPort %d (the pod network is not what Meta reaches)", gw.WebRTC.UDPPort)
			}
		}
	}
	if want := "http://" + env["POD_IP"] + ":" + strconv.Itoa(named["cluster"].n); gw.Cluster.Advertise != want {
		t.Errorf("cluster.advertise %q, want %s (http://$(POD_IP):<cluster port>)", gw.Cluster.Advertise, want)
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		p := dig(c, probe, "httpGet")
		if str(p, "path") != path || named[str(p, "port")].n != named["metrics"].n || named["metrics"].n == 0 {
			t.Errorf("%s %v: want GET %s on the metrics port", probe, p, path)
		}
	}

	// Draining: the grace period covers preStop, drain_timeout and the end.
	drain := 60 * time.Second
	if gw.DrainTimeout != "" {
		drain, _ = time.ParseDuration(gw.DrainTimeout)
	}
	var preStop time.Duration
	if cmd := list(c, "lifecycle", "preStop", "exec", "command"); len(cmd) == 2 && cmd[0] == "sleep" {
		n, _ := strconv.Atoi(fmt.Sprint(cmd[1]))
		preStop = time.Duration(n) * time.Second
	} else {
		t.Errorf("preStop %v: sleep N (the ingress learns the pod is going before SIGTERM)", dig(c, "lifecycle"))
	}
	if grace := time.Duration(num(pod, "terminationGracePeriodSeconds")) * time.Second; grace < preStop+drain+15*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + drain_timeout %v + 15 s", grace, preStop, drain)
	}

	// One pod per node.
	anti := list(pod, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
	if len(anti) != 1 || str(anti[0], "topologyKey") != "kubernetes.io/hostname" || !matches(dig(anti[0], "labelSelector", "matchLabels")) {
		t.Errorf("podAntiAffinity %v: required, per kubernetes.io/hostname, on the pods' labels", anti)
	}

	// Services: the headless one is the StatefulSet's; the webhook one
	// reaches the http port; each selects the pods.
	services := map[string]map[string]any{}
	for _, s := range byKind["Service"] {
		services[str(s, "metadata", "name")] = s
		onlyKeys(t, "Service "+str(s, "metadata", "name")+" spec", dig(s, "spec"), serviceSpecFields)
		if !matches(dig(s, "spec", "selector")) {
			t.Errorf("Service %s selects %v, not the pods", str(s, "metadata", "name"), dig(s, "spec", "selector"))
		}
		for _, p := range list(s, "spec", "ports") {
			if _, ok := named[str(p, "targetPort")]; !ok {
				t.Errorf("Service %s targets port %v: no container port of that name", str(s, "metadata", "name"), dig(p, "targetPort"))
			}
		}
	}
	if h := services[str(sts, "spec", "serviceName")]; h == nil || str(h, "spec", "clusterIP") != "None" {
		t.Errorf("StatefulSet serviceName %q: no headless Service of that name", str(sts, "spec", "serviceName"))
	}
	var webhook string
	for name, s := range services {
		for _, p := range list(s, "spec", "ports") {
			if str(p, "targetPort") == "http" {
				webhook = name
			}
		}
	}
	if webhook == "" {
		t.Fatal("no Service for the webhook (targetPort http)")
	}
	for _, ing := range byKind["Ingress"] {
		for _, r := range list(ing, "spec", "rules") {
			for _, p := range list(r, "http", "paths") {
				b := dig(p, "backend", "service")
				if str(b, "name") != webhook || str(b, "port", "name") != "http" || str(p, "path") != gw.HTTP.WebhookPath {
					t.Errorf("Ingress path %s → %v: want %s → %s port http", str(p, "path"), b, gw.HTTP.WebhookPath, webhook)
				}
			}
		}
	}

	// The call records' folder is the pod's volume; the rest is read-only.
	if sc := dig(c, "securityContext"); dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false {
		t.Errorf("container securityContext %v", sc)
	}
	var dataMounted bool
	for _, vm := range list(c, "volumeMounts") {
		if mp := str(vm, "mountPath"); mp != cfgDir && strings.HasPrefix(gw.CallRecords.File, mp+"/") {
			dataMounted = true
		}
	}
	if !dataMounted {
		t.Errorf("call_records.file %s: no volume mounted for it", gw.CallRecords.File)
	}
	if u, err := url.Parse(gw.Cluster.Advertise); err != nil || u.Scheme != "http" {
		t.Errorf("cluster.advertise %q", gw.Cluster.Advertise)
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("%s: %s", rel, strings.Join(kinds, ", "))
}

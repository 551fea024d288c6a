package deploytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
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

	"github.com/wagateway/wagateway/internal/testpeer"
)

const root = "../.."

type composeFile struct {
	path     string // relative to root
	raw      []byte
	top      map[string]any
	services map[string]map[string]any
}

func loadCompose(t *testing.T) []composeFile {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(root, "docker", "compose*.yml"))
	if len(paths) < 2 {
		t.Fatalf("compose files: %v", paths)
	}
	var out []composeFile
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]any
		if err := yaml.Unmarshal(raw, &top); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cf := composeFile{path: strings.TrimPrefix(p, root+"/"), raw: raw, top: top, services: map[string]map[string]any{}}
		svcs, _ := top["services"].(map[string]any)
		for name, s := range svcs {
			m, _ := s.(map[string]any)
			cf.services[name] = m
		}
		out = append(out, cf)
	}
	return out
}

// published is one entry of a service's ports.
type published struct {
	hostIP                 string
	hostLo, hostHi, lo, hi int
	proto                  string
}

func parsePort(t *testing.T, s string) published {
	t.Helper()
	p := published{proto: "tcp"}
	if spec, proto, ok := strings.Cut(s, "/"); ok {
		s, p.proto = spec, proto
	}
	parts := strings.Split(s, ":")
	rng := func(r string) (int, int) {
		a, b, ok := strings.Cut(r, "-")
		lo, err1 := strconv.Atoi(a)
		hi := lo
		var err2 error
		if ok {
			hi, err2 = strconv.Atoi(b)
		}
		if err1 != nil || err2 != nil {
			t.Fatalf("port %q", s)
		}
		return lo, hi
	}
	switch len(parts) {
	case 3:
		p.hostIP = parts[0]
		parts = parts[1:]
		fallthrough
	case 2:
		p.hostLo, p.hostHi = rng(parts[0])
		p.lo, p.hi = rng(parts[1])
	default:
		t.Fatalf("port %q: give the host port too", s)
	}
	if p.hostHi-p.hostLo != p.hi-p.lo {
		t.Errorf("port %q: host and container ranges differ in size", s)
	}
	return p
}

func ports(t *testing.T, svc map[string]any) []published {
	var out []published
	list, _ := svc["ports"].([]any)
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("ports entry %v: use the short string form", e)
		}
		out = append(out, parsePort(t, s))
	}
	return out
}

// binds are a service's bind mounts, host path (relative to root) → container path.
func binds(cf composeFile, svc map[string]any) map[string]string {
	out := map[string]string{}
	list, _ := svc["volumes"].([]any)
	for _, e := range list {
		s, _ := e.(string)
		parts := strings.Split(s, ":")
		if len(parts) < 2 || !(strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/")) {
			continue // a named volume
		}
		out[filepath.Clean(filepath.Join(filepath.Dir(cf.path), parts[0]))] = parts[1]
	}
	return out
}

func hostFor(binds map[string]string, container string) string {
	for h, c := range binds {
		if c == container {
			return h
		}
	}
	return ""
}

func read(t *testing.T, rel string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// gatewayYAML is the part of a gateway config the compose files depend on
// (read as plain YAML: the config's own checks are cmd/wagateway's tests).
type gatewayYAML struct {
	HTTP struct {
		Listen      string `yaml:"listen"`
		WebhookPath string `yaml:"webhook_path"`
		HealthPath  string `yaml:"health_path"`
	} `yaml:"http"`
	WebRTC struct {
		UDPPort int `yaml:"udp_port"`
	} `yaml:"webrtc"`
	SIP struct {
		Listen     string `yaml:"listen"`
		PublicHost string `yaml:"public_host"`
		RTPMin     int    `yaml:"rtp_port_min"`
		RTPMax     int    `yaml:"rtp_port_max"`
	} `yaml:"sip"`
	DrainTimeout string                  `yaml:"drain_timeout"`
	Admin        struct{ Listen string } `yaml:"admin"`
	Metrics      struct{ Listen string } `yaml:"metrics"`
	MaxCalls     int                     `yaml:"max_calls"`
	Cluster      struct {
		Redis struct {
			Addresses []string          `yaml:"addresses"`
			Password  map[string]string `yaml:"password"`
		} `yaml:"redis"`
		NodeID    string `yaml:"node_id"`
		Listen    string `yaml:"listen"`
		Advertise string `yaml:"advertise"`
	} `yaml:"cluster"`
	CallRecords struct{ File string } `yaml:"call_records"`
	Trunks      []struct {
		Name, Address string
	} `yaml:"trunks"`
	Numbers []struct {
		Routes []struct{ Trunk, Destination string } `yaml:"routes"`
	} `yaml:"numbers"`
}

// override applies the WAGATEWAY_ variables of an instance's environment
// (docs/configuration.md) to the fields above; each must be one of them
// (or webrtc.public_ips, which no check here reads), or a secret the config
// names ({env: WAGATEWAY_CLUSTER_SECRET}: no override): an override this
// test does not know is one it cannot check. cmd/wagateway's tests load the
// config with the same variables.
func (gw *gatewayYAML) override(t *testing.T, env map[string]string, secrets map[string]bool) {
	t.Helper()
	set := map[string]*string{
		"WAGATEWAY_HTTP_LISTEN":       &gw.HTTP.Listen,
		"WAGATEWAY_HTTP_HEALTH_PATH":  &gw.HTTP.HealthPath,
		"WAGATEWAY_SIP_LISTEN":        &gw.SIP.Listen,
		"WAGATEWAY_SIP_PUBLIC_HOST":   &gw.SIP.PublicHost,
		"WAGATEWAY_ADMIN_LISTEN":      &gw.Admin.Listen,
		"WAGATEWAY_METRICS_LISTEN":    &gw.Metrics.Listen,
		"WAGATEWAY_CLUSTER_NODE_ID":   &gw.Cluster.NodeID,
		"WAGATEWAY_CLUSTER_LISTEN":    &gw.Cluster.Listen,
		"WAGATEWAY_CLUSTER_ADVERTISE": &gw.Cluster.Advertise,
		"WAGATEWAY_CALL_RECORDS_FILE": &gw.CallRecords.File,
	}
	for k, v := range env {
		switch {
		case !strings.HasPrefix(k, "WAGATEWAY_"), k == "WAGATEWAY_WEBRTC_PUBLIC_IPS", secrets[k]:
		case set[k] != nil:
			*set[k] = v
		case k == "WAGATEWAY_WEBRTC_UDP_PORT":
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Errorf("%s=%q: not a port", k, v)
			}
			gw.WebRTC.UDPPort = n
		default:
			t.Errorf("%s: an override the deployment test does not know (teach gatewayYAML.override)", k)
		}
	}
}

func envRefs(v any, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "env" {
				out[s] = true
			}
			envRefs(x, out)
		}
	case []any:
		for _, x := range v {
			envRefs(x, out)
		}
	}
}

func envExample(t *testing.T) map[string]bool {
	known := map[string]bool{}
	re := regexp.MustCompile(`^#?\s*([A-Z_][A-Z0-9_]*)=`)
	for _, line := range strings.Split(read(t, "docker/env.example"), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			known[m[1]] = true
		}
	}
	return known
}

func TestComposeFiles(t *testing.T) {
	known := envExample(t)
	for _, cf := range loadCompose(t) {
		t.Run(filepath.Base(cf.path), func(t *testing.T) {
			if _, ok := cf.top["name"]; ok {
				t.Errorf("top-level name: docker-compose 1.29 refuses it (use COMPOSE_PROJECT_NAME)")
			}
			if _, ok := cf.top["version"]; ok {
				t.Errorf("top-level version: obsolete")
			}
			// Every ${VAR} is in env.example.
			for _, line := range strings.Split(string(cf.raw), "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(line, -1) {
					if !known[m[1]] {
						t.Errorf("${%s} is not in docker/env.example", m[1])
					}
				}
			}
			for name, svc := range cf.services {
				_, hasImage := svc["image"]
				b, hasBuild := svc["build"].(map[string]any)
				if !hasImage && !hasBuild {
					t.Errorf("service %s: no image nor build", name)
				}
				if hasBuild {
					ctx := filepath.Join(root, filepath.Dir(cf.path), b["context"].(string))
					if _, err := os.Stat(filepath.Join(ctx, b["dockerfile"].(string))); err != nil {
						t.Errorf("service %s: %v", name, err)
					}
				}
				for h := range binds(cf, svc) {
					if _, err := os.Stat(filepath.Join(root, h)); err != nil {
						t.Errorf("service %s mounts %s: %v", name, h, err)
					}
				}
				if ef, ok := svc["env_file"].(string); ok && ef != ".env" {
					t.Errorf("service %s: env_file %s (the quick start makes docker/.env)", name, ef)
				}
			}

			gws := loadGateways(t, cf, known)
			if len(gws) == 0 {
				t.Fatal("no gateway service (one that mounts its config at /etc/wagateway/gateway.yaml)")
			}
			for _, g := range gws {
				checkGatewayService(t, g)
			}
			checkHostPorts(t, cf)
			if len(gws) > 1 {
				checkCluster(t, cf, gws)
			}

			// Caddy: 80 and 443, and a proxy to each gateway's webhook port.
			cs := cf.services["caddy"]
			if cs == nil {
				t.Fatal("no caddy service in front of the webhook")
			}
			if img, _ := cs["image"].(string); img != "caddy:2" {
				t.Errorf("caddy image %q", img)
			}
			got := map[int]bool{}
			for _, p := range ports(t, cs) {
				got[p.lo] = p.proto == "tcp" && p.hostLo == p.lo
			}
			if !got[80] || !got[443] {
				t.Errorf("caddy must publish 80/tcp and 443/tcp (ACME and HTTPS): %v", cs["ports"])
			}
			caddyfile := hostFor(binds(cf, cs), "/etc/caddy/Caddyfile")
			if caddyfile != "docker/Caddyfile" && !strings.HasPrefix(caddyfile, "docker/Caddyfile.") {
				t.Fatalf("caddy mounts %q at /etc/caddy/Caddyfile, not docker/Caddyfile or docker/Caddyfile.*", caddyfile)
			}
			upstreams, healthURI := caddyProxy(t, caddyfile)
			var want []string
			for _, g := range gws {
				want = append(want, g.name+":"+strconv.Itoa(listenPort(t, g.cfg.HTTP.Listen)))
			}
			if strings.Join(upstreams, " ") != strings.Join(want, " ") {
				t.Errorf("%s: reverse_proxy %v, the gateways' webhooks are %v", caddyfile, upstreams, want)
			}
			if len(gws) > 1 {
				// Several instances: Caddy checks each on its health path.
				for _, g := range gws {
					if g.cfg.HTTP.HealthPath == "" || healthURI != g.cfg.HTTP.HealthPath {
						t.Errorf("%s: health_uri %q, %s's http.health_path %q", caddyfile, healthURI, g.name, g.cfg.HTTP.HealthPath)
					}
				}
			}
			env, _ := cs["environment"].(map[string]any)
			if h, _ := env["WAGATEWAY_HOSTNAME"].(string); !strings.HasPrefix(h, "${WAGATEWAY_HOSTNAME:?") {
				t.Errorf("caddy's WAGATEWAY_HOSTNAME %q: require it (${WAGATEWAY_HOSTNAME:?…})", h)
			}

			switch {
			case cf.services["asterisk"] != nil:
				checkAsterisk(t, cf, gws)
			case cf.services["freeswitch"] != nil:
				if len(gws) != 1 {
					t.Fatalf("the FreeSWITCH examples (acl.conf.xml, the profile's proxy) know one gateway, the file has %d", len(gws))
				}
				checkFreeSWITCH(t, cf, gws[0].cfg, gws[0].ip)
			default:
				t.Errorf("no PBX service")
			}
		})
	}
}

// gateway is one gateway instance of a compose file: its service and its
// config as that instance reads it (the mounted file and its environment's
// overrides).
type gateway struct {
	name, ip string
	svc      map[string]any
	cfgPath  string
	env      map[string]string
	cfg      gatewayYAML
}

// environment is a service's environment map (compose's map form).
func environment(t *testing.T, svc map[string]any) map[string]string {
	out := map[string]string{}
	switch e := svc["environment"].(type) {
	case nil:
	case map[string]any:
		for k, v := range e {
			out[k] = fmt.Sprint(v)
		}
	default:
		t.Errorf("environment %v: use the map form", e)
	}
	return out
}

// loadGateways finds the services that mount a gateway config, in name order.
func loadGateways(t *testing.T, cf composeFile, known map[string]bool) []gateway {
	t.Helper()
	var out []gateway
	for name, svc := range cf.services {
		cfgPath := hostFor(binds(cf, svc), "/etc/wagateway/gateway.yaml")
		if cfgPath == "" {
			continue
		}
		g := gateway{name: name, ip: ipv4(svc), svc: svc, cfgPath: cfgPath, env: environment(t, svc)}
		raw := read(t, cfgPath)
		if err := yaml.Unmarshal([]byte(raw), &g.cfg); err != nil {
			t.Fatalf("%s: %v", cfgPath, err)
		}
		var generic any
		yaml.Unmarshal([]byte(raw), &generic)
		refs := map[string]bool{}
		envRefs(generic, refs)
		for v := range refs {
			if !known[v] {
				t.Errorf("%s reads {env: %s}, which docker/env.example does not list", cfgPath, v)
			}
		}
		g.cfg.override(t, g.env, refs)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// checkGatewayService: the instance's SIP address is its compose address; it
// publishes its WebRTC port and its admin port (on 127.0.0.1 only), never
// the webhook, SIP or RTP; it has time to drain.
func checkGatewayService(t *testing.T, g gateway) {
	if g.cfg.SIP.PublicHost != g.ip {
		t.Errorf("%s: sip.public_host %q, its compose address is %s", g.name, g.cfg.SIP.PublicHost, g.ip)
	}
	webhook := listenPort(t, g.cfg.HTTP.Listen)
	var webrtcPublished bool
	for _, p := range ports(t, g.svc) {
		switch {
		case p.lo <= webhook && webhook <= p.hi && p.proto == "tcp":
			t.Errorf("%s publishes the webhook port %d: only Caddy may reach it", g.name, webhook)
		case p.lo == g.cfg.WebRTC.UDPPort && p.proto == "udp":
			webrtcPublished = p.hostLo == p.lo
		case g.cfg.Admin.Listen != "" && p.lo == listenPort(t, g.cfg.Admin.Listen):
			if p.hostIP != "127.0.0.1" {
				t.Errorf("%s: admin port published on %q, want 127.0.0.1", g.name, p.hostIP)
			}
		case p.hi >= g.cfg.SIP.RTPMin && p.lo <= g.cfg.SIP.RTPMax, p.lo == listenPort(t, g.cfg.SIP.Listen):
			t.Errorf("%s publishes SIP/RTP %d-%d: the PBX reaches them on the compose network", g.name, p.lo, p.hi)
		default:
			t.Errorf("%s publishes %d-%d/%s: unexpected", g.name, p.lo, p.hi, p.proto)
		}
	}
	if !webrtcPublished {
		t.Errorf("%s: webrtc.udp_port %d/udp is not published on the same host port (ICE candidates name it)", g.name, g.cfg.WebRTC.UDPPort)
	}
	drain := 60 * time.Second // the default
	if g.cfg.DrainTimeout != "" {
		d, err := time.ParseDuration(g.cfg.DrainTimeout)
		if err != nil {
			t.Fatalf("%s: drain_timeout %q", g.cfgPath, g.cfg.DrainTimeout)
		}
		drain = d
	}
	grace, _ := g.svc["stop_grace_period"].(string)
	if d, err := time.ParseDuration(grace); err != nil || d < drain+15*time.Second {
		t.Errorf("%s: stop_grace_period %q: the drain (drain_timeout %v) and ending the last calls (15 s) need longer", g.name, grace, drain)
	}
	if s, _ := g.svc["stop_signal"].(string); s != "SIGTERM" {
		t.Errorf("%s: stop_signal %q, SIGTERM drains", g.name, s)
	}
}

// checkHostPorts: no two services publish the same host port.
func checkHostPorts(t *testing.T, cf composeFile) {
	owner := map[string]string{}
	for name, svc := range cf.services {
		for _, p := range ports(t, svc) {
			for port := p.hostLo; port <= p.hostHi; port++ {
				k := fmt.Sprintf("%s:%d/%s", p.hostIP, port, p.proto)
				if o, dup := owner[k]; dup {
					t.Errorf("%s and %s both publish %s", o, name, k)
				}
				owner[k] = name
			}
		}
	}
}

// checkCluster: the instances of one compose file act as one (docs/cluster.md):
// each its own node id, internal address, WebRTC port and data volume;
// the same Redis, a compose service never published, with the password the
// gateways name.
func checkCluster(t *testing.T, cf composeFile, gws []gateway) {
	seen := map[string]map[string]string{"node id": {}, "webrtc.udp_port": {}, "data volume": {}}
	distinct := func(what, v, who string) {
		if o, dup := seen[what][v]; dup {
			t.Errorf("%s and %s share the %s %s", o, who, what, v)
		}
		seen[what][v] = who
	}
	for _, g := range gws {
		c := g.cfg.Cluster
		if c.NodeID == "" {
			t.Errorf("%s: no cluster.node_id (WAGATEWAY_CLUSTER_NODE_ID): the host name of a container changes with each start", g.name)
		}
		distinct("node id", c.NodeID, g.name)
		distinct("webrtc.udp_port", strconv.Itoa(g.cfg.WebRTC.UDPPort), g.name)
		listen := c.Listen
		if listen == "" {
			listen = ":9444"
		}
		if want := "http://" + g.ip + ":" + strconv.Itoa(listenPort(t, listen)); c.Advertise != want {
			t.Errorf("%s: cluster.advertise %q, its internal channel is %s", g.name, c.Advertise, want)
		}
		for _, p := range ports(t, g.svc) {
			if p.lo <= listenPort(t, listen) && listenPort(t, listen) <= p.hi && p.proto == "tcp" {
				t.Errorf("%s publishes the internal channel %d: it stays on the compose network", g.name, p.lo)
			}
		}
		var vol string
		list, _ := g.svc["volumes"].([]any)
		for _, e := range list {
			if s, _ := e.(string); strings.Contains(s, ":/var/lib/wagateway") {
				vol, _, _ = strings.Cut(s, ":")
			}
		}
		if vol == "" {
			t.Errorf("%s: no volume at /var/lib/wagateway (call records)", g.name)
		}
		distinct("data volume", vol, g.name)
		if len(c.Redis.Addresses) != 1 {
			t.Errorf("%s: cluster.redis.addresses %v: one, the compose service", g.name, c.Redis.Addresses)
			continue
		}
		host, port, _ := net.SplitHostPort(c.Redis.Addresses[0])
		rs := cf.services[host]
		if rs == nil {
			t.Errorf("%s: cluster.redis.addresses %s: no such service", g.name, c.Redis.Addresses[0])
			continue
		}
		if img, _ := rs["image"].(string); img != "redis:7-alpine" {
			t.Errorf("redis image %q", img)
		}
		if len(ports(t, rs)) > 0 || port != "6379" {
			t.Errorf("redis: publishes %v, port %s: it stays on the compose network, on 6379", rs["ports"], port)
		}
		pw := c.Redis.Password["env"]
		if re := environment(t, rs); pw == "" || re[pw] != "${"+pw+"}" {
			t.Errorf("redis's password: the gateways read {env: %s}, the redis service's environment is %v", pw, re)
		}
		cmd := fmt.Sprint(rs["command"])
		if pw != "" && (!strings.Contains(cmd, "requirepass $$"+pw) || !strings.Contains(cmd, `--save ""`) || !strings.Contains(cmd, "--appendonly no")) {
			t.Errorf("redis command %s: requirepass from %s, no persistence", cmd, pw)
		}
	}
}

// caddyProxy reads the upstreams and the active health check path of a
// Caddyfile's reverse_proxy (the one in it).
func caddyProxy(t *testing.T, rel string) (upstreams []string, healthURI string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(read(t, rel), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "reverse_proxy":
			n++
			for _, u := range f[1:] {
				if u == "{" {
					break
				}
				upstreams = append(upstreams, u)
			}
		case "health_uri":
			if len(f) > 1 {
				healthURI = f[1]
			}
		}
	}
	if n != 1 {
		t.Errorf("%s: %d reverse_proxy directives, want one", rel, n)
	}
	return upstreams, healthURI
}

func ipv4(svc map[string]any) string {
	nets, _ := svc["networks"].(map[string]any)
	for _, n := range nets {
		if m, ok := n.(map[string]any); ok {
			if ip, ok := m["ipv4_address"].(string); ok {
				return ip
			}
		}
	}
	return ""
}

// trunkTo is the gateway's trunk whose address names the compose service.
func trunkTo(t *testing.T, gw gatewayYAML, service string) (name string, port int) {
	t.Helper()
	for _, tr := range gw.Trunks {
		host, p, err := net.SplitHostPort(tr.Address)
		if err == nil && host == service {
			n, _ := strconv.Atoi(p)
			return tr.Name, n
		}
	}
	t.Fatalf("no trunk addresses the %s service", service)
	return "", 0
}

func publishedRange(t *testing.T, svc map[string]any, proto string, min int) (int, int) {
	for _, p := range ports(t, svc) {
		if p.proto == proto && p.hi > p.lo && p.lo >= min {
			if p.hostLo != p.lo {
				t.Errorf("RTP range published on other host ports (%d-%d → %d-%d): the SDP names the container's", p.hostLo, p.hostHi, p.lo, p.hi)
			}
			return p.lo, p.hi
		}
	}
	t.Errorf("no RTP range published")
	return 0, 0
}

func publishes(t *testing.T, svc map[string]any, port int, proto string) bool {
	for _, p := range ports(t, svc) {
		if p.lo <= port && port <= p.hi && p.proto == proto {
			return true
		}
	}
	return false
}

func checkAsterisk(t *testing.T, cf composeFile, gws []gateway) {
	svc := cf.services["asterisk"]
	b := binds(cf, svc)
	for _, f := range []string{"pjsip.conf", "extensions.conf", "queues.conf", "rtp.conf"} {
		if hostFor(b, "/etc/asterisk/"+f) != "configs/asterisk/"+f {
			t.Errorf("configs/asterisk/%s is not mounted at /etc/asterisk/%s", f, f)
		}
	}
	rtp := iniSections(read(t, "configs/asterisk/rtp.conf"))
	start, _ := strconv.Atoi(rtp[0].get("rtpstart"))
	end, _ := strconv.Atoi(rtp[0].get("rtpend"))
	lo, hi := publishedRange(t, svc, "udp", 1024)
	if lo != start || hi != end {
		t.Errorf("published RTP %d-%d, rtp.conf says %d-%d", lo, hi, start, end)
	}
	if (end-start+1)/4 < 100 {
		t.Errorf("rtp.conf %d-%d holds %d calls (4 ports a call): too few", start, end, (end-start+1)/4)
	}
	var bindPort int
	for _, s := range iniSections(read(t, "configs/asterisk/pjsip.conf")) {
		if s.get("type") == "transport" {
			bindPort = listenPort(t, s.get("bind"))
		}
	}
	for _, g := range gws {
		trunk, port := trunkTo(t, g.cfg, "asterisk")
		if port != bindPort || !publishes(t, svc, bindPort, "udp") {
			t.Errorf("%s: trunk %s port %d, pjsip transport binds %d (published: %v)", g.name, trunk, port, bindPort, publishes(t, svc, bindPort, "udp"))
		}
		// The calls the instances may hold together fit Asterisk's RTP range.
		if n := g.cfg.MaxCalls; n > (end-start+1)/4 {
			t.Errorf("%s: max_calls %d, Asterisk's RTP range %d-%d holds %d calls", g.name, n, start, end, (end-start+1)/4)
		}
	}
	checkPJSIP(t, gws)
}

func checkFreeSWITCH(t *testing.T, cf composeFile, gw gatewayYAML, gwIP string) {
	svc := cf.services["freeswitch"]
	b := binds(cf, svc)
	for h, c := range b {
		if rel := strings.TrimPrefix(h, "configs/freeswitch/"); "/etc/freeswitch/"+rel != c {
			t.Errorf("%s mounted at %s, want /etc/freeswitch/%s", h, c, rel)
		}
	}
	sw := hostFor(b, "/etc/freeswitch/autoload_configs/switch.conf.xml")
	if sw == "" {
		t.Fatal("switch.conf.xml (the RTP range) is not mounted")
	}
	swp := xmlParams(t, sw)
	start, _ := strconv.Atoi(swp["rtp-start-port"])
	end, _ := strconv.Atoi(swp["rtp-end-port"])
	lo, hi := publishedRange(t, svc, "udp", 1024)
	if start == 0 || lo != start || hi != end {
		t.Errorf("published RTP %d-%d, switch.conf.xml says %d-%d", lo, hi, start, end)
	}
	prof := xmlParams(t, "configs/freeswitch/sip_profiles/wagateway.xml")
	sipPort, _ := strconv.Atoi(prof["sip-port"])
	// The vanilla profiles: internal 5060 (the phones, published), external 5080.
	if sipPort == 5060 || sipPort == 5080 || sipPort == 0 {
		t.Errorf("wagateway profile sip-port %q collides with a vanilla profile", prof["sip-port"])
	}
	if !publishes(t, svc, 5060, "udp") {
		t.Errorf("the internal profile's 5060/udp is not published for the phones")
	}
	if publishes(t, svc, sipPort, "udp") {
		t.Errorf("the wagateway profile's %d is published: only the gateway may reach it", sipPort)
	}
	trunk, port := trunkTo(t, gw, "freeswitch")
	if port != sipPort {
		t.Errorf("trunk %s port %d, the wagateway profile's sip-port %d", trunk, port, sipPort)
	}
	for _, n := range gw.Numbers {
		for _, r := range n.Routes {
			if r.Trunk == trunk && !strings.HasSuffix(r.Destination, "@freeswitch:"+strconv.Itoa(sipPort)) {
				t.Errorf("route destination %s: not the profile's port %d", r.Destination, sipPort)
			}
		}
	}
	if want := gwIP + ":" + strconv.Itoa(listenPort(t, gw.SIP.Listen)); prof["proxy"] != want {
		t.Errorf("the profile's gateway proxy %q, want %s", prof["proxy"], want)
	}
	if prof["apply-inbound-acl"] != "wagateway" {
		t.Errorf("apply-inbound-acl %q", prof["apply-inbound-acl"])
	}
	acl := read(t, "configs/freeswitch/autoload_configs/acl.conf.xml")
	if !regexp.MustCompile(`<list name="wagateway" default="deny">\s*<node type="allow" cidr="` + regexp.QuoteMeta(gwIP) + `/32"/>`).MatchString(acl) {
		t.Errorf("acl.conf.xml: the wagateway list does not allow %s/32 alone", gwIP)
	}
}

// xmlParams collects name → value of every <param> of a file.
func xmlParams(t *testing.T, rel string) map[string]string {
	t.Helper()
	out := map[string]string{}
	d := xml.NewDecoder(strings.NewReader(read(t, rel)))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "param" {
			var n, v string
			for _, a := range se.Attr {
				switch a.Name.Local {
				case "name":
					n = a.Value
				case "value":
					v = a.Value
				}
			}
			out[n] = v
		}
	}
}

// The FreeSWITCH examples are well-formed XML, and the dialplan uses no
// application of a module the vanilla modules.conf.xml leaves out (mod_sofia,
// mod_dptools, mod_commands are loaded; mod_callcenter is not). FreeSWITCH
// itself is not in Debian (bookworm), so it cannot load them here.
func TestFreeSWITCHExamples(t *testing.T) {
	loaded := map[string]bool{"set": true, "export": true, "log": true, "transfer": true, "bridge": true,
		"respond": true, "answer": true, "hangup": true, "playback": true, "sleep": true}
	var files []string
	filepath.WalkDir(filepath.Join(root, "configs/freeswitch"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".xml") {
			files = append(files, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	if len(files) < 5 {
		t.Fatalf("FreeSWITCH examples: %v", files)
	}
	contexts := map[string]bool{}
	var transfers []string
	for _, f := range files {
		d := xml.NewDecoder(strings.NewReader(read(t, f)))
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Errorf("%s: not well-formed: %v", f, err)
				break
			}
			se, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			attr := func(n string) string {
				for _, a := range se.Attr {
					if a.Name.Local == n {
						return a.Value
					}
				}
				return ""
			}
			switch se.Name.Local {
			case "context":
				contexts[attr("name")] = true
			case "action":
				app := attr("application")
				if !loaded[app] {
					t.Errorf("%s: application %q needs a module the example does not load", f, app)
				}
				if app == "transfer" {
					transfers = append(transfers, attr("data"))
				}
			}
		}
	}
	for _, tr := range transfers {
		if f := strings.Fields(tr); len(f) != 3 || !contexts[f[2]] {
			t.Errorf("transfer %q: no such context", tr)
		}
	}
	if prof := xmlParams(t, "configs/freeswitch/sip_profiles/wagateway.xml"); !contexts[prof["context"]] {
		t.Errorf("the profile's context %q is not defined", prof["context"])
	}
}

type iniSection struct {
	name, template string
	isTemplate     bool
	kv             [][2]string
}

// getAll is every value of a key given several times (an aor's contact=).
func (s iniSection) getAll(k string) []string {
	var out []string
	for _, p := range s.kv {
		if p[0] == k {
			out = append(out, p[1])
		}
	}
	return out
}

func (s iniSection) get(k string) string {
	for _, p := range s.kv {
		if p[0] == k {
			return p[1]
		}
	}
	return ""
}

// iniSections reads an Asterisk .conf: [name](template) headers, key=value
// and key => value lines, ; comments.
func iniSections(text string) []iniSection {
	var out []iniSection
	sc := bufio.NewScanner(strings.NewReader(text))
	head := regexp.MustCompile(`^\[([^\]]+)\](?:\(([^)]*)\))?`)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), ";")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := head.FindStringSubmatch(line); m != nil {
			out = append(out, iniSection{name: m[1], template: strings.TrimPrefix(m[2], "!"), isTemplate: strings.HasPrefix(m[2], "!")})
			continue
		}
		if len(out) == 0 {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[len(out)-1].kv = append(out[len(out)-1].kv, [2]string{strings.TrimSpace(k), strings.TrimSpace(strings.TrimPrefix(v, ">"))})
	}
	return out
}

// checkPJSIP: the sections reference each other consistently, every gateway
// instance is identified and contacted at its compose address, the contexts exist in
// extensions.conf and the queues in queues.conf. Asterisk is not in Debian
// (bookworm), so it cannot load them here.
func checkPJSIP(t *testing.T, gws []gateway) {
	secs := iniSections(read(t, "configs/asterisk/pjsip.conf"))
	templates := map[string]iniSection{}
	typed := map[string]map[string]bool{} // type → names
	typeOf := func(s iniSection) string {
		if v := s.get("type"); v != "" {
			return v
		}
		return templates[s.template].get("type")
	}
	for _, s := range secs {
		if s.isTemplate {
			templates[s.name] = s
			continue
		}
		ty := typeOf(s)
		if ty == "" {
			t.Errorf("pjsip.conf [%s]: no type", s.name)
		}
		if typed[ty] == nil {
			typed[ty] = map[string]bool{}
		}
		typed[ty][s.name] = true
	}
	ext := iniSections(read(t, "configs/asterisk/extensions.conf"))
	contexts := map[string]bool{}
	for _, s := range ext {
		contexts[s.name] = true
	}
	queues := map[string]bool{}
	for _, s := range iniSections(read(t, "configs/asterisk/queues.conf")) {
		queues[s.name] = true
	}
	for _, s := range secs {
		if s.isTemplate {
			continue
		}
		get := func(k string) string {
			if v := s.get(k); v != "" {
				return v
			}
			return templates[s.template].get(k)
		}
		switch typeOf(s) {
		case "endpoint":
			for k, ty := range map[string]string{"transport": "transport", "aors": "aor", "auth": "auth", "outbound_auth": "auth"} {
				for _, ref := range strings.Split(get(k), ",") {
					if ref = strings.TrimSpace(ref); ref != "" && !typed[ty][ref] {
						t.Errorf("pjsip.conf [%s] %s=%s: no %s section of that name", s.name, k, ref, ty)
					}
				}
			}
			if c := get("context"); !contexts[c] {
				t.Errorf("pjsip.conf [%s] context=%s: not in extensions.conf", s.name, c)
			}
		case "identify":
			if !typed["endpoint"][s.get("endpoint")] {
				t.Errorf("pjsip.conf identify [%s]: no endpoint %s", s.name, s.get("endpoint"))
			}
			// Every instance: a call's BYE may come from another instance
			// than the one that set it up (docs/cluster.md).
			if s.name == "wagateway" {
				match := map[string]bool{}
				for _, m := range strings.Split(s.get("match"), ",") {
					match[strings.TrimSpace(m)] = true
				}
				for _, g := range gws {
					if !match[g.ip] {
						t.Errorf("pjsip.conf identifies the gateway by %s, which lacks %s's compose address %s", s.get("match"), g.name, g.ip)
					}
				}
			}
		case "aor":
			if s.name == "wagateway" {
				contacts := map[string]bool{}
				for _, c := range s.getAll("contact") {
					contacts[c] = true
				}
				for _, g := range gws {
					if want := "sip:" + g.ip + ":" + strconv.Itoa(listenPort(t, g.cfg.SIP.Listen)); !contacts[want] {
						t.Errorf("pjsip.conf aor wagateway contacts %v lack %s's %s", s.getAll("contact"), g.name, want)
					}
				}
			}
		}
	}
	for _, s := range ext {
		for _, kv := range s.kv {
			if kv[0] == "include" && !contexts[kv[1]] {
				t.Errorf("extensions.conf [%s] includes %s: no such context", s.name, kv[1])
			}
			for _, m := range regexp.MustCompile(`Queue\(([a-z0-9_-]+)`).FindAllStringSubmatch(kv[1], -1) {
				if !queues[m[1]] {
					t.Errorf("extensions.conf [%s]: Queue(%s) is not in queues.conf", s.name, m[1])
				}
			}
		}
	}
}

// The README's quick start names files that exist (docker/.env is the one
// it makes).
func TestReadmeQuickStart(t *testing.T) {
	readme := read(t, "README.md")
	i := strings.Index(readme, "## Quick start")
	if i < 0 {
		t.Fatal("README has no Quick start section")
	}
	sec := readme[i:]
	if j := strings.Index(sec[3:], "\n## "); j > 0 {
		sec = sec[:j+3]
	}
	var n int
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(sec, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			line, _, _ = strings.Cut(line, "#")
			for _, w := range strings.Fields(line) {
				if !strings.HasPrefix(w, "docker/") && !strings.HasPrefix(w, "configs/") {
					continue
				}
				n++
				if w == "docker/.env" {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, w)); err != nil {
					t.Errorf("README quick start: %s does not exist", w)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("README quick start names %d files", n)
	}
}

// requireProgram skips on a laptop without the program, and fails under CI
// (CI=true), where make test installs it.
func requireProgram(t *testing.T, name string) string {
	t.Helper()
	return testpeer.Require(t, name, name) // the Debian packages bear the programs' names
}

// With the real programs where Debian has them (make test installs both):
// docker-compose 1.29 renders each compose file after the quick start's
// "cp docker/env.example docker/.env" (no Docker daemon needed), refuses
// them without WAGATEWAY_HOSTNAME; caddy adapts the Caddyfile.
func TestComposeAndCaddyWithRealPrograms(t *testing.T) {
	dc := requireProgram(t, "docker-compose")
	dir := t.TempDir()
	for _, sub := range []string{"docker", "configs"} {
		if out, err := exec.Command("cp", "-r", filepath.Join(root, sub), dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	os.Remove(filepath.Join(dir, "docker", ".env"))
	env := read(t, "docker/env.example")
	if err := os.WriteFile(filepath.Join(dir, "docker", ".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cf := range loadCompose(t) {
		cmd := exec.Command(dc, "-f", cf.path, "config")
		cmd.Dir = dir
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("docker-compose -f %s config: %v\n%s", cf.path, err, out)
			continue
		}
		var rendered map[string]any
		if err := yaml.Unmarshal(out, &rendered); err != nil {
			t.Fatalf("rendered %s: %v", cf.path, err)
		}
		caddyEnv := rendered["services"].(map[string]any)["caddy"].(map[string]any)["environment"].(map[string]any)
		if caddyEnv["WAGATEWAY_HOSTNAME"] != "wa.example.com" {
			t.Errorf("%s: caddy's WAGATEWAY_HOSTNAME rendered as %v", cf.path, caddyEnv["WAGATEWAY_HOSTNAME"])
		}
	}
	noHost := strings.Replace(env, "WAGATEWAY_HOSTNAME=wa.example.com", "WAGATEWAY_HOSTNAME=", 1)
	os.WriteFile(filepath.Join(dir, "docker", ".env"), []byte(noHost), 0o600)
	cmd := exec.Command(dc, "-f", "docker/compose.yml", "config", "-q")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("WAGATEWAY_HOSTNAME")) {
		t.Errorf("compose without WAGATEWAY_HOSTNAME: err %v, %s", err, out)
	}
	// The cluster's instances each need their public address.
	noIP := regexp.MustCompile(`(?m)^GATEWAY_B_PUBLIC_IPS=.*$`).ReplaceAllString(env, "GATEWAY_B_PUBLIC_IPS=")
	os.WriteFile(filepath.Join(dir, "docker", ".env"), []byte(noIP), 0o600)
	cmd = exec.Command(dc, "-f", "docker/compose.cluster.yml", "config", "-q")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	if out, err := cmd.CombinedOutput(); err == nil || !bytes.Contains(out, []byte("GATEWAY_B_PUBLIC_IPS")) {
		t.Errorf("compose.cluster.yml without GATEWAY_B_PUBLIC_IPS: err %v, %s", err, out)
	}

	// caddy validates and adapts each compose file's Caddyfile, which
	// proxies to its gateways (several: round-robin, checked on their
	// health path).
	caddy := requireProgram(t, "caddy")
	for _, cf := range loadCompose(t) {
		caddyfile := hostFor(binds(cf, cf.services["caddy"]), "/etc/caddy/Caddyfile")
		gws := loadGateways(t, cf, envExample(t))
		caddyEnv := append(cleanEnv(), "WAGATEWAY_HOSTNAME=wa.example.com", "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		cmd := exec.Command(caddy, "validate", "--config", filepath.Join(root, caddyfile), "--adapter", "caddyfile")
		cmd.Env = caddyEnv
		if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("Valid configuration")) {
			t.Errorf("caddy validate %s: %v\n%s", caddyfile, err, out)
		}
		cmd = exec.Command(caddy, "adapt", "--config", filepath.Join(root, caddyfile), "--adapter", "caddyfile")
		cmd.Env = caddyEnv
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("caddy adapt %s: %v", caddyfile, err)
		}
		var cfg struct {
			Apps struct {
				HTTP struct {
					Servers map[string]struct {
						Listen []string `json:"listen"`
						Routes []struct {
							Match []struct {
								Host []string `json:"host"`
							} `json:"match"`
							Handle []struct {
								Routes []struct {
									Handle []struct {
										Handler      string `json:"handler"`
										HealthChecks struct {
											Active struct {
												URI          string `json:"uri"`
												ExpectStatus int    `json:"expect_status"`
											} `json:"active"`
										} `json:"health_checks"`
										LoadBalancing struct {
											SelectionPolicy struct {
												Policy string `json:"policy"`
											} `json:"selection_policy"`
										} `json:"load_balancing"`
										Upstreams []struct {
											Dial string `json:"dial"`
										} `json:"upstreams"`
									} `json:"handle"`
								} `json:"routes"`
							} `json:"handle"`
						} `json:"routes"`
					} `json:"servers"`
				} `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		srv, ok := cfg.Apps.HTTP.Servers["srv0"]
		if !ok || len(srv.Listen) != 1 || srv.Listen[0] != ":443" || len(srv.Routes) != 1 || len(srv.Routes[0].Match) != 1 ||
			strings.Join(srv.Routes[0].Match[0].Host, ",") != "wa.example.com" || len(srv.Routes[0].Handle) != 1 ||
			len(srv.Routes[0].Handle[0].Routes) != 1 || len(srv.Routes[0].Handle[0].Routes[0].Handle) != 1 {
			t.Errorf("caddy adapt %s: %s", caddyfile, out)
			continue
		}
		rp := srv.Routes[0].Handle[0].Routes[0].Handle[0]
		var dials, want []string
		for _, u := range rp.Upstreams {
			dials = append(dials, u.Dial)
		}
		for _, g := range gws {
			want = append(want, g.name+":"+strconv.Itoa(listenPort(t, g.cfg.HTTP.Listen)))
		}
		if rp.Handler != "reverse_proxy" || strings.Join(dials, " ") != strings.Join(want, " ") {
			t.Errorf("caddy adapt %s: %s to %v, want reverse_proxy to %v", caddyfile, rp.Handler, dials, want)
		}
		if len(gws) > 1 {
			if rp.LoadBalancing.SelectionPolicy.Policy != "round_robin" || rp.HealthChecks.Active.URI != gws[0].cfg.HTTP.HealthPath ||
				rp.HealthChecks.Active.ExpectStatus != 200 {
				t.Errorf("caddy adapt %s: policy %q, active health check %+v; want round_robin on %s, 200", caddyfile,
					rp.LoadBalancing.SelectionPolicy.Policy, rp.HealthChecks.Active, gws[0].cfg.HTTP.HealthPath)
			}
		}
	}
}

// cleanEnv is the environment without variables of the compose files, so
// only docker/.env sets them.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "WAGATEWAY_") || strings.HasPrefix(k, "COMPOSE_") || strings.HasSuffix(k, "_IMAGE") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

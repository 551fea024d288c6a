package gateway

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/wagateway/wagateway/sip"
)

// The deployment configs in docker/ load as they are.
func TestDockerConfigsLoad(t *testing.T) {
	for _, path := range []string{"../docker/gateway.yaml", "../docker/gateway-freeswitch.yaml"} {
		c, err := LoadConfig(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if c.Admin.Listen == "" || c.CallRecords.File == "" || c.SIP.PublicHost != "172.28.0.10" {
			t.Errorf("%s: %+v %+v %+v", path, c.Admin, c.CallRecords, c.SIP)
		}
	}
}

// Every metric the Grafana dashboard queries is one the gateway exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../configs/grafana/wagateway-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{"wagateway_active_calls": true} // a GaugeFunc on the registry
	m := newMetrics()
	m.watchSIP(func() sip.Stats { return sip.Stats{} }) // the SIP side's counters and RTP port gauges
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	descs := make(chan *prometheus.Desc, 256)
	for _, c := range append(m.all(), m.clusterGauges()...) {
		c.Describe(descs)
	}
	close(descs)
	fq := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range descs {
		if s := fq.FindStringSubmatch(d.String()); s != nil {
			exported[s[1]] = true
		}
	}
	name := regexp.MustCompile(`wagateway_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				queried++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				if !exported[base] {
					t.Errorf("panel %q queries %s, which the gateway does not export", p.Title, n)
				}
			}
		}
	}
	if queried < 20 {
		t.Errorf("only %d metric references in the dashboard", queried)
	}
}

// The PBX examples dial out as the compose configs' outbound routes expect:
// through the gateway's trunk (the endpoint, or the gateway in the profile
// on the trunk's port), with the route's biz_opaque_header, a number the
// gateway reads, and a ring time that outlasts the permission wait and the
// user's ring.
func TestExampleFilesDialOut(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	route := func(path string) (OutboundRouteConfig, TrunkConfig) {
		t.Helper()
		c, err := LoadConfig(path)
		if err != nil || len(c.Outbound.Routes) != 1 {
			t.Fatalf("%s: %v, outbound %+v", path, err, c.Outbound)
		}
		r := c.Outbound.Routes[0]
		for _, tr := range c.Trunks {
			if tr.Name == r.Trunk {
				return r, tr
			}
		}
		t.Fatalf("%s: no trunk %q", path, r.Trunk)
		return r, TrunkConfig{}
	}
	seconds := func(what, s string) time.Duration {
		t.Helper()
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%s: %q", what, s)
		}
		return time.Duration(n) * time.Second
	}

	// Asterisk: agents' context includes the dial-out one; the header goes
	// on the outgoing channel (pre-dial handler).
	ast, _ := route("../docker/gateway.yaml")
	ext := read("../configs/asterisk/extensions.conf")
	dial := regexp.MustCompile(`(?m)^exten => _9ZXXXXX\.,1,.*\n(?: same => n,.*\n)*? same => n,Dial\(PJSIP/\+\$\{EXTEN:1\}@wagateway,(\d+),b\(to-whatsapp-headers\^s\^1\(\$\{TICKET_ID\}\)\)\)`).FindStringSubmatch(ext)
	switch {
	case dial == nil:
		t.Error("extensions.conf: no Dial(PJSIP/+${EXTEN:1}@wagateway,…,b(to-whatsapp-headers…)) for _9ZXXXXX.")
	case seconds("Dial timeout", dial[1]) < ast.PermissionWait+ast.RingTimeout:
		t.Errorf("extensions.conf: Dial gives up after %ss, before permission_wait %v + ring_timeout %v", dial[1], ast.PermissionWait, ast.RingTimeout)
	}
	for _, want := range []string{"[agents]", "include => to-whatsapp", "[to-whatsapp-headers]",
		"Set(PJSIP_HEADER(add," + ast.BizOpaqueHeader + ")=${ARG1})"} {
		if !strings.Contains(ext, want) {
			t.Errorf("extensions.conf lacks %q", want)
		}
	}
	if pj := read("../configs/asterisk/pjsip.conf"); !strings.Contains(pj, "[wagateway]\ntype=endpoint") || !strings.Contains(pj, "bind=0.0.0.0:5060") {
		t.Error("pjsip.conf: the wagateway endpoint or the transport on 5060 (the trunk's port) is gone")
	}

	// FreeSWITCH: the gateway is in the profile whose port the trunk names.
	fs, fsTrunk := route("../docker/gateway-freeswitch.yaml")
	profile := read("../configs/freeswitch/sip_profiles/wagateway.xml")
	port := regexp.MustCompile(`name="sip-port" value="(\d+)"`).FindStringSubmatch(profile)
	if port == nil || !strings.HasSuffix(fsTrunk.Address, ":"+port[1]) || !strings.Contains(profile, `<gateway name="wagateway">`) ||
		!strings.Contains(profile, `name="proxy" value="172.28.0.10:5060"`) {
		t.Errorf("sip_profiles/wagateway.xml: the gateway wagateway must be in the profile on the trunk's port (%s, %v)", fsTrunk.Address, port)
	}
	dp := read("../configs/freeswitch/dialplan/default/00_wagateway.xml")
	for _, want := range []string{`data="sip_h_` + fs.BizOpaqueHeader + `=${ticket_id}"`, `data="sofia/gateway/wagateway/+$1"`} {
		if !strings.Contains(dp, want) {
			t.Errorf("dialplan/default/00_wagateway.xml lacks %s", want)
		}
	}
	if ct := regexp.MustCompile(`data="call_timeout=(\d+)"`).FindStringSubmatch(dp); ct == nil ||
		seconds("call_timeout", ct[1]) < fs.PermissionWait+fs.RingTimeout {
		t.Errorf("dialplan/default/00_wagateway.xml: call_timeout %v must outlast permission_wait %v + ring_timeout %v", ct, fs.PermissionWait, fs.RingTimeout)
	}
	expr := regexp.MustCompile(`expression="(\^9[^"]*)"`).FindStringSubmatch(dp)
	if expr == nil {
		t.Fatal("dialplan/default/00_wagateway.xml: no destination_number expression")
	}
	re := regexp.MustCompile(expr[1])
	for dialled, ok := range map[string]bool{"914085551234": true, "9447700900123": true, "91234567": true, "9196": false, "90441234567": false, "9123456789012345": true, "91234567890123456": false} {
		m := re.FindStringSubmatch(dialled)
		if (m != nil) != ok {
			t.Errorf("%s: %q matched %v, want %v", expr[1], dialled, m != nil, ok)
			continue
		}
		if m != nil {
			if u, err := parseDialled("+" + m[1]); err != nil || u.waID != m[1] {
				t.Errorf("%s: the gateway does not read +%s: %v", expr[1], m[1], err)
			}
		}
	}
	if !strings.Contains(read("../docker/compose.freeswitch.yml"), "../configs/freeswitch/dialplan/default/00_wagateway.xml:/etc/freeswitch/dialplan/default/00_wagateway.xml:ro") {
		t.Error("compose.freeswitch.yml does not mount dialplan/default/00_wagateway.xml")
	}
}

// The shipped alert rules parse, and every wagateway_ metric they name is
// one the gateway exports.
func TestAlertRulesNameRealMetrics(t *testing.T) {
	raw, err := os.ReadFile("../configs/prometheus/wagateway-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	// Every family the gateway registers, with a sample of each vector so
	// it shows in Gather (as it does once used), plus active_calls.
	m := newMetrics()
	m.watchSIP(func() sip.Stats { return sip.Stats{} })
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{"wagateway_active_calls": true}
	for _, f := range fams {
		exported[f.GetName()] = true
	}
	for _, c := range append(m.all(), m.clusterGauges()...) {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if name := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String()); name != nil {
				exported[name[1]] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, name := range regexp.MustCompile(`wagateway_[a-z_]+`).FindAllString(r.Expr, -1) {
				if !exported[name] {
					t.Errorf("alert %s names %s, which the gateway does not export", r.Alert, name)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("%d alert rules", n)
	}
}

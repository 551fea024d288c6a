package gateway

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
	descs := make(chan *prometheus.Desc, 256)
	for _, c := range m.all() {
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

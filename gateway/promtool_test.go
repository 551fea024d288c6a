package gateway

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagateway/wagateway/internal/testpeer"
	"github.com/wagateway/wagateway/sip"
)

// promtool is Prometheus's checker (Debian: package prometheus). Tests
// that need it skip without it, except in CI (CI=true), where the Makefile
// installs it.
func promtool(t *testing.T) string {
	t.Helper()
	return testpeer.Require(t, "promtool", "prometheus")
}

// TestMetricsPromtoolCheck: a scrape of every metric family, each vector
// with a sample, passes `promtool check metrics` (names, units, help).
func TestMetricsPromtoolCheck(t *testing.T) {
	bin := promtool(t)
	m := newMetrics()
	m.watchSIP(func() sip.Stats { return sip.Stats{RTPPortsInUse: 3, RTPPorts: 500} })
	m.knownTrunk("pbx")
	m.calls.WithLabelValues(DirectionBusinessInitiated, OutcomeBridged, "pbx").Inc()
	m.trunkUp.WithLabelValues("pbx").Set(1)
	m.trunkInviteFail.WithLabelValues("pbx").Set(0)
	m.trunkAuthFail.WithLabelValues("pbx").Set(0)
	m.trunkPingRTT.WithLabelValues("pbx").Set(0.01)
	m.sipFinal.WithLabelValues("200").Inc()
	m.pbxReasons.WithLabelValues("Q.850", "16").Inc()
	m.graphRequest("accept", "ok", 0)
	m.jitter.WithLabelValues(dirWhatsAppToSIP).Observe(0.002)
	m.mos.Observe(4.1)
	m.setupLatency.Observe(1)
	m.callDuration.Observe(30)
	m.activeByCodec.WithLabelValues("opus-pcmu").Set(1)
	m.codecPaths.WithLabelValues("opus-pcmu").Inc()
	m.records.WithLabelValues("file", "ok").Inc()
	m.webhooks.WithLabelValues("accepted").Inc()
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	scrape := rec.Body.Bytes()
	for _, want := range []string{`wagateway_calls_total{direction="user_initiated",outcome="bridged",trunk="pbx"} 0`,
		"wagateway_rtp_ports_in_use 3", "wagateway_rtp_ports 500", `wagateway_trunk_invite_failing{trunk="pbx"} 0`} {
		if !bytes.Contains(scrape, []byte(want+"\n")) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestAlertRulesPromtoolCheck: the shipped alert rules pass `promtool
// check rules` (PromQL syntax, templates).
func TestAlertRulesPromtoolCheck(t *testing.T) {
	bin := promtool(t)
	out, err := exec.Command(bin, "check", "rules", "../configs/prometheus/wagateway-alerts.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestMetricsDocumented: docs/metrics.md lists every wagateway_ metric the
// gateway exports.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics()
	m.watchSIP(func() sip.Stats { return sip.Stats{} })
	names := map[string]bool{"wagateway_active_calls": true}
	for _, c := range append(m.all(), m.clusterGauges()...) {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if s := fqName.FindStringSubmatch(d.String()); s != nil {
				names[s[1]] = true
			}
		}
	}
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for n := range names {
		if strings.HasPrefix(n, "wagateway_") && !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("docs/metrics.md does not list %s", n)
		}
	}
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/internal/redistest"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// clusterRig is a real cluster on loopback: redis-server, gateway
// instances as processes (the test binary re-executed: one can be killed
// with SIGKILL), HAProxy spreading Meta's webhooks over them round-robin
// with a health check on http.health_path, and the simulator as Meta.
type clusterRig struct {
	t      *testing.T
	redis  *redistest.Server
	sim    *wasim.Sim
	nodes  []*rigNode
	lbPort int
	lease  time.Duration
}

// rigNode is one gateway instance.
type rigNode struct {
	name    string
	cfg     *gateway.Config
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	logPath string
	ops     string // http://127.0.0.1:port of /metrics and /readyz
	webhook int    // webhook listener port
	records string // call records file
}

type clusterRigOptions struct {
	Nodes  int
	Lease  time.Duration
	Config func(i int, c *gateway.Config) // last edit of each instance's config
	Sim    func(*wasim.Config)
}

var clusterSecrets = gateway.Secrets{AccessToken: "test-access-token", AppSecret: "test-app-secret", VerifyToken: "test-verify",
	ClusterSecret: "cluster-secret-of-the-tests-0123456789abcdef"}

func newClusterRig(t *testing.T, o clusterRigOptions) *clusterRig {
	t.Helper()
	requirePeer(t, "haproxy")
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Lease == 0 {
		o.Lease = 2 * time.Second
		// The default lease can be measured too: WAGATEWAY_TEST_CLUSTER_LEASE=10s.
		if d, err := time.ParseDuration(os.Getenv("WAGATEWAY_TEST_CLUSTER_LEASE")); err == nil && d > 0 {
			o.Lease = d
		}
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	r := &clusterRig{t: t, redis: redistest.Start(t), lease: o.Lease}
	r.lbPort = freePort(t, "tcp")
	simCfg := wasim.Config{GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:" + strconv.Itoa(r.lbPort) + "/webhook",
		AppSecret: clusterSecrets.AppSecret, AccessToken: clusterSecrets.AccessToken, PhoneNumberID: testPhoneNumberID,
		MediaIP: "127.0.0.1", Logger: log.Named("wasim")}
	if o.Sim != nil {
		o.Sim(&simCfg)
	}
	sim, err := wasim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	r.sim = sim
	dir := t.TempDir()
	for i := range o.Nodes {
		// A free port can be taken by another process (an outgoing
		// connection's ephemeral port) before the instance binds it: then
		// the instance starts again on other ports.
		for try := 1; ; try++ {
			n := r.startNode(t, dir, i, o)
			err := n.ready(15 * time.Second)
			if err == nil {
				r.nodes = append(r.nodes, n)
				break
			}
			if try == 3 || !strings.Contains(readFile(n.logPath), "address already in use") {
				n.dumpLog(t)
				t.Fatal(err)
			}
			t.Logf("%s: %v; starting it again on other ports", n.name, err)
		}
	}
	r.startHAProxy(t, dir)
	// Each instance has seen the others (whom it tells while Redis is gone).
	waitFor(t, 3*r.lease, "the instances to see each other", func() bool {
		return r.sum(t, "wagateway_cluster_instances") == float64(len(r.nodes)*len(r.nodes))
	})
	return r
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	p, err := wasim.FreeLoopbackPort(network)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startNode starts instance i: its own ports (webhook, WebRTC, SIP, RTP
// range, below the ephemeral ports free ports come from; metrics, internal
// channel), one Redis, one secret.
func (r *clusterRig) startNode(t *testing.T, dir string, i int, o clusterRigOptions) *rigNode {
	t.Helper()
	n := &rigNode{name: fmt.Sprintf("gw%d", i+1), webhook: freePort(t, "tcp"), done: make(chan struct{})}
	cfg := gateway.LoopbackConfig(gateway.LoopbackOptions{HTTPPort: n.webhook, UDPPort: freePort(t, "udp"),
		GraphURL: r.sim.GraphURL(), PBXAddr: "127.0.0.1:9", PhoneNumberID: testPhoneNumberID,
		RTPPortMin: 21000 + 300*i, RTPPortMax: 21000 + 300*i + 299})
	cfg.Log = gateway.LogConfig{Level: "info", Format: "json"}
	cfg.HTTP.HealthPath = "/healthz"
	cfg.SIP.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t, "udp"))
	opsPort := freePort(t, "tcp")
	cfg.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(opsPort)
	n.ops = "http://127.0.0.1:" + strconv.Itoa(opsPort)
	n.records = filepath.Join(dir, n.name+"-records.jsonl")
	cfg.CallRecords.File = n.records
	cfg.DrainTimeout = 60 * time.Second
	clPort := freePort(t, "tcp")
	cfg.Cluster = gateway.ClusterConfig{
		Redis:     gateway.ClusterRedisConfig{Addresses: []string{r.redis.Addr()}},
		NodeID:    n.name,
		Listen:    "127.0.0.1:" + strconv.Itoa(clPort),
		Advertise: "http://127.0.0.1:" + strconv.Itoa(clPort),
		Secret:    gateway.SecretRef{Env: "WAGATEWAY_CLUSTER_SECRET"},
		Lease:     o.Lease,
	}
	if o.Config != nil {
		o.Config(i, cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n.cfg = cfg
	secrets := clusterSecrets
	raw, err := json.Marshal(gateway.ClusterChild{Config: cfg, Secrets: &secrets})
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, n.name+".json")
	if err := os.WriteFile(spec, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	n.logPath = filepath.Join(dir, n.name+".log")
	logFile, err := os.Create(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(os.Args[0], "-test.run=^$")
	n.cmd.Env = append(os.Environ(), gateway.ClusterChildEnv+"="+spec)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.exitErr = n.cmd.Wait()
		logFile.Close()
		close(n.done)
	}()
	t.Cleanup(func() {
		stopAt := time.Now()
		_ = n.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-n.done:
		case <-time.After(20 * time.Second):
			t.Errorf("%s still running 20 s after SIGINT: killed", n.name)
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		t.Logf("%s stopped in %v", n.name, time.Since(stopAt).Round(time.Millisecond))
		if t.Failed() {
			n.dumpLog(t)
		}
	})
	return n
}

// dumpLog prints the instance's last log lines.
func (n *rigNode) dumpLog(t *testing.T) {
	b, _ := os.ReadFile(n.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("--- %s log (last %d lines) ---\n%s", n.name, len(lines), strings.Join(lines, "\n"))
}

// ready waits until the instance answers /readyz with 200.
func (n *rigNode) ready(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case <-n.done:
			return fmt.Errorf("%s exited at start: %v", n.name, n.exitErr)
		default:
		}
		if code, _, err := get(n.ops + "/readyz"); err == nil && code == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v", n.name, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metrics scrapes the instance ("" once it is gone).
func (n *rigNode) metrics() metricsText {
	_, body, err := get(n.ops + "/metrics")
	if err != nil {
		return ""
	}
	return metricsText(body)
}

// sum adds the samples of every series starting with prefix over the
// instances still up.
func (r *clusterRig) sum(t *testing.T, prefix string) float64 {
	t.Helper()
	var total float64
	for _, n := range r.nodes {
		total += n.metrics().sumPrefix(t, prefix)
	}
	return total
}

func (m metricsText) sumPrefix(t *testing.T, prefix string) float64 {
	t.Helper()
	var total float64
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			total += v
		}
	}
	return total
}

var rigHTTP = http.Client{Timeout: 3 * time.Second}

func get(url string) (int, string, error) {
	res, err := rigHTTP.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return res.StatusCode, b.String(), nil
}

// startHAProxy spreads the webhooks round-robin over the instances'
// webhook listeners, taking out one whose health path answers 503
// (draining) or nothing (dead) within about a second.
func (r *clusterRig) startHAProxy(t *testing.T, dir string) {
	t.Helper()
	var servers strings.Builder
	for _, n := range r.nodes {
		fmt.Fprintf(&servers, "    server %s 127.0.0.1:%d check inter 300ms fall 2 rise 2\n", n.name, n.webhook)
	}
	cfg := fmt.Sprintf(`global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 2
    option redispatch
frontend webhooks
    bind 127.0.0.1:%d
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
%s`, r.lbPort, servers.String())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := requirePeer(t, "haproxy")
	logPath := filepath.Join(dir, "haproxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(r.lbPort), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("haproxy did not listen: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call places a user-initiated call through the load balancer.
func (r *clusterRig) call(t *testing.T, o wasim.CallOptions) *wasim.Call {
	t.Helper()
	if o.From == "" {
		o.From, o.FromUserID = "15550001234", "US.1349120865530274"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := r.sim.PlaceCall(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// liveCalls places n calls from numbers prefix+"1000"… whose users stay
// on the line, and waits until every one is accepted.
func (r *clusterRig) liveCalls(t *testing.T, n int, prefix string) []*wasim.Call {
	t.Helper()
	var calls []*wasim.Call
	for i := range n {
		calls = append(calls, r.call(t, wasim.CallOptions{ToneHz: 1000, From: prefix + strconv.Itoa(1000+i)}))
	}
	waitFor(t, 30*time.Second, "every call accepted", func() bool {
		for _, c := range calls {
			if c.State() != wasim.StateAccepted {
				return false
			}
		}
		return true
	})
	return calls
}

// records reads every instance's call records.
func (r *clusterRig) records(t *testing.T) []gateway.CallRecord {
	t.Helper()
	var out []gateway.CallRecord
	for _, n := range r.nodes {
		if _, err := os.Stat(n.records); err == nil {
			out = append(out, readRecords(t, n.records)...)
		}
	}
	return out
}

// reports waits for every call's report.
func reports(t *testing.T, calls []*wasim.Call, within time.Duration) []*wasim.Report {
	t.Helper()
	out := make([]*wasim.Report, len(calls))
	var wg sync.WaitGroup
	errs := make(chan error, len(calls))
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			r, err := c.Wait(ctx)
			if err != nil {
				errs <- fmt.Errorf("call %s did not end within %v: %w", c.ID(), within, err)
				return
			}
			out[i] = r
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

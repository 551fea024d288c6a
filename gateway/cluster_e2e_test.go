package gateway_test

import (
	"context"
	"math"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/internal/redistest"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// Two PBX trunks: calls whose cta_payload is "pbx-hangs-up" go to a PBX that
// hangs up after 3 s (the gateway must terminate), the others to one that
// echoes until the gateway's BYE (the user hangs up: Meta's terminate
// webhook must reach the call's owner, wherever it lands).
func twoTrunks(echo, hangup string) func(int, *gateway.Config) {
	return func(_ int, c *gateway.Config) {
		c.Trunks = []gateway.TrunkConfig{
			{Name: "echo", Address: echo, OptionsPing: new(bool)},
			{Name: "hangup", Address: hangup, OptionsPing: new(bool)},
		}
		c.Numbers[0].Routes = []gateway.RouteConfig{
			{Name: "hangup", CTAPayload: "pbx-hangs-up", Trunk: "hangup", Destination: "sip:agents@" + hangup},
			{Name: "echo", Trunk: "echo", Destination: "sip:agents@" + echo},
		}
	}
}

func oneTrunk(addr string) func(int, *gateway.Config) {
	return func(_ int, c *gateway.Config) {
		c.Trunks[0].Address = addr
		c.Numbers[0].Routes[0].Destination = "sip:agents@" + addr
	}
}

// callOps sums, over the instances, the Redis requests a call makes
// (the others are leases and reaper looks).
func (r *clusterRig) callOps(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, op := range []string{"claim", "admit", "save_info", "end", "release", "route", "place"} {
		n += r.sum(t, `wagateway_cluster_redis_requests_total{op="`+op+`"}`)
	}
	return n
}

// Thirty calls through three instances behind HAProxy, every webhook
// delivered three times in mixed order: each call is taken by exactly one
// instance (one INVITE per call), its terminate reaches its owner wherever
// it lands, and every call ends cleanly on both sides with exactly the
// Graph actions it needs.
func TestClusterCallsReachTheirOwner(t *testing.T) {
	const waves, perWave = 3, 10
	echo := startSipp(t, "pbx_answer_echo_via.xml", waves*perWave/2, 180*time.Second)
	hangup := startSipp(t, "pbx_answer_hangup.xml", waves*perWave/2, 180*time.Second)
	rig := newClusterRig(t, clusterRigOptions{Config: twoTrunks(echo.Addr, hangup.Addr),
		Sim: func(c *wasim.Config) { c.WebhookCopies, c.WebhookShuffle = 3, true }})

	ops0, bg0, start := rig.callOps(t), rig.sum(t, "wagateway_cluster_redis_requests_total"), time.Now()

	var all []*wasim.Report
	for w := range waves {
		var calls []*wasim.Call
		for i := range perWave {
			o := wasim.CallOptions{ToneHz: 1000, From: "1555000" + strconv.Itoa(1000+w*perWave+i)}
			if i%2 == 0 {
				o.Duration = 3 * time.Second // the user hangs up
			} else {
				o.CTAPayload = "pbx-hangs-up"
			}
			calls = append(calls, rig.call(t, o))
		}
		all = append(all, reports(t, calls, 60*time.Second)...)
	}
	ops := rig.callOps(t) - ops0
	all0 := rig.sum(t, "wagateway_cluster_redis_requests_total") - bg0
	elapsed := time.Since(start)

	for i, r := range all {
		want := "pre_accept,accept"
		if i%2 == 1 {
			want += ",terminate" // the PBX hung up: exactly one terminate
		}
		if got := actions(r); got != want {
			t.Errorf("call %d (%s): graph actions %q, want %q", i, r.CallID, got, want)
		}
		if len(r.Violations) > 0 {
			t.Errorf("call %d: Meta rules broken: %v", i, r.Violations)
		}
		if math.Abs(r.ReceivedFreqHz-1000) > 20 {
			t.Errorf("call %d: echoed tone %.0f Hz, want 1000", i, r.ReceivedFreqHz)
		}
	}
	for _, pbx := range []*sipp{echo, hangup} {
		if err := pbx.wait(t, 20*time.Second); err != nil {
			t.Fatal(err) // every call answered once, and every BYE received
		}
		if n := pbx.invites(); n != waves*perWave/2 {
			t.Errorf("the PBX got %d INVITEs, want %d (one per call)", n, waves*perWave/2)
		}
	}
	waitFor(t, 10*time.Second, "no active call", func() bool { return rig.sum(t, "wagateway_active_calls") == 0 })
	took := map[string]float64{}
	for _, n := range rig.nodes {
		took[n.name] = n.metrics().sumPrefix(t, `wagateway_calls_total{direction="user_initiated",outcome="bridged"`)
	}
	if got := rig.sum(t, `wagateway_calls_total{direction="user_initiated",outcome="bridged"`); got != waves*perWave {
		t.Errorf("%v bridged calls recorded over the instances (%v), want %d", got, took, waves*perWave)
	}
	for name, n := range took {
		if n == 0 {
			t.Errorf("instance %s took no call (%v): the load balancer does not spread", name, took)
		}
	}
	sent, received := rig.sum(t, `wagateway_cluster_webhooks_total{result="sent"}`), rig.sum(t, `wagateway_cluster_webhooks_total{result="received"}`)
	if sent == 0 || received == 0 {
		t.Errorf("webhooks passed on: %v sent, %v received; want some (terminates land on any instance)", sent, received)
	}
	if f := rig.sum(t, `wagateway_cluster_webhooks_total{result="failed"}`); f > 0 {
		t.Errorf("%v webhooks could not be passed on", f)
	}
	fwdSum, fwdN := rig.sum(t, "wagateway_cluster_forward_seconds_sum"), rig.sum(t, "wagateway_cluster_forward_seconds_count")
	if fwdN > 0 {
		t.Logf("forwarded webhooks: %v, mean %.2f ms from the Redis request saying who owns the call to the owner's 204", fwdN, 1000*fwdSum/fwdN)
	}
	t.Logf("Redis: %.0f requests for %d calls (3 copies of each webhook): %.1f per call; %.0f more for leases and reaper looks in %v (%.1f/s for %d instances)",
		ops, waves*perWave, ops/float64(waves*perWave), all0-ops, elapsed.Round(time.Millisecond), (all0-ops)/elapsed.Seconds(), len(rig.nodes))
	t.Logf("calls taken per instance: %v", took)
}

// One instance killed with SIGKILL in mid-call: another instance ends its
// calls (Graph terminate, BYE to the PBX from the saved dialog) within the
// lease bound; the other instances' calls go on untouched; new calls work.
func TestClusterInstanceKilled(t *testing.T) {
	const live, later = 9, 3
	pbx := startSipp(t, "pbx_answer_echo_via.xml", live+later, 180*time.Second)
	rig := newClusterRig(t, clusterRigOptions{Config: oneTrunk(pbx.Addr)})
	calls := rig.liveCalls(t, live, "1555100")
	victim, most := rig.nodes[0], -1.0
	for _, n := range rig.nodes {
		if a := n.metrics().value(t, "wagateway_active_calls"); a > most {
			victim, most = n, a
		}
	}
	if most < 1 {
		t.Fatalf("no instance has a call")
	}
	byes0 := strings.Count(readFile(pbx.msgTrace), "\nBYE sip:")
	killed := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	t.Logf("killed %s with %v calls", victim.name, most)

	// Its calls end: Meta gets terminate, the PBX a BYE.
	bound := 2*rig.lease + 5*time.Second
	var ended []*wasim.Report
	var endedAt []time.Duration
	deadline := time.Now().Add(bound)
	for len(ended) < int(most) && time.Now().Before(deadline) {
		for _, c := range calls {
			select {
			case <-c.Done():
				if r, _ := c.Wait(context.Background()); r != nil && !containsReport(ended, r) {
					ended = append(ended, r)
					endedAt = append(endedAt, r.EndAt.Sub(killed))
				}
			default:
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(ended) != int(most) {
		t.Fatalf("%d of the killed instance's %v calls ended within %v", len(ended), most, bound)
	}
	var byeAt time.Duration
	waitFor(t, bound, "the PBX's BYEs", func() bool {
		byeAt = time.Since(killed)
		return strings.Count(readFile(pbx.msgTrace), "\nBYE sip:")-byes0 >= int(most)
	})
	for i, r := range ended {
		if got := actions(r); got != "pre_accept,accept,terminate" {
			t.Errorf("orphan %s: graph actions %q, want pre_accept,accept,terminate", r.CallID, got)
		}
		t.Logf("orphan %s ended %v after the kill (lease %v)", r.CallID, endedAt[i].Round(time.Millisecond), rig.lease)
	}
	t.Logf("the PBX had every orphan's BYE %v after the kill", byeAt.Round(time.Millisecond))
	if bye := pbx.request("BYE"); !strings.Contains(bye, "cause=41") {
		t.Errorf("the orphan's BYE has no Q.850 cause 41:\n%s", bye)
	}

	// The survivors' calls were untouched.
	var survivors []*wasim.Call
	for _, c := range calls {
		if c.State() == wasim.StateAccepted {
			survivors = append(survivors, c)
		}
	}
	if len(survivors) != live-int(most) {
		t.Fatalf("%d calls still up, want %d", len(survivors), live-int(most))
	}
	// New calls work.
	var fresh []*wasim.Call
	for i := range later {
		fresh = append(fresh, rig.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 2 * time.Second, From: "1555200" + strconv.Itoa(1000+i)}))
	}
	for _, r := range reports(t, fresh, 40*time.Second) {
		if got := actions(r); got != "pre_accept,accept" || len(r.Violations) > 0 {
			t.Errorf("new call after the kill: actions %q, violations %v", got, r.Violations)
		}
	}
	for _, c := range survivors {
		if err := c.Hangup(); err != nil {
			t.Error(err)
		}
	}
	for _, r := range reports(t, survivors, 30*time.Second) {
		if got := actions(r); got != "pre_accept,accept" || len(r.Violations) > 0 {
			t.Errorf("survivor %s: actions %q, violations %v", r.CallID, got, r.Violations)
		}
		if r.LongestSilenceGap > 500*time.Millisecond {
			t.Errorf("survivor %s: a %v gap in its audio", r.CallID, r.LongestSilenceGap)
		}
	}
	if err := pbx.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, rec := range rig.records(t) {
		if rec.Outcome == gateway.OutcomeInstanceLost {
			lost++
			if rec.TerminateFailed || rec.SIPCallID == "" {
				t.Errorf("record of an orphan: %+v", rec)
			}
		}
	}
	if lost != int(most) {
		t.Errorf("%d instance_lost records, want %v", lost, most)
	}
}

// A draining instance takes no new call (the load balancer's health check
// takes it out) and finishes its own, then leaves the cluster: nothing to
// reap.
func TestClusterDrainingInstance(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo_via.xml", 9, 120*time.Second)
	rig := newClusterRig(t, clusterRigOptions{Config: oneTrunk(pbx.Addr)})
	calls := rig.liveCalls(t, 3, "1555300")
	var drainer *rigNode
	var own float64
	for _, n := range rig.nodes {
		if a := n.metrics().value(t, "wagateway_active_calls"); a > 0 {
			drainer, own = n, a
			break
		}
	}
	if drainer == nil {
		t.Fatal("no instance has a call")
	}
	if err := drainer.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the drainer's health path 503", func() bool {
		code, _, _ := get("http://127.0.0.1:" + strconv.Itoa(drainer.webhook) + "/healthz")
		return code == 503
	})
	time.Sleep(time.Second) // HAProxy: two failed checks 300 ms apart
	var fresh []*wasim.Call
	for i := range 6 {
		fresh = append(fresh, rig.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 2 * time.Second, From: "1555400" + strconv.Itoa(1000+i)}))
	}
	for _, r := range reports(t, fresh, 40*time.Second) {
		if got := actions(r); got != "pre_accept,accept" {
			t.Errorf("new call while an instance drains: actions %q", got)
		}
	}
	m := drainer.metrics()
	if a := m.value(t, "wagateway_active_calls"); a != own {
		t.Errorf("the draining instance has %v calls, want its own %v and no new one", a, own)
	}
	if d := m.sumPrefix(t, `wagateway_calls_total{direction="user_initiated",outcome="draining"`); d != 0 {
		t.Errorf("the draining instance refused %v calls: the load balancer still sent it connects", d)
	}
	for _, c := range calls {
		_ = c.Hangup()
	}
	for _, r := range reports(t, calls, 30*time.Second) {
		if got := actions(r); got != "pre_accept,accept" {
			t.Errorf("call of the drain: actions %q", got)
		}
	}
	select {
	case <-drainer.done:
		if drainer.exitErr != nil {
			t.Errorf("the drained instance exited with %v", drainer.exitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the drained instance did not exit once its calls ended")
	}
	time.Sleep(2 * rig.lease) // a reaper would have looked by now
	for _, rec := range rig.records(t) {
		if rec.Outcome == gateway.OutcomeInstanceLost {
			t.Errorf("a drained instance's call was reaped: %+v", rec)
		}
	}
	if err := pbx.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Redis stopped mid-test: calls in progress finish normally; new calls
// are refused (redis_down: refuse, the default); once Redis is back the
// instances register again and take calls.
func TestClusterRedisStopped(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo_via.xml", 4, 120*time.Second)
	rig := newClusterRig(t, clusterRigOptions{Config: oneTrunk(pbx.Addr)})
	calls := rig.liveCalls(t, 3, "1555500")
	t0 := time.Now()
	rig.redis.Stop()
	waitFor(t, 3*rig.lease, "every instance to see Redis gone", func() bool {
		return rig.sum(t, "wagateway_cluster_redis_up") == 0
	})
	for _, n := range rig.nodes {
		code, body, _ := get(n.ops + "/readyz")
		if code != 200 || !strings.Contains(body, `"redis":"unreachable"`) {
			t.Errorf("%s /readyz with Redis gone: %d %s", n.name, code, body)
		}
	}
	refused := []*wasim.Call{rig.call(t, wasim.CallOptions{ToneHz: 1000, From: "15556001000"}),
		rig.call(t, wasim.CallOptions{ToneHz: 1000, From: "15556001001"})}
	for _, r := range reports(t, refused, 30*time.Second) {
		if r.Outcome != wasim.OutcomeRejected || actions(r) != "reject" {
			t.Errorf("new call with Redis gone: outcome %s, actions %q; want rejected", r.Outcome, actions(r))
		}
	}
	t.Logf("refused after %v", time.Since(t0))
	if n := rig.sum(t, `wagateway_calls_refused_total{why="cluster_unavailable"}`); n != 2 {
		t.Errorf("%v calls refused as cluster_unavailable, want 2", n)
	}
	for _, c := range calls {
		_ = c.Hangup()
	}
	for _, r := range reports(t, calls, 30*time.Second) {
		if got := actions(r); got != "pre_accept,accept" || len(r.Violations) > 0 {
			t.Errorf("call in progress as Redis went: actions %q, violations %v", got, r.Violations)
		}
	}
	t.Logf("calls in progress ended after %v", time.Since(t0))
	waitFor(t, 10*time.Second, "no active call", func() bool { return rig.sum(t, "wagateway_active_calls") == 0 })
	byCaller := 0
	for _, rec := range rig.records(t) {
		if rec.Outcome == gateway.OutcomeBridged && rec.HangupBy == "caller" {
			byCaller++
		} else if rec.Outcome != gateway.OutcomeClusterDown {
			t.Logf("record: %s %s by %s: %s", rec.CallID, rec.Outcome, rec.HangupBy, rec.Reason)
		}
	}
	if byCaller != len(calls) {
		t.Errorf("%d calls in progress recorded as hung up by the caller, want %d: the terminate did not reach its owner without Redis", byCaller, len(calls))
	}
	rig.redis.Restart()
	waitFor(t, 3*rig.lease, "every instance back in the cluster", func() bool {
		return rig.sum(t, "wagateway_cluster_redis_up") == float64(len(rig.nodes))
	})
	t.Logf("rejoined after %v", time.Since(t0))
	r := reports(t, []*wasim.Call{rig.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 2 * time.Second, From: "15556002000"})}, 30*time.Second)[0]
	t.Logf("new call done after %v", time.Since(t0))
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("call once Redis is back: actions %q", got)
	}
	if err := pbx.wait(t, 20*time.Second); err != nil {
		t.Fatal(err) // the three calls in progress got their BYE, and the new one
	}
}

// numbers[].max_calls holds over the cluster: with a limit of 2, four
// calls spread over three instances (each would take two alone) give two
// calls and two rejects.
func TestClusterNumberLimit(t *testing.T) {
	pbx := startSipp(t, "pbx_answer_echo_via.xml", 2, 120*time.Second)
	rig := newClusterRig(t, clusterRigOptions{Config: func(i int, c *gateway.Config) {
		oneTrunk(pbx.Addr)(i, c)
		c.Numbers[0].MaxCalls = 2
	}})
	var calls []*wasim.Call
	for i := range 4 {
		c := rig.call(t, wasim.CallOptions{ToneHz: 1000, From: "1555700" + strconv.Itoa(1000+i)})
		waitFor(t, 20*time.Second, "the call accepted or rejected", func() bool {
			s := c.State()
			return s == wasim.StateAccepted || s == wasim.StateEnded
		})
		calls = append(calls, c)
	}
	accepted := 0
	var up []*wasim.Call
	for _, c := range calls {
		if c.State() == wasim.StateAccepted {
			accepted++
			up = append(up, c)
		}
	}
	if accepted != 2 {
		t.Errorf("%d calls accepted with a cluster-wide limit of 2", accepted)
	}
	if n := rig.sum(t, `wagateway_calls_refused_total{why="number_limit"}`); n != 2 {
		t.Errorf("%v calls refused for the number's limit, want 2", n)
	}
	for _, n := range rig.nodes {
		t.Logf("%s: %v calls up, %v refused", n.name, n.metrics().value(t, "wagateway_active_calls"),
			n.metrics().value(t, `wagateway_calls_refused_total{why="number_limit"}`))
	}
	for _, c := range up {
		_ = c.Hangup()
	}
	reports(t, calls, 30*time.Second)
	if err := pbx.wait(t, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func containsReport(rs []*wasim.Report, r *wasim.Report) bool {
	for _, x := range rs {
		if x.CallID == r.CallID {
			return true
		}
	}
	return false
}

// Agents dial WhatsApp users through each instance while Meta's webhooks
// of those calls (RINGING, the answer, ACCEPTED, the terminate) are
// delivered three times in mixed order to any instance: each reaches the
// call's owner, including those that come before Graph connect returned
// the call id (held in Redis for it).
func TestClusterAgentCalls(t *testing.T) {
	ports := []int{agentPort(t), agentPort(t), agentPort(t)}
	rig := newClusterRig(t, clusterRigOptions{
		Config: func(i int, c *gateway.Config) {
			oneTrunk("127.0.0.1:"+strconv.Itoa(ports[i]))(i, c)
			c.Outbound.Routes = []gateway.OutboundRouteConfig{{Trunk: "pbx", PhoneNumberID: testPhoneNumberID}}
		},
		Sim: func(c *wasim.Config) { c.WebhookCopies, c.WebhookShuffle = 3, true },
	})
	users := []string{"14085550001", "14085550002", "14085550003"}
	var agents []*sipp
	for i, n := range rig.nodes {
		if err := rig.sim.SetUser(wasim.User{WaID: users[i], Permission: wasim.PermissionTemporary, AnswerAfter: time.Second,
			TalkFor: 3 * time.Second, ToneHz: 1000}); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, dialTo(t, ports[i], n.cfg.SIP.Listen, "agent_dials.xml", "+"+users[i]))
	}
	for i, u := range users {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := rig.sim.BICCall(ctx, u)
		cancel()
		if err != nil {
			t.Fatalf("no call reached user %s: %v", u, err)
		}
		r := reports(t, []*wasim.Call{c}, 30*time.Second)[0]
		if len(r.Violations) > 0 || r.Outcome != wasim.OutcomeCompletedByUser {
			t.Errorf("agent call %d: outcome %s, violations %v", i, r.Outcome, r.Violations)
		}
		if math.Abs(r.ReceivedFreqHz-1000) > 20 {
			t.Errorf("agent call %d: the user heard %.0f Hz, want the echo of its 1 kHz", i, r.ReceivedFreqHz)
		}
	}
	for _, a := range agents {
		if err := a.wait(t, 15*time.Second); err != nil {
			t.Fatal(err) // 180, 200 OK after the user answered, BYE when the user hung up
		}
	}
	if got := rig.sum(t, `wagateway_calls_total{direction="business_initiated",outcome="bridged"`); got != 3 {
		t.Errorf("%v business-initiated calls bridged, want 3", got)
	}
	t.Logf("webhooks: %v passed on, %v held in Redis for their call's owner",
		rig.sum(t, `wagateway_cluster_webhooks_total{result="sent"}`), rig.sum(t, `wagateway_cluster_webhooks_total{result="held"}`))
}

// Redis unreachable at start: redis_down: refuse stops the start with an
// error naming the setting; alone starts, says so in /readyz, and joins
// once Redis answers.
func TestClusterRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop() // its port refuses connections until Restart
	base := func(policy string) *gateway.Config {
		cfg := gateway.LoopbackConfig(gateway.LoopbackOptions{HTTPPort: freePort(t, "tcp"), UDPPort: freePort(t, "udp"),
			GraphURL: "http://127.0.0.1:9", PBXAddr: "127.0.0.1:9", PhoneNumberID: testPhoneNumberID,
			RTPPortMin: 22000, RTPPortMax: 22099})
		cfg.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))
		clPort := freePort(t, "tcp")
		cfg.Cluster = gateway.ClusterConfig{Redis: gateway.ClusterRedisConfig{Addresses: []string{srv.Addr()}},
			NodeID: "solo", Listen: "127.0.0.1:" + strconv.Itoa(clPort), Advertise: "http://127.0.0.1:" + strconv.Itoa(clPort),
			Secret: gateway.SecretRef{Env: "X"}, Lease: time.Second, RedisDown: policy}
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	secrets := clusterSecrets
	gw, err := gateway.New(base(gateway.RedisDownRefuse), &secrets, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	err = gw.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "redis_down: refuse") {
		t.Fatalf("start with Redis unreachable and redis_down: refuse: %v; want an error naming the setting", err)
	}

	cfg := base(gateway.RedisDownAlone)
	gw, err = gateway.New(cfg, &secrets, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(context.Background()); err != nil {
		t.Fatalf("start with redis_down: alone: %v", err)
	}
	t.Cleanup(func() { _ = gw.Close(context.Background()) })
	ops := "http://" + gw.MetricsAddr()
	code, body, err := get(ops + "/readyz")
	if err != nil || code != 200 || !strings.Contains(body, `"redis":"unreachable"`) || !strings.Contains(body, `"joined":false`) {
		t.Fatalf("/readyz running alone: %d %s %v", code, body, err)
	}
	// Redis comes up where the config says: the instance joins by itself.
	srv.Restart()
	waitFor(t, 5*time.Second, "the lone instance to join", func() bool {
		_, body, _ := get(ops + "/readyz")
		return strings.Contains(body, `"redis":"up"`) && strings.Contains(body, `"joined":true`)
	})
}

package gateway

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/internal/ratelog"
)

// fakeStore is the cluster's store for the machine tests (the Redis one is
// tested against a real redis-server in gateway/cluster, and the whole
// cluster in cluster_e2e_test.go).
type fakeStore struct {
	mu       sync.Mutex
	claim    cluster.Claim
	admit    cluster.Admission
	err      error // every call fails so (Redis unreachable)
	route    cluster.Route
	ended    []string
	release  int
	admitted int
	routed   [][]byte
}

func (f *fakeStore) Instance() string             { return "me-1" }
func (f *fakeStore) Reincarnate() (string, error) { return "me-2", nil }
func (f *fakeStore) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
func (f *fakeStore) Join(context.Context) error { return f.fail() }
func (f *fakeStore) Renew(context.Context) (cluster.LeaseStatus, error) {
	return cluster.LeaseHeld, f.fail()
}
func (f *fakeStore) Leave(context.Context) error { return f.fail() }
func (f *fakeStore) Instances(context.Context) ([]cluster.Instance, error) {
	return nil, f.fail()
}
func (f *fakeStore) Claim(context.Context, string, []byte) (cluster.Claim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claim, f.err
}
func (f *fakeStore) SaveInfo(context.Context, string, []byte) error { return f.fail() }
func (f *fakeStore) Place(context.Context, string) ([][]byte, error) {
	return nil, f.fail()
}
func (f *fakeStore) Route(_ context.Context, _ string, ev []byte, _ bool) (cluster.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routed = append(f.routed, ev)
	return f.route, f.err
}
func (f *fakeStore) End(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.ended = append(f.ended, id)
	}
	return f.err
}
func (f *fakeStore) Admit(context.Context, string, int, int) (cluster.Admission, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil && f.admit.OK {
		f.admitted++
	}
	return f.admit, f.err
}
func (f *fakeStore) Release(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.release++
	}
	return f.err
}
func (f *fakeStore) Dead(context.Context) ([]string, error) { return nil, f.fail() }
func (f *fakeStore) Reap(context.Context, string, time.Duration) ([]cluster.Orphan, bool, error) {
	return nil, false, f.fail()
}
func (f *fakeStore) Reaped(context.Context, string, string, string) error { return f.fail() }
func (f *fakeStore) Forget(context.Context, string) error                 { return f.fail() }
func (f *fakeStore) Requests(string) uint64                               { return 0 }
func (f *fakeStore) Close() error                                         { return nil }

// clustered makes the machine's gateway part of a cluster with a fake store.
func (m *machine) clustered(policy string) *fakeStore {
	st := &fakeStore{claim: cluster.Claim{Won: true}, admit: cluster.Admission{OK: true}}
	n := &clusterNode{g: m.g, cfg: ClusterConfig{RedisDown: policy, Lease: time.Second}, store: st,
		log: zap.NewNop(), forwards: make(chan struct{}, 4), seen: newRecentKeys(time.Minute, 100), downLog: ratelog.New(time.Second, time.Now)}
	n.joined.Store(true)
	n.up.Store(true)
	m.g.ops.metrics.reg.MustRegister(m.g.ops.metrics.clusterGauges()...)
	m.g.cl = n
	return st
}

// A connect another instance already claimed (a duplicate delivered there)
// is not answered here; one claimed here is, and its end is recorded and
// its count released.
func TestClusterClaimDecidesWhoAnswers(t *testing.T) {
	m := newMachine(t)
	st := m.clustered(RedisDownRefuse)
	st.claim = cluster.Claim{Owner: "other-2", Addr: "http://127.0.0.1:1"}
	if c := m.connect("wacid.dup"); c != nil {
		t.Fatal("a connect another instance owns was answered here")
	}
	st.mu.Lock()
	st.claim = cluster.Claim{Ended: true}
	st.mu.Unlock()
	if c := m.connect("wacid.ended"); c != nil {
		t.Fatal("a connect for a call that ended in the cluster was answered")
	}
	st.mu.Lock()
	st.claim = cluster.Claim{Won: true}
	st.mu.Unlock()
	c := m.connect("wacid.mine")
	if c == nil {
		t.Fatal("a connect this instance claimed was not answered")
	}
	m.waitState(c, stateBridged)
	m.terminate("wacid.mine")
	m.ended(c)
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.ended) != 1 || st.ended[0] != "wacid.mine" || st.release != 1 {
		t.Errorf("store after the end: ended %v, released %d; want [wacid.mine], 1", st.ended, st.release)
	}
}

// Over a cluster-wide limit the call is rejected (Graph reject, over_limit);
// with Redis unreachable and redis_down: refuse, cluster_unavailable; with
// redis_down: alone it is taken and counted here.
func TestClusterAdmission(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		admit        cluster.Admission
		err          error
		outcome      string
	}{
		{"over the number's limit", RedisDownRefuse, cluster.Admission{Why: "number_limit", Number: 2}, nil, OutcomeOverLimit},
		{"redis down, refuse", RedisDownRefuse, cluster.Admission{OK: true}, errors.New("connection refused"), OutcomeClusterDown},
		{"redis down, alone", RedisDownAlone, cluster.Admission{OK: true}, errors.New("connection refused"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			st := m.clustered(tc.policy)
			st.admit, st.err = tc.admit, tc.err
			c := m.connect("wacid.limit")
			if c == nil {
				t.Fatal("connect not taken")
			}
			if tc.outcome == "" { // taken
				m.waitState(c, stateBridged)
				if n := m.g.limits.total; n != 1 {
					t.Errorf("local count %d while running alone, want 1", n)
				}
				m.terminate("wacid.limit")
			}
			rec := m.ended(c)
			if tc.outcome != "" && rec.Outcome != tc.outcome {
				t.Errorf("outcome %s, want %s", rec.Outcome, tc.outcome)
			}
			if tc.outcome != "" {
				if got := m.graph.sent(); len(got) != 1 || got[0] != "reject" {
					t.Errorf("graph actions %v, want [reject]", got)
				}
			}
			if n := m.g.limits.total; n != 0 {
				t.Errorf("local count %d after the end", n)
			}
		})
	}
}

// A terminate for a call owned elsewhere is passed on, not handled here; one
// for a call this instance owns (or when Redis does not answer) is handled
// here.
func TestClusterTerminateRouting(t *testing.T) {
	m := newMachine(t)
	st := m.clustered(RedisDownRefuse)
	st.route = cluster.Route{Held: true}
	m.terminate("wacid.elsewhere")
	if m.g.reg.knownEnded("wacid.elsewhere") {
		t.Error("a terminate held for another instance was taken here")
	}
	st.mu.Lock()
	st.route = cluster.Route{Owner: "me-1"}
	st.mu.Unlock()
	m.terminate("wacid.mine")
	if !m.g.reg.knownEnded("wacid.mine") {
		t.Error("a terminate for this instance's (ended) call was not handled here")
	}
	if len(st.routed) != 2 {
		t.Errorf("%d events routed through the store, want 2", len(st.routed))
	}
}

// recentKeys is bounded and forgets after its TTL.
func TestRecentKeys(t *testing.T) {
	r := newRecentKeys(50*time.Millisecond, 3)
	for _, k := range []string{"a", "b", "c"} {
		if !r.add(k) {
			t.Fatalf("%s new", k)
		}
	}
	if r.add("a") {
		t.Error("a duplicate taken as new")
	}
	r.add("d") // the oldest (a) goes
	if len(r.at) > 3 {
		t.Errorf("%d keys kept, bound 3", len(r.at))
	}
	if !r.add("a") {
		t.Error("a key pushed out by the bound is new again")
	}
	time.Sleep(60 * time.Millisecond)
	if !r.add("c") {
		t.Error("a key past its TTL is new again")
	}
}

// The local limits count both directions' calls by number.
func TestLocalLimits(t *testing.T) {
	l := newLocalLimits()
	if ok, _, _, _ := l.admit("n1", 2, 3); !ok {
		t.Fatal("first call refused")
	}
	l.admit("n1", 2, 3)
	if ok, why, _, _ := l.admit("n1", 2, 3); ok || why != "number_limit" {
		t.Errorf("third call of n1: %v %s", ok, why)
	}
	l.admit("n2", 2, 3)
	if ok, why, _, _ := l.admit("n3", 2, 3); ok || why != "max_calls" {
		t.Errorf("fourth call: %v %s", ok, why)
	}
	l.release("n1")
	l.release("n1")
	l.release("n1") // never below zero
	if ok, _, total, num := l.admit("n1", 2, 3); !ok || total != 2 || num != 1 {
		t.Errorf("after releases: %v total %d n1 %d", ok, total, num)
	}
}

// A call that ends while Redis does not answer has its end kept and
// recorded once Redis answers: its count is given back (not after Redis
// lost its data: the counts were rebuilt from the calls still up).
func TestClusterEndsKeptWhileRedisDown(t *testing.T) {
	for _, rejoined := range []bool{false, true} {
		m := newMachine(t)
		st := m.clustered(RedisDownRefuse)
		c := m.connect("wacid.kept")
		if c == nil {
			t.Fatal("connect not taken")
		}
		m.waitState(c, stateBridged)
		st.mu.Lock()
		st.err = errors.New("connection refused") // Redis goes away
		st.mu.Unlock()
		m.terminate("wacid.kept")
		m.ended(c)
		st.mu.Lock()
		if len(st.ended) != 0 || st.release != 0 {
			t.Errorf("with Redis down: ended %v, released %d", st.ended, st.release)
		}
		st.err = nil
		st.mu.Unlock()
		m.g.cl.up.Store(true)
		m.g.cl.flushEnds(rejoined)
		st.mu.Lock()
		want := 1
		if rejoined {
			want = 0
		}
		if len(st.ended) != 1 || st.ended[0] != "wacid.kept" || st.release != want {
			t.Errorf("rejoined %v: after Redis answers: ended %v, released %d (want 1 end, %d release)", rejoined, st.ended, st.release, want)
		}
		st.mu.Unlock()
	}
}

// A call taken alone while Redis did not answer (redis_down: alone) is
// registered and counted once Redis answers, so a reaper would end it and
// the limits see it; its end is then recorded as any other's.
func TestClusterCallsTakenAloneRegistered(t *testing.T) {
	m := newMachine(t)
	st := m.clustered(RedisDownAlone)
	st.err = errors.New("connection refused")
	c := m.connect("wacid.alone")
	if c == nil {
		t.Fatal("connect not taken alone")
	}
	m.waitState(c, stateBridged)
	st.mu.Lock()
	st.err = nil
	st.mu.Unlock()
	m.g.cl.renew(context.Background()) // Redis answers again: Held after being down
	st.mu.Lock()
	if st.admitted != 1 {
		t.Errorf("%d admissions in Redis after it came back, want the call counted once", st.admitted)
	}
	st.mu.Unlock()
	m.g.cl.renew(context.Background()) // up already: nothing registered twice
	m.terminate("wacid.alone")
	m.ended(c)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.admitted != 1 || len(st.ended) != 1 || st.release != 1 || m.g.limits.total != 0 {
		t.Errorf("after the end: admitted %d, ended %v, released %d, local %d; want 1, [wacid.alone], 1, 0",
			st.admitted, st.ended, st.release, m.g.limits.total)
	}
}

package cluster_test

import (
	"context"
	"net"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/internal/redistest"
)

const (
	testPrefix = "wgtest"
	shortLease = time.Second // the shortest lease: expiry tests wait about this long
)

// store is one instance of the store on srv, closed at the end of the test.
func store(t *testing.T, addr, node string, lease time.Duration) *cluster.Redis {
	t.Helper()
	r, err := cluster.NewRedis(cluster.RedisConfig{
		Addrs:     []string{addr},
		Prefix:    testPrefix,
		Node:      node,
		Advertise: advertise(node),
		Lease:     lease,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// joined is a store that has joined.
func joined(t *testing.T, addr, node string, lease time.Duration) *cluster.Redis {
	t.Helper()
	r := store(t, addr, node, lease)
	if err := r.Join(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

func advertise(node string) string { return "http://127.0.0.1:1/" + node }

// raw is a plain client to look at the keys behind the store's back.
func raw(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

// ctxT bounds one step of a test.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// key is a store key, as the spec names it.
func key(name string) string { return "{" + testPrefix + "}:" + name }

// waitLeaseGone waits (bounded) until inst's lease has expired.
func waitLeaseGone(t *testing.T, c *redis.Client, inst string) {
	t.Helper()
	deadline := time.Now().Add(shortLease + 3*time.Second)
	for {
		n, err := c.Exists(ctxT(t), key("inst:"+inst)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease of %s still there", inst)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keysOf lists the store's keys naming inst, by SCAN.
func keysOf(t *testing.T, c *redis.Client, inst string) []string {
	t.Helper()
	var out []string
	iter := c.Scan(ctxT(t), 0, key("*"), 100).Iterator()
	for iter.Next(ctxT(t)) {
		if strings.Contains(iter.Val(), inst) {
			out = append(out, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestNewRedisConfig(t *testing.T) {
	good := cluster.RedisConfig{Addrs: []string{"127.0.0.1:1"}, Node: "gw1", Advertise: "http://10.0.0.1:8080", Password: "hunter2"}
	for name, change := range map[string]func(*cluster.RedisConfig){
		"no address":       func(c *cluster.RedisConfig) { c.Addrs = nil },
		"empty address":    func(c *cluster.RedisConfig) { c.Addrs = []string{""} },
		"no node":          func(c *cluster.RedisConfig) { c.Node = "" },
		"no advertise":     func(c *cluster.RedisConfig) { c.Advertise = "" },
		"advertise no URL": func(c *cluster.RedisConfig) { c.Advertise = "10.0.0.1:8080" },
		"short lease":      func(c *cluster.RedisConfig) { c.Lease = 500 * time.Millisecond },
		"brace in prefix":  func(c *cluster.RedisConfig) { c.Prefix = "a}b" },
		"negative timeout": func(c *cluster.RedisConfig) { c.DialTimeout = -time.Second },
	} {
		cfg := good
		change(&cfg)
		_, err := cluster.NewRedis(cfg)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "cluster: ") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error %q", name, err)
		}
	}
	r, err := cluster.NewRedis(good)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !regexp.MustCompile(`^gw1-[0-9a-f]{8}$`).MatchString(r.Instance()) {
		t.Errorf("instance id %q", r.Instance())
	}
	r2, err := cluster.NewRedis(good)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Instance() == r.Instance() {
		t.Error("two instances of one node share an id")
	}
}

// TestKeys: the keys are the spec's, in the prefix's hash tag.
func TestKeys(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", 0)
	I := a.Instance()
	ctx := ctxT(t)
	if _, err := a.Claim(ctx, "call1", []byte("info1")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Admit(ctx, "+15550001", 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Route(ctx, "wa1", []byte("ev"), false); err != nil {
		t.Fatal(err)
	}
	got, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := []string{key("call:call1"), key("held:wa1"), key("info:call1"), key("inst:" + I),
		key("inst:" + I + ":calls"), key("inst:" + I + ":load"), key("instances")}
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
	if ttl := c.PTTL(ctx, key("inst:"+I)).Val(); ttl <= 0 || ttl > cluster.DefaultLease {
		t.Errorf("lease TTL %v", ttl)
	}
	if v := c.Get(ctx, key("call:call1")).Val(); v != I {
		t.Errorf("call:call1 = %q, want %q", v, I)
	}
	if ttl := c.PTTL(ctx, key("call:call1")).Val(); ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("call TTL %v", ttl)
	}
	load := c.HGetAll(ctx, key("inst:"+I+":load")).Val()
	if !reflect.DeepEqual(load, map[string]string{"all": "1", "n:+15550001": "1"}) {
		t.Errorf("load %v", load)
	}
}

func TestRenewAfterRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := joined(t, srv.Addr(), "a", 0)
	ctx := ctxT(t)
	if st, err := a.Renew(ctx); err != nil || st != cluster.LeaseHeld {
		t.Fatalf("renew: %v, %v", st, err)
	}
	srv.Stop()
	if _, err := a.Renew(ctx); err == nil {
		t.Fatal("renew with Redis stopped: no error")
	}
	srv.Restart()
	// The pool may still hold the failed dial for a moment: retry, bounded.
	var st cluster.LeaseStatus
	var err error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err = a.Renew(ctx); err == nil {
			break
		}
	}
	if err != nil || st != cluster.LeaseRejoined {
		t.Fatalf("renew after restart: %v, %v; want rejoined", st, err)
	}
	if st, err := a.Renew(ctx); err != nil || st != cluster.LeaseHeld {
		t.Fatalf("renew after rejoin: %v, %v", st, err)
	}
	in, err := a.Instances(ctx)
	if err != nil || len(in) != 1 || in[0].ID != a.Instance() || in[0].Addr != advertise("a") || in[0].Node != "a" {
		t.Fatalf("instances after rejoin: %+v, %v", in, err)
	}
}

func TestRenewReaped(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", shortLease)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)
	waitLeaseGone(t, c, a.Instance()) // a paused past its lease
	if _, won, err := b.Reap(ctx, a.Instance(), time.Minute); err != nil || !won {
		t.Fatalf("reap: %v, %v", won, err)
	}
	for range 2 {
		if st, err := a.Renew(ctx); err != nil || st != cluster.LeaseReaped {
			t.Fatalf("renew after reap: %v, %v", st, err)
		}
	}
	in, err := b.Instances(ctx)
	if err != nil || len(in) != 1 || in[0].ID != b.Instance() {
		t.Fatalf("instances: %+v, %v; want only b", in, err)
	}
	// The reaped process comes back as a new incarnation of its node.
	old := a.Instance()
	id, err := a.Reincarnate()
	if err != nil || id == old || !strings.HasPrefix(id, "a-") || a.Instance() != id {
		t.Fatalf("reincarnate: %q (was %q), %v", id, old, err)
	}
	if err := a.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Renew(ctx); err != nil || st != cluster.LeaseHeld {
		t.Fatalf("renew as a new incarnation: %v, %v", st, err)
	}
}

func TestInstancesAndLeave(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", 0)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)
	in, err := a.Instances(ctx)
	if err != nil || len(in) != 2 {
		t.Fatalf("instances: %+v, %v", in, err)
	}
	for _, i := range in {
		if i.Since.IsZero() || time.Since(i.Since) > time.Minute || i.Addr != advertise(i.Node) {
			t.Errorf("instance %+v", i)
		}
	}
	if _, err := b.Claim(ctx, "c1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Admit(ctx, "+1", 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if in, err := a.Instances(ctx); err != nil || len(in) != 1 || in[0].ID != a.Instance() {
		t.Fatalf("instances after leave: %+v, %v", in, err)
	}
	if k := keysOf(t, c, b.Instance()); len(k) != 0 {
		t.Fatalf("keys left by leave: %q", k)
	}
	if m := c.SMembers(ctx, key("instances")).Val(); len(m) != 1 || m[0] != a.Instance() {
		t.Fatalf("instances set %q", m)
	}
	if d, err := a.Dead(ctx); err != nil || len(d) != 0 {
		t.Fatalf("dead after leave: %q, %v", d, err)
	}
}

// TestRedisDown: with Redis stopped, or silent, every method fails within
// about DialTimeout with a wrapped error: nothing hangs.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	stopped := srv.Addr()
	srv.Stop()

	// A server that accepts and never answers: only the timeouts end a call.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var held []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()

	const dial = 300 * time.Millisecond
	var calls sync.WaitGroup
	for name, addr := range map[string]string{"stopped": stopped, "silent": l.Addr().String()} {
		r, err := cluster.NewRedis(cluster.RedisConfig{
			Addrs: []string{addr}, Node: "a", Advertise: advertise("a"), DialTimeout: dial,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		ctx := context.Background() // only the store's own timeouts bound the calls
		for method, call := range map[string]func() error{
			"join":      func() error { return r.Join(ctx) },
			"renew":     func() error { _, err := r.Renew(ctx); return err },
			"leave":     func() error { return r.Leave(ctx) },
			"instances": func() error { _, err := r.Instances(ctx); return err },
			"claim":     func() error { _, err := r.Claim(ctx, "c1", nil); return err },
			"save info": func() error { return r.SaveInfo(ctx, "c1", nil) },
			"place":     func() error { _, err := r.Place(ctx, "wa1"); return err },
			"route":     func() error { _, err := r.Route(ctx, "wa1", nil, true); return err },
			"end":       func() error { return r.End(ctx, "c1", "wa1") },
			"admit":     func() error { _, err := r.Admit(ctx, "+1", 1, 1); return err },
			"release":   func() error { return r.Release(ctx, "+1") },
			"dead":      func() error { _, err := r.Dead(ctx); return err },
			"reap":      func() error { _, _, err := r.Reap(ctx, "x", time.Second); return err },
			"reaped":    func() error { return r.Reaped(ctx, "x", "c1", "") },
			"forget":    func() error { return r.Forget(ctx, "x") },
		} {
			// At once: the silent server makes each call wait its timeout.
			calls.Add(1)
			go func() {
				defer calls.Done()
				start := time.Now()
				err := call()
				took := time.Since(start)
				if err == nil || !strings.HasPrefix(err.Error(), "cluster: ") {
					t.Errorf("%s, %s: error %v", name, method, err)
				}
				// One dial or one read, bounded by DialTimeout; the
				// slack is for the race detector on a loaded machine.
				if took > dial+500*time.Millisecond {
					t.Errorf("%s, %s: took %v", name, method, took)
				}
				t.Logf("%s, %s: %v after %v", name, method, err, took.Round(time.Millisecond))
			}()
		}
	}
	calls.Wait()
}

// TestWrongPassword: the error of a refused password does not quote it.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Without requirepass the default user takes any password.
	if err := raw(t, srv.Addr()).ConfigSet(ctxT(t), "requirepass", "other").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := cluster.NewRedis(cluster.RedisConfig{
		Addrs: []string{srv.Addr()}, Password: "hunter2", Node: "a", Advertise: advertise("a"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Join(ctxT(t))
	if err == nil {
		t.Fatal("joined with a password the server does not have")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error quotes the password: %v", err)
	}
	t.Log(err)
}

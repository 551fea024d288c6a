package cluster_test

import (
	"context"
	"fmt"
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

func TestClaim(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", 0)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)

	if got, err := a.Claim(ctx, "c1", []byte("info-a")); err != nil || got != (cluster.Claim{Won: true}) {
		t.Fatalf("first claim: %+v, %v", got, err)
	}
	want := cluster.Claim{Owner: a.Instance(), Addr: advertise("a")}
	if got, err := b.Claim(ctx, "c1", []byte("info-b")); err != nil || got != want {
		t.Fatalf("second claim: %+v, %v; want %+v", got, err, want)
	}
	// The owner claiming again learns it is the owner: not a second win.
	if got, err := a.Claim(ctx, "c1", nil); err != nil || got != want {
		t.Fatalf("owner's claim: %+v, %v; want %+v", got, err, want)
	}
	if v := c.Get(ctx, key("info:c1")).Val(); v != "info-a" {
		t.Errorf("info %q, want the winner's", v)
	}
	if err := a.SaveInfo(ctx, "c1", []byte("info-a2")); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, key("info:c1")).Val(); v != "info-a2" {
		t.Errorf("saved info %q", v)
	}

	if err := a.End(ctx, "c1", ""); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Claim(ctx, "c1", nil); err != nil || got != (cluster.Claim{Ended: true}) {
		t.Fatalf("claim after end: %+v, %v", got, err)
	}
	if n := c.Exists(ctx, key("info:c1")).Val(); n != 0 {
		t.Error("info kept after End")
	}
	if m := c.SMembers(ctx, key("inst:"+a.Instance()+":calls")).Val(); len(m) != 0 {
		t.Errorf("calls after End: %q", m)
	}
	if ttl := c.PTTL(ctx, key("call:c1")).Val(); ttl <= 0 || ttl > 30*time.Minute {
		t.Errorf("ended TTL %v", ttl)
	}
}

// TestClaimRace: of three instances claiming one call at once, one wins
// and the others see it as the owner.
func TestClaimRace(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	stores := []*cluster.Redis{
		joined(t, srv.Addr(), "a", 0), joined(t, srv.Addr(), "b", 0), joined(t, srv.Addr(), "c", 0),
	}
	ctx := ctxT(t)
	claims := make([]cluster.Claim, len(stores))
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			claims[i], errs[i] = s.Claim(ctx, "race", nil)
		}()
	}
	wg.Wait()
	winner := ""
	for i, cl := range claims {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if cl.Won {
			if winner != "" {
				t.Fatal("two winners")
			}
			winner = stores[i].Instance()
		}
	}
	if winner == "" {
		t.Fatal("no winner")
	}
	for _, cl := range claims {
		if !cl.Won && cl.Owner != winner {
			t.Errorf("loser sees owner %q, want %q", cl.Owner, winner)
		}
	}
}

func TestRouteHoldsUntilPlace(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", 0)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)

	for i := range 10 {
		got, err := b.Route(ctx, "wa1", fmt.Appendf(nil, "ev%d", i), false)
		if err != nil || got != (cluster.Route{Held: true}) {
			t.Fatalf("route %d: %+v, %v", i, got, err)
		}
	}
	if ttl := c.PTTL(ctx, key("held:wa1")).Val(); ttl <= 0 || ttl > 30*time.Second {
		t.Errorf("held TTL %v", ttl)
	}
	held, err := a.Place(ctx, "wa1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range held {
		got = append(got, string(h))
	}
	want := []string{"ev2", "ev3", "ev4", "ev5", "ev6", "ev7", "ev8", "ev9"} // the newest 8, in order
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("held %q, want %q", got, want)
	}
	if n := c.Exists(ctx, key("held:wa1")).Val(); n != 0 {
		t.Error("held events kept after Place")
	}
	if held, err := a.Place(ctx, "wa1"); err != nil || len(held) != 0 {
		t.Errorf("second place: %q, %v", held, err)
	}
	r, err := b.Route(ctx, "wa1", []byte("ev10"), false)
	if want := (cluster.Route{Owner: a.Instance(), Addr: advertise("a")}); err != nil || r != want {
		t.Fatalf("route after place: %+v, %v; want %+v", r, err, want)
	}
	if err := a.End(ctx, "sip:x", "wa1"); err != nil {
		t.Fatal(err)
	}
	if r, err := b.Route(ctx, "wa1", []byte("ev11"), false); err != nil || r != (cluster.Route{Ended: true}) {
		t.Fatalf("route after end: %+v, %v", r, err)
	}
}

// TestRouteMarkEnded: a terminating event for an unplaced call refuses a
// later Claim, while Place still takes the call and gets the event.
func TestRouteMarkEnded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := joined(t, srv.Addr(), "a", 0)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)

	if r, err := b.Route(ctx, "wa2", []byte("terminate"), true); err != nil || r != (cluster.Route{Held: true}) {
		t.Fatalf("route: %+v, %v", r, err)
	}
	if cl, err := b.Claim(ctx, "wa2", nil); err != nil || cl != (cluster.Claim{Ended: true}) {
		t.Fatalf("claim after the terminating event: %+v, %v", cl, err)
	}
	if r, err := b.Route(ctx, "wa2", []byte("late"), false); err != nil || r != (cluster.Route{Ended: true}) {
		t.Fatalf("route after the terminating event: %+v, %v", r, err)
	}
	held, err := a.Place(ctx, "wa2")
	if err != nil || len(held) != 1 || string(held[0]) != "terminate" {
		t.Fatalf("place: %q, %v", held, err)
	}
	if r, err := b.Route(ctx, "wa2", []byte("ev"), false); err != nil || r.Owner != a.Instance() {
		t.Fatalf("route after place: %+v, %v", r, err)
	}
}

// TestOwnerLeaseGone: an owner whose lease expired is still the owner,
// with no address to reach it at.
func TestOwnerLeaseGone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", shortLease)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)
	if _, err := a.Claim(ctx, "c1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Place(ctx, "wa1"); err != nil {
		t.Fatal(err)
	}
	waitLeaseGone(t, c, a.Instance()) // a stops renewing: dead
	want := cluster.Route{Owner: a.Instance()}
	if r, err := b.Route(ctx, "wa1", []byte("ev"), false); err != nil || r != want {
		t.Fatalf("route: %+v, %v; want %+v", r, err, want)
	}
	if cl, err := b.Claim(ctx, "c1", nil); err != nil || cl != (cluster.Claim{Owner: a.Instance()}) {
		t.Fatalf("claim: %+v, %v", cl, err)
	}
}

// admitAll runs n Admits on each store at once and counts the admitted.
func admitAll(t *testing.T, stores []*cluster.Redis, n int, number string, numberLimit, totalLimit int) (ok int, whys map[string]int) {
	t.Helper()
	ctx := ctxT(t)
	var mu sync.Mutex
	whys = map[string]int{}
	var wg sync.WaitGroup
	for _, s := range stores {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := s.Admit(ctx, number, numberLimit, totalLimit)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Error(err)
				case a.OK:
					ok++
				default:
					whys[a.Why]++
				}
			}()
		}
	}
	wg.Wait()
	return ok, whys
}

func TestAdmitTotalLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	stores := []*cluster.Redis{joined(t, srv.Addr(), "a", 0), joined(t, srv.Addr(), "b", 0)}
	ok, whys := admitAll(t, stores, 5, "+15550001", 0, 3)
	if ok != 3 || whys["max_calls"] != 7 {
		t.Fatalf("admitted %d, refused %v; want 3 and 7 max_calls", ok, whys)
	}
}

func TestAdmitNumberLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := joined(t, srv.Addr(), "a", 0)
	b := joined(t, srv.Addr(), "b", 0)
	ok, whys := admitAll(t, []*cluster.Redis{a, b}, 4, "+15550001", 3, 0)
	if ok != 3 || whys["number_limit"] != 5 {
		t.Fatalf("admitted %d, refused %v; want 3 and 5 number_limit", ok, whys)
	}
	ctx := ctxT(t)
	// Another number is not limited by the first one's calls, and the
	// counts tell the totals across both instances.
	got, err := b.Admit(ctx, "+15550002", 3, 10)
	if want := (cluster.Admission{OK: true, Total: 4, Number: 1}); err != nil || got != want {
		t.Fatalf("other number: %+v, %v; want %+v", got, err, want)
	}
	got, err = a.Admit(ctx, "+15550001", 3, 10)
	if want := (cluster.Admission{Why: "number_limit", Total: 4, Number: 3}); err != nil || got != want {
		t.Fatalf("full number: %+v, %v; want %+v", got, err, want)
	}
	// The total limit is checked first.
	got, err = a.Admit(ctx, "+15550001", 3, 4)
	if err != nil || got.OK || got.Why != "max_calls" {
		t.Fatalf("both full: %+v, %v", got, err)
	}
	// No number: counted in the total only.
	got, err = a.Admit(ctx, "", 1, 0)
	if want := (cluster.Admission{OK: true, Total: 5}); err != nil || got != want {
		t.Fatalf("no number: %+v, %v; want %+v", got, err, want)
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", 0)
	ctx := ctxT(t)
	for range 2 {
		if _, err := a.Admit(ctx, "+1", 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if err := a.Release(ctx, "+1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Release(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if load := c.HGetAll(ctx, key("inst:"+a.Instance()+":load")).Val(); len(load) != 0 {
		t.Fatalf("load after releasing more than admitted: %v", load)
	}
	got, err := a.Admit(ctx, "+1", 1, 1)
	if want := (cluster.Admission{OK: true, Total: 1, Number: 1}); err != nil || got != want {
		t.Fatalf("admit after release: %+v, %v; want %+v", got, err, want)
	}
}

// TestAdmitDeadLoad: the calls of an instance whose lease expired no longer
// count.
func TestAdmitDeadLoad(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	a := joined(t, srv.Addr(), "a", shortLease)
	b := joined(t, srv.Addr(), "b", 0)
	ctx := ctxT(t)
	for range 2 {
		if got, err := a.Admit(ctx, "+1", 0, 3); err != nil || !got.OK {
			t.Fatalf("a: %+v, %v", got, err)
		}
	}
	if got, err := b.Admit(ctx, "+1", 0, 3); err != nil || got != (cluster.Admission{OK: true, Total: 3, Number: 3}) {
		t.Fatalf("b: %+v, %v", got, err)
	}
	if got, err := b.Admit(ctx, "+1", 0, 3); err != nil || got.OK {
		t.Fatalf("b over the limit: %+v, %v", got, err)
	}
	waitLeaseGone(t, c, a.Instance())
	if got, err := b.Admit(ctx, "+1", 0, 3); err != nil || got != (cluster.Admission{OK: true, Total: 2, Number: 2}) {
		t.Fatalf("b with a dead: %+v, %v", got, err)
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

// TestReap: the dead instance's calls go to exactly one of two reapers,
// and once reaped and forgotten nothing of it is left but the mark that
// tells it it was reaped.
func TestReap(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := raw(t, srv.Addr())
	dead := joined(t, srv.Addr(), "dead", shortLease)
	b := joined(t, srv.Addr(), "b", 0)
	d := joined(t, srv.Addr(), "d", 0)
	ctx := ctxT(t)
	D := dead.Instance()
	for _, id := range []string{"wa-user", "sip:call-1", "no-info"} {
		if _, err := dead.Claim(ctx, id, []byte("info "+id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dead.Place(ctx, "wa-biz"); err != nil { // sip:call-1's WhatsApp id
		t.Fatal(err)
	}
	if _, err := dead.Admit(ctx, "+1", 0, 0); err != nil {
		t.Fatal(err)
	}
	c.Del(ctx, key("info:no-info"))

	if got, won, err := b.Reap(ctx, D, time.Minute); err != nil || won || got != nil {
		t.Fatalf("reap of a live instance: %v, %v, %v", got, won, err)
	}
	if ds, err := b.Dead(ctx); err != nil || len(ds) != 0 {
		t.Fatalf("dead while alive: %q, %v", ds, err)
	}
	waitLeaseGone(t, c, D)
	for _, s := range []*cluster.Redis{b, d} {
		if ds, err := s.Dead(ctx); err != nil || !reflect.DeepEqual(ds, []string{D}) {
			t.Fatalf("dead: %q, %v; want [%s]", ds, err, D)
		}
	}
	if ds, err := dead.Dead(ctx); err != nil || len(ds) != 0 {
		t.Fatalf("dead never lists itself: %q, %v", ds, err)
	}

	type result struct {
		orphans []cluster.Orphan
		won     bool
		err     error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i, s := range []*cluster.Redis{b, d} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, won, err := s.Reap(ctx, D, time.Minute)
			results[i] = result{o, won, err}
		}()
	}
	wg.Wait()
	var winner *cluster.Redis
	var orphans []cluster.Orphan
	for i, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.won {
			if winner != nil {
				t.Fatal("two reapers won")
			}
			winner, orphans = []*cluster.Redis{b, d}[i], r.orphans
		} else if r.orphans != nil {
			t.Errorf("the loser got orphans %v", r.orphans)
		}
	}
	if winner == nil {
		t.Fatal("no reaper won")
	}
	sort.Slice(orphans, func(i, j int) bool { return orphans[i].ID < orphans[j].ID })
	want := []cluster.Orphan{
		{ID: "no-info"},
		{ID: "sip:call-1", Info: []byte("info sip:call-1")},
		{ID: "wa-user", Info: []byte("info wa-user")},
	}
	if !reflect.DeepEqual(orphans, want) {
		t.Fatalf("orphans %+v, want %+v", orphans, want)
	}

	// Forget waits for every call to be reaped.
	if err := winner.Reaped(ctx, D, "wa-user", ""); err != nil {
		t.Fatal(err)
	}
	if err := winner.Forget(ctx, D); err != nil {
		t.Fatal(err)
	}
	if ds, _ := winner.Dead(ctx); !reflect.DeepEqual(ds, []string{D}) {
		t.Fatalf("forgotten with calls left: dead %q", ds)
	}
	if err := winner.Reaped(ctx, D, "sip:call-1", "wa-biz"); err != nil {
		t.Fatal(err)
	}
	if err := winner.Reaped(ctx, D, "no-info", ""); err != nil {
		t.Fatal(err)
	}
	if err := winner.Forget(ctx, D); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{"wa-user", "sip:call-1", "wa-biz", "no-info"} {
		if cl, err := b.Claim(ctx, id, nil); err != nil || !cl.Ended {
			t.Errorf("claim of reaped %s: %+v, %v", id, cl, err)
		}
	}
	if ds, err := b.Dead(ctx); err != nil || len(ds) != 0 {
		t.Fatalf("dead after forget: %q, %v", ds, err)
	}
	// reaped:<D> stays (for an hour) to tell D, should it come back.
	if k := keysOf(t, c, D); !reflect.DeepEqual(k, []string{key("reaped:" + D)}) {
		t.Fatalf("keys of the forgotten instance: %q", k)
	}
	if ttl := c.PTTL(ctx, key("reaped:"+D)).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("reaped TTL %v", ttl)
	}
	if st, err := dead.Renew(ctx); err != nil || st != cluster.LeaseReaped {
		t.Fatalf("renew of the forgotten instance: %v, %v", st, err)
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

package cluster_test

import (
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/internal/redistest"
)

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

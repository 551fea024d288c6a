package cluster_test

import (
	"sync"
	"testing"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/internal/redistest"
)

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

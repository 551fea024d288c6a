package cluster_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/internal/redistest"
)

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

package whatsapp

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestFilter(ttl time.Duration, max int) (*eventFilter, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	return newEventFilter(ttl, max, clk.now), clk
}

func ts(sec int64) time.Time { return time.Unix(sec, 0) }

func TestFilterDuplicateWithinTTL(t *testing.T) {
	f, clk := newTestFilter(time.Minute, 100)
	if v := f.check("wacid.1", "connect", ts(100), false); v != verdictNew {
		t.Fatalf("first connect: %v", v)
	}
	if v := f.check("wacid.1", "connect", ts(100), false); v != verdictDuplicate {
		t.Fatalf("repeat: %v, want duplicate", v)
	}
	if v := f.check("wacid.2", "connect", ts(100), false); v != verdictNew {
		t.Fatalf("other call: %v", v)
	}
	if v := f.check("wacid.1", "terminate", ts(100), true); v != verdictNew {
		t.Fatalf("other event of the same call: %v", v)
	}
	clk.advance(59 * time.Second)
	if v := f.check("wacid.1", "connect", ts(100), false); v != verdictDuplicate {
		t.Fatalf("repeat before TTL: %v, want duplicate", v)
	}
	clk.advance(2 * time.Second)
	if v := f.check("wacid.1", "connect", ts(100), false); v != verdictNew {
		t.Fatalf("repeat after TTL: %v, want new", v)
	}
}

func TestFilterStale(t *testing.T) {
	f, _ := newTestFilter(time.Minute, 100)
	// Terminate delivered before its connect: the late connect is stale.
	if v := f.check("wacid.1", "terminate", ts(200), true); v != verdictNew {
		t.Fatalf("terminate: %v", v)
	}
	if v := f.check("wacid.1", "connect", ts(150), false); v != verdictStale {
		t.Fatalf("older connect: %v, want stale", v)
	}
	// Same second is not older.
	if v := f.check("wacid.2", "terminate", ts(300), true); v != verdictNew {
		t.Fatal(v)
	}
	if v := f.check("wacid.2", "connect", ts(300), false); v != verdictNew {
		t.Fatalf("connect in the same second: %v, want new", v)
	}
	// No timestamp: nothing to compare.
	if v := f.check("wacid.1", "x-unknown", time.Time{}, false); v != verdictNew {
		t.Fatalf("zero timestamp: %v, want new", v)
	}
}

func TestFilterTerminateNeverStale(t *testing.T) {
	f, _ := newTestFilter(time.Minute, 100)
	if v := f.check("wacid.1", "connect", ts(500), false); v != verdictNew {
		t.Fatal(v)
	}
	if v := f.check("wacid.1", "terminate", ts(100), true); v != verdictNew {
		t.Fatalf("older terminate: %v, want new", v)
	}
	// And it did not lower the newest timestamp of the call.
	if v := f.check("wacid.1", "other", ts(400), false); v != verdictStale {
		t.Fatalf("event older than the connect: %v, want stale", v)
	}
}

func TestFilterBounded(t *testing.T) {
	f, clk := newTestFilter(time.Hour, 50)
	for i := range 1000 {
		f.check(fmt.Sprintf("wacid.%d", i), "connect", ts(int64(i)), false)
		clk.advance(time.Millisecond)
	}
	seen, newest := f.size()
	if seen > 50 || newest > 50 {
		t.Fatalf("size %d/%d exceeds 50", seen, newest)
	}
	// The newest keys survive, the oldest were evicted.
	if v := f.check("wacid.999", "connect", ts(999), false); v != verdictDuplicate {
		t.Errorf("recent key: %v, want duplicate", v)
	}
	if v := f.check("wacid.0", "connect", ts(0), false); v != verdictNew {
		t.Errorf("evicted key: %v, want new", v)
	}
	if n := len(f.seen.fifo) - f.seen.head; n != f.seen.len() {
		t.Errorf("fifo holds %d refs for %d entries", n, f.seen.len())
	}
}

func TestFilterPrunesExpired(t *testing.T) {
	f, clk := newTestFilter(time.Second, 1000)
	for i := range 500 {
		f.check(fmt.Sprintf("wacid.%d", i), "connect", ts(1), false)
	}
	clk.advance(2 * time.Second)
	f.check("wacid.new", "connect", ts(1), false)
	if seen, newest := f.size(); seen != 1 || newest != 1 {
		t.Fatalf("after expiry: %d/%d entries, want 1/1", seen, newest)
	}
	if cap(f.seen.fifo) > 0 && len(f.seen.fifo)-f.seen.head != 1 {
		t.Fatalf("fifo not pruned: %d live refs", len(f.seen.fifo)-f.seen.head)
	}
}

func TestFilterConcurrent(t *testing.T) {
	f := newEventFilter(time.Minute, 10_000, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				// Every goroutine offers the same 500 keys: each must be new
				// exactly once overall.
				v := f.check(fmt.Sprintf("wacid.%d", (i+g*37)%500), "connect", ts(1), false)
				if v == verdictNew {
					mu.Lock()
					fresh++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if fresh != 500 {
		t.Fatalf("%d keys admitted, want 500", fresh)
	}
}

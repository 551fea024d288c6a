package ratelog

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := New(10*time.Second, func() time.Time { return now })
	if ok, n := l.Allow(); !ok || n != 0 {
		t.Fatalf("first line held back (%v, %d)", ok, n)
	}
	for i := 0; i < 5; i++ {
		now = now.Add(time.Second)
		if ok, _ := l.Allow(); ok {
			t.Fatalf("line %d let through within the period", i)
		}
	}
	now = now.Add(10 * time.Second)
	if ok, n := l.Allow(); !ok || n != 5 {
		t.Errorf("after the period: %v, %d held back, want true, 5", ok, n)
	}
}

package whatsapp

import (
	"context"
	"sync"
	"time"
)

// windowLimiter lets at most n requests per key start within any window:
// a sliding log of the last n start times per key. It is stricter than a
// token bucket of burst n refilled at n per window, which lets nearly 2n
// through in one window, more than Meta's "5 requests in a one-second
// window" (R5) allows. Safe for concurrent use.
type windowLimiter struct {
	n      int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string][]time.Time // oldest first, at most n
}

// maxLimiterKeys bounds the keys kept; idle ones are dropped past it. The
// keys are the gateway's own phone number ids, so a handful in practice.
const maxLimiterKeys = 1024

func newWindowLimiter(n int, window time.Duration) *windowLimiter {
	return &windowLimiter{n: n, window: window, now: time.Now, keys: make(map[string][]time.Time)}
}

// wait blocks until a request for key may start, then counts it. It returns
// ctx's error, counting nothing, if ctx ends first.
func (l *windowLimiter) wait(ctx context.Context, key string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := l.reserve(key)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// reserve counts a start for key now and returns 0, or returns how long
// until the oldest start leaves the window.
func (l *windowLimiter) reserve(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	log := l.keys[key]
	for len(log) > 0 && now.Sub(log[0]) >= l.window {
		log = log[1:]
	}
	if len(log) >= l.n {
		l.keys[key] = log
		return log[0].Add(l.window).Sub(now)
	}
	if _, known := l.keys[key]; !known && len(l.keys) >= maxLimiterKeys {
		l.pruneLocked(now)
	}
	// A fresh slice when full keeps the backing array from growing.
	if cap(log) == len(log) {
		log = append(make([]time.Time, 0, l.n), log...)
	}
	l.keys[key] = append(log, now)
	return 0
}

// pruneLocked drops the keys whose starts have all left the window.
func (l *windowLimiter) pruneLocked(now time.Time) {
	for k, log := range l.keys {
		if len(log) == 0 || now.Sub(log[len(log)-1]) >= l.window {
			delete(l.keys, k)
		}
	}
}

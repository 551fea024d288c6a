// Package ratelog bounds log lines that strangers can trigger: at most one
// line per period, with a count of the ones held back since the last.
package ratelog

import (
	"sync"
	"time"
)

// Limiter lets one line through per period. The zero value is not usable:
// make one with New.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// New makes a limiter of one line per every; now is the clock (time.Now
// when nil).
func New(every time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, now: now}
}

// Allow is true when a line may be written now; suppressed is how many
// were held back since the last one that was.
func (l *Limiter) Allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}

// Every is the period.
func (l *Limiter) Every() time.Duration { return l.every }

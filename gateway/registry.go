package gateway

import (
	"sync"
	"time"
)

// registry holds the active calls by WhatsApp call id, and remembers ended
// ids for a while so a late or duplicate connect is not answered again
// (Meta does not guarantee webhook order: a terminate can arrive before its connect).
type registry struct {
	mu      sync.Mutex
	active  map[string]*call
	ended   map[string]time.Time
	keepFor time.Duration
	lastGC  time.Time
	now     func() time.Time
}

func newRegistry(keepFor time.Duration) *registry {
	return &registry{active: map[string]*call{}, ended: map[string]time.Time{}, keepFor: keepFor, now: time.Now}
}

// begin registers a new call unless the id is active or recently ended.
func (r *registry) begin(id string, c *call) (ok bool, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.active[id]; dup {
		return false, "duplicate connect for an active call"
	}
	if _, done := r.ended[id]; done {
		return false, "connect for a call that already ended"
	}
	r.active[id] = c
	return true, ""
}

// get returns the active call with that id.
func (r *registry) get(id string) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[id]
}

// end removes the call and remembers its id.
func (r *registry) end(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, id)
	r.markEndedLocked(id)
}

// markEnded remembers an id whose terminate came before any connect.
func (r *registry) markEnded(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.markEndedLocked(id)
}

func (r *registry) markEndedLocked(id string) {
	now := r.now()
	r.ended[id] = now
	if now.Sub(r.lastGC) > r.keepFor/4 {
		for k, t := range r.ended {
			if now.Sub(t) > r.keepFor {
				delete(r.ended, k)
			}
		}
		r.lastGC = now
	}
}

// snapshot lists the active calls.
func (r *registry) snapshot() []*call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*call, 0, len(r.active))
	for _, c := range r.active {
		out = append(out, c)
	}
	return out
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active)
}

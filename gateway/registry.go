package gateway

import (
	"sync"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
)

// registry holds the active calls by WhatsApp call id, and remembers ended
// ids for a while so a late or duplicate connect is not answered again
// (Meta does not guarantee webhook order: a terminate can arrive before its connect).
//
// A business-initiated call is registered under its agent's SIP Call-ID
// ("sip:" + Call-ID) from the INVITE on, and also under its WhatsApp call id
// once Graph connect returns it (place). Webhooks for an id not known yet
// are held a while (hold): Meta may post the call's RINGING, answer or
// terminate before connect's response arrives.
type registry struct {
	mu      sync.Mutex
	active  map[string]*call
	placed  map[string]*call // WhatsApp call id → business-initiated call
	ended   map[string]time.Time
	pending map[string][]heldEvent
	keepFor time.Duration
	lastGC  time.Time
	now     func() time.Time
}

// heldEvent is a webhook event for a call id no call has yet.
type heldEvent struct {
	call   *whatsapp.CallEvent
	status *whatsapp.StatusEvent
	at     time.Time
}

// Bounds of the held events: Meta answers connect within seconds.
const (
	heldFor       = 30 * time.Second
	maxHeldIDs    = 1000
	maxHeldPerID  = 8
	sipCallPrefix = "sip:"
)

func newRegistry(keepFor time.Duration) *registry {
	return &registry{active: map[string]*call{}, placed: map[string]*call{}, ended: map[string]time.Time{},
		pending: map[string][]heldEvent{}, keepFor: keepFor, now: time.Now}
}

// hold keeps an event for a call id not (yet) known; false when the bounds
// are reached.
func (r *registry) hold(id string, e heldEvent) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	e.at = now
	if _, ok := r.pending[id]; !ok && len(r.pending) >= maxHeldIDs {
		for k, evs := range r.pending {
			if now.Sub(evs[0].at) > heldFor {
				delete(r.pending, k)
			}
		}
		if len(r.pending) >= maxHeldIDs {
			return false
		}
	}
	if len(r.pending[id]) >= maxHeldPerID {
		return false
	}
	r.pending[id] = append(r.pending[id], e)
	return true
}

// place gives a business-initiated call its WhatsApp call id and returns
// the events held for it, in arrival order (a terminate among them too:
// the id may already be marked ended).
func (r *registry) place(id string, c *call) []heldEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.placed[id] = c
	evs := r.pending[id]
	delete(r.pending, id)
	var fresh []heldEvent
	for _, e := range evs {
		if r.now().Sub(e.at) <= heldFor {
			fresh = append(fresh, e)
		}
	}
	return fresh
}

// knownEnded reports whether a call with that id went through this gateway
// and ended (within keepFor).
func (r *registry) knownEnded(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ended[id]
	return ok
}

// unplace forgets a business-initiated call's WhatsApp call id.
func (r *registry) unplace(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.placed, id)
	r.markEndedLocked(id)
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

// get returns the active call with that WhatsApp call id.
func (r *registry) get(id string) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.placed[id]; c != nil {
		return c
	}
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

package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/whatsapp"
)

// forwardedEvent is a webhook event passed to the instance owning its call
// (the internal channel's body, and what Redis holds for a call no
// instance owns yet).
type forwardedEvent struct {
	From   string                `json:"from"` // the instance Meta delivered it to
	Call   *whatsapp.CallEvent   `json:"call,omitempty"`
	Status *whatsapp.StatusEvent `json:"status,omitempty"`
	Sent   time.Time             `json:"sent"`
}

// key is what duplicates of the event share: Meta redelivers the same
// (call id, event) or (call id, status).
func (e forwardedEvent) key() string {
	switch {
	case e.Call != nil:
		return "c\x00" + e.Call.CallID + "\x00" + strings.ToLower(e.Call.Event)
	case e.Status != nil:
		return "s\x00" + e.Status.CallID + "\x00" + strings.ToUpper(e.Status.Status)
	}
	return ""
}

// passOn sends a webhook event for a call not active here to the instance
// that owns it, or leaves it in Redis for the instance that will (a
// business-initiated call whose Graph connect has not returned; a
// terminate before its connect, which also marks the call ended so its
// connect is not answered). It returns false when the event is this
// instance's to handle: the gateway runs alone, Redis does not answer, or
// this instance owns the call.
func (n *clusterNode) passOn(ev forwardedEvent, waID string, markEnded bool) bool {
	if n == nil || waID == "" {
		return false
	}
	ev.From, ev.Sent = n.self(), time.Now()
	body, err := json.Marshal(ev)
	if err != nil {
		return false
	}
	log, start := n.log.With(zap.String("call_id", waID)), time.Now()
	if !n.available() {
		n.broadcast(body, log)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	r, err := n.store.Route(ctx, waID, body, markEnded)
	cancel()
	m := n.g.ops.metrics.clusterForwards
	switch {
	case err != nil:
		n.setUp(false, err)
		n.broadcast(body, log)
		return false
	case r.Owner == n.self():
		return false
	case r.Held:
		m.WithLabelValues("held").Inc()
		log.Debug("webhook held in Redis for the instance that will own the call")
	case r.Ended:
		m.WithLabelValues("ended").Inc()
		log.Debug("webhook for a call that ended dropped")
	case r.Addr == "":
		m.WithLabelValues("orphaned").Inc()
		log.Warn("webhook for a call of a lost instance: another instance ends it (cluster lease)", zap.String("owner", r.Owner))
	default:
		n.forward(r.Owner, r.Addr, body, start, log)
	}
	return true
}

// broadcast sends an event to every instance last seen alive, for when
// Redis cannot say which owns its call: the owner takes it (a caller's
// terminate then still ends the call at once), the others remember it as
// they would Meta's. The event is handled here too.
func (n *clusterNode) broadcast(body []byte, log *zap.Logger) {
	peers := n.peers.Load()
	if peers == nil {
		return
	}
	for _, p := range *peers {
		n.forward(p.ID, p.Addr, body, time.Now(), log)
	}
}

// learnPeers keeps the other live instances for broadcast (and counts
// them for the metrics).
func (n *clusterNode) learnPeers(ctx context.Context) {
	live, err := n.store.Instances(ctx)
	if err != nil {
		return
	}
	n.g.ops.metrics.clusterInstances.Set(float64(len(live)))
	peers := make([]cluster.Instance, 0, len(live))
	for _, in := range live {
		if in.ID != n.self() && in.Addr != "" {
			peers = append(peers, in)
		}
	}
	n.peers.Store(&peers)
}

// forward posts the event to its owner on a goroutine of its own (its time
// from start, the webhook's routing, is observed) (bounded:
// beyond maxForwards in flight it is dropped, logged); the retries stop
// after forwardTimeout, and the call is then left to its owner's own
// timeouts, or to the reaper if the owner is lost.
func (n *clusterNode) forward(owner, addr string, body []byte, start time.Time, log *zap.Logger) {
	m := n.g.ops.metrics
	select {
	case n.forwards <- struct{}{}:
	default:
		m.clusterForwards.WithLabelValues("dropped").Inc()
		if ok, suppressed := n.downLog.Allow(); ok {
			log.Warn("webhook not passed on: too many forwards in flight", zap.Int("suppressed", suppressed))
		}
		return
	}
	go func() {
		defer func() { <-n.forwards }()
		ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
		defer cancel()
		if err := n.peer.Send(ctx, addr, body); err != nil {
			m.clusterForwards.WithLabelValues("failed").Inc()
			log.Warn("webhook not passed on to the call's owner: its own timeouts end the call, or the reaper if it is lost",
				zap.String("owner", owner), zap.Error(err))
			return
		}
		m.clusterForwards.WithLabelValues("sent").Inc()
		m.clusterForwardSeconds.Observe(time.Since(start).Seconds())
		log.Debug("webhook passed on to the call's owner", zap.String("owner", owner), zap.Duration("took", time.Since(start)))
	}()
}

// takeForwarded is the internal channel's handler: an event another
// instance passed on (HMAC checked), handled here as if Meta had sent it,
// once per (call id, event) like the webhook handler's dedupe.
func (n *clusterNode) takeForwarded(_ context.Context, body []byte) error {
	var ev forwardedEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.key() == "" {
		n.log.Warn("internal channel: event not understood, dropped", zap.Error(err))
		return nil // a retry would not help
	}
	m := n.g.ops.metrics.clusterForwards
	if !n.seen.add(ev.key()) {
		m.WithLabelValues("received_duplicate").Inc()
		return nil
	}
	m.WithLabelValues("received").Inc()
	n.take(ev)
	return nil
}

// take hands an event to the call here.
func (n *clusterNode) take(ev forwardedEvent) {
	switch {
	case ev.Call != nil:
		n.g.dispatchCallEvent(*ev.Call, false)
	case ev.Status != nil:
		n.g.dispatchStatus(*ev.Status, false)
	}
}

// place makes this instance the owner of a business-initiated call's
// WhatsApp call id, and returns the webhooks other instances left in
// Redis for it before it had one.
func (n *clusterNode) place(waID string, log *zap.Logger) []heldEvent {
	if n == nil || !n.available() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	raw, err := n.store.Place(ctx, waID)
	cancel()
	if err != nil {
		n.setUp(false, err)
		log.Warn("cluster: call not registered under its WhatsApp id: webhooks that land on other instances are lost", zap.Error(err))
		return nil
	}
	var out []heldEvent
	for _, b := range raw {
		var ev forwardedEvent
		if json.Unmarshal(b, &ev) != nil || !n.seen.add(ev.key()) {
			continue
		}
		out = append(out, heldEvent{call: ev.Call, status: ev.Status})
	}
	return out
}

// recentKeys remembers keys for a while (bounded: the oldest go first).
type recentKeys struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	at    map[string]time.Time
	order []recentKey
}

type recentKey struct {
	key string
	at  time.Time
}

func newRecentKeys(ttl time.Duration, max int) *recentKeys {
	return &recentKeys{ttl: ttl, max: max, at: map[string]time.Time{}}
}

// add says whether key is new (and remembers it).
func (r *recentKeys) add(key string) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.at[key]; ok && now.Sub(t) < r.ttl {
		return false
	}
	for len(r.order) > 0 && (len(r.order) >= r.max || now.Sub(r.order[0].at) >= r.ttl) {
		if old := r.order[0]; r.at[old.key].Equal(old.at) {
			delete(r.at, old.key)
		}
		r.order = r.order[1:]
	}
	r.at[key] = now
	r.order = append(r.order, recentKey{key, now})
	return true
}

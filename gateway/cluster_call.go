package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
)

// callCluster is a call's part in the cluster (or in the local limits of a
// gateway running alone): the key it was claimed under, what it counts
// toward the limits, and what another instance needs to end it.
type callCluster struct {
	mu       sync.Mutex // the lease loop's resync reads it
	key      string     // the call's key in the cluster (set even when Redis did not answer)
	id       string     // the key, once claimed in Redis ("" when not registered)
	waID     string     // a business-initiated call's WhatsApp id, once placed
	number   string     // the business number it counts toward
	admitted bool       // counted in Redis
	local    bool       // counted in the local limits
	released bool       // the call ended: nothing more to register
	info     []byte     // the last clusterCallInfo made
}

// clusterCallInfo is what the instance that reaps a lost one needs to end
// a call on both sides and write its record (JSON in Redis).
type clusterCallInfo struct {
	Direction     string           `json:"direction"`
	WACallID      string           `json:"wa_call_id,omitempty"`
	PhoneNumberID string           `json:"phone_number_id,omitempty"`
	Caller        string           `json:"caller,omitempty"`
	Route         string           `json:"route,omitempty"`
	Trunk         string           `json:"trunk,omitempty"`
	Started       time.Time        `json:"started"`
	Bridged       time.Time        `json:"bridged,omitzero"`
	Dialog        *sip.DialogState `json:"dialog,omitempty"` // the PBX's dialog, once confirmed
}

// clusterInfo is the call's state for the cluster now.
func (c *call) clusterInfo() clusterCallInfo {
	ci := clusterCallInfo{Direction: DirectionUserInitiated, WACallID: c.ev.CallID, PhoneNumberID: c.ev.PhoneNumberID,
		Caller: c.ev.CallerID(), Route: c.route.Name, Trunk: c.route.Trunk, Started: c.sm.enteredAt(stateNew)}
	if c.outbound {
		ci.Direction, ci.WACallID, ci.PhoneNumberID = DirectionBusinessInitiated, c.waCallID, c.out.pnid
		ci.Caller, ci.Route = c.out.user.String(), c.out.route.Name
		if c.agent != nil {
			ci.Trunk = c.agent.Trunk().Name
		}
	}
	if c.pbx != nil {
		ds := c.pbx.DialogState()
		ci.Dialog = &ds
	}
	ci.Bridged = c.sm.enteredAt(stateBridged)
	return ci
}

// claimCall registers a new call under id. It says whether the call is
// this instance's to take: false when another instance owns it (a
// duplicate connect delivered there too) or it already ended. When Redis
// cannot answer, the call goes on and admission applies redis_down.
func (g *Gateway) claimCall(c *call, id string, log *zap.Logger) bool {
	n := g.cl
	if n == nil {
		return true
	}
	info, _ := json.Marshal(c.clusterInfo())
	c.cl.mu.Lock()
	c.cl.key, c.cl.info = id, info // registered later if Redis does not answer now
	c.cl.mu.Unlock()
	if !n.available() {
		return true
	}
	ctx, cancel := context.WithTimeout(g.ctx, clusterOpTimeout)
	defer cancel()
	cl, err := n.store.Claim(ctx, id, info)
	switch {
	case err != nil:
		n.setUp(false, err)
		return true
	case cl.Won:
		c.cl.mu.Lock()
		c.cl.id = id
		c.cl.mu.Unlock()
		return true
	case cl.Ended:
		log.Info("connect ignored", zap.String("why", "the call already ended (cluster)"))
	case cl.Owner == n.self():
		log.Info("connect ignored", zap.String("why", "duplicate connect for a call this instance owns"))
	default:
		log.Info("connect ignored", zap.String("why", "another instance owns the call"), zap.String("owner", cl.Owner))
	}
	g.ops.metrics.clusterClaims.WithLabelValues("refused").Inc()
	return false
}

// saveClusterInfo updates the call's cleanup state in Redis (once its PBX
// dialog is confirmed, once Meta gave a business-initiated call its id).
func (c *call) saveClusterInfo() {
	n := c.g.cl
	if n == nil {
		return
	}
	info, _ := json.Marshal(c.clusterInfo())
	c.cl.mu.Lock()
	id := c.cl.id
	c.cl.info = info
	if c.outbound {
		c.cl.waID = c.waCallID
	}
	c.cl.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
	defer cancel()
	if err := n.store.SaveInfo(ctx, id, info); err != nil {
		n.setUp(false, err)
		c.log.Warn("cluster: call state not saved: if this instance is lost, the call is ended with Meta only", zap.Error(err))
	}
}

// admitLimits counts a new call toward max_calls and its number's
// max_calls: over the cluster when it runs as one, here otherwise.
func (g *Gateway) admitLimits(c *call, number string) (endCause, bool) {
	numberLimit := g.numberLimit(number)
	if n := g.cl; n != nil && n.available() {
		ctx, cancel := context.WithTimeout(g.ctx, clusterOpTimeout)
		a, err := n.store.Admit(ctx, number, numberLimit, g.cfg.MaxCalls)
		cancel()
		if err == nil {
			if !a.OK {
				return g.overLimit(a.Why, a.Total, a.Number), false
			}
			c.cl.mu.Lock()
			c.cl.number, c.cl.admitted = number, true
			c.cl.mu.Unlock()
			return endCause{}, true
		}
		n.setUp(false, err)
	}
	if n := g.cl; n != nil && n.cfg.RedisDown == RedisDownRefuse {
		g.ops.metrics.admissionRefused.WithLabelValues("cluster_unavailable").Inc()
		return endCause{kind: endRefused, outcome: OutcomeClusterDown, refusal: &refuseClusterDown,
			detail: "Redis unreachable: new calls are refused (cluster.redis_down: refuse)"}, false
	}
	ok, why, total, num := g.limits.admit(number, numberLimit, g.cfg.MaxCalls)
	if !ok {
		return g.overLimit(why, total, num), false
	}
	c.cl.mu.Lock()
	c.cl.number, c.cl.local = number, true
	c.cl.mu.Unlock()
	return endCause{}, true
}

func (g *Gateway) overLimit(why string, total, number int) endCause {
	g.ops.metrics.admissionRefused.WithLabelValues(why).Inc()
	detail := "max_calls reached: " + itoa(total) + " calls in progress"
	if why == "number_limit" {
		detail = "the number's max_calls reached: " + itoa(number) + " of its calls in progress"
	}
	return endCause{kind: endRefused, outcome: OutcomeOverLimit, refusal: &refuseOverLimit, detail: detail}
}

// numberLimit is numbers[].max_calls of a business number (Meta's limit
// for a number the config does not list).
func (g *Gateway) numberLimit(number string) int {
	for _, n := range g.cfg.Numbers {
		if n.PhoneNumberID == number && n.MaxCalls > 0 {
			return n.MaxCalls
		}
	}
	return DefaultNumberMaxCalls
}

// releaseCall gives back what the call took: its count toward the limits
// and its registration (its id is remembered as ended, cluster-wide).
func (g *Gateway) releaseCall(c *call) {
	c.cl.mu.Lock()
	id, number, admitted, local := c.cl.id, c.cl.number, c.cl.admitted, c.cl.local
	c.cl.admitted, c.cl.local, c.cl.id, c.cl.released = false, false, "", true
	c.cl.mu.Unlock()
	if local {
		g.limits.release(number)
	}
	n := g.cl
	if n == nil || (id == "" && !admitted) {
		return
	}
	waID := c.ev.CallID
	if c.outbound {
		waID = c.waCallID
	}
	n.endCall(clusterEnd{id: id, waID: waID, number: number, release: admitted})
}

// clusterEnd is what a call's end must record in Redis: its id ended
// (end), its count given back (release).
type clusterEnd struct {
	id, waID, number string
	release          bool
}

// maxLaterEnds bounds the ends kept while Redis does not answer; beyond,
// the counts of the calls dropped stay in Redis until this instance
// leaves or restarts.
const maxLaterEnds = 10000

// endCall records a call's end, or keeps it for when Redis answers again:
// until then the call would count toward the limits and be taken for live
// by a reaper.
func (n *clusterNode) endCall(e clusterEnd) {
	if !n.available() {
		n.keepEnd(e)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterOpTimeout)
	defer cancel()
	if e.id != "" {
		if err := n.store.End(ctx, e.id, e.waID); err != nil {
			n.setUp(false, err)
			n.keepEnd(e)
			return
		}
		e.id = ""
	}
	if e.release {
		if err := n.store.Release(ctx, e.number); err != nil {
			n.setUp(false, err)
			n.keepEnd(e)
		}
	}
}

func (n *clusterNode) keepEnd(e clusterEnd) {
	n.laterMu.Lock()
	defer n.laterMu.Unlock()
	if len(n.later) >= maxLaterEnds {
		n.laterDropped++
		return
	}
	n.later = append(n.later, e)
}

// flushEnds records the ends kept while Redis did not answer. After Redis
// lost its data (rejoined), the counts were rebuilt from the calls still
// up: the kept releases are dropped, the ends still marked.
func (n *clusterNode) flushEnds(rejoined bool) {
	n.laterMu.Lock()
	later, dropped := n.later, n.laterDropped
	n.later, n.laterDropped = nil, 0
	n.laterMu.Unlock()
	if dropped > 0 {
		n.log.Warn("cluster: call ends not kept while Redis was unreachable: their counts stay until this instance restarts", zap.Int("calls", dropped))
	}
	for _, e := range later {
		if rejoined {
			e.release = false
		}
		if e.id != "" || e.release {
			n.endCall(e)
		}
	}
	if len(later) > 0 {
		n.log.Info("cluster: call ends kept while Redis was unreachable recorded", zap.Int("calls", len(later)))
	}
}

// localLimits counts calls toward the limits on a gateway running alone.
type localLimits struct {
	mu       sync.Mutex
	total    int
	byNumber map[string]int
}

func newLocalLimits() *localLimits { return &localLimits{byNumber: map[string]int{}} }

func (l *localLimits) admit(number string, numberLimit, totalLimit int) (ok bool, why string, total, num int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	total, num = l.total, l.byNumber[number]
	switch {
	case totalLimit > 0 && total >= totalLimit:
		return false, "max_calls", total, num
	case numberLimit > 0 && num >= numberLimit:
		return false, "number_limit", total, num
	}
	l.total++
	l.byNumber[number]++
	return true, "", total + 1, num + 1
}

func (l *localLimits) release(number string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.byNumber[number]
	if !ok {
		return // not counted: nothing to give back
	}
	l.total--
	if n <= 1 {
		delete(l.byNumber, number)
		return
	}
	l.byNumber[number] = n - 1
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/gateway/cluster"
	"github.com/wagateway/wagateway/internal/ratelog"
)

// Several gateways as one (docs/cluster.md). The instance that takes a call
// owns it: a connect webhook's (user-initiated) or an agent's INVITE's
// (business-initiated). Ownership, the limits and each call's state for its
// cleanup live in Redis (gateway/cluster); a webhook that lands on another
// instance is passed to the owner (cluster_route.go); the calls of an
// instance whose lease lapsed are ended by another (cluster_reap.go).

// clusterStore is what the gateway needs of the shared store
// (cluster.Redis; see its methods for the Redis side).
type clusterStore interface {
	Instance() string
	Reincarnate() (string, error)
	Join(ctx context.Context) error
	Renew(ctx context.Context) (cluster.LeaseStatus, error)
	Leave(ctx context.Context) error
	Instances(ctx context.Context) ([]cluster.Instance, error)
	Claim(ctx context.Context, id string, info []byte) (cluster.Claim, error)
	SaveInfo(ctx context.Context, id string, info []byte) error
	Place(ctx context.Context, waID string) ([][]byte, error)
	Route(ctx context.Context, waID string, event []byte, markEnded bool) (cluster.Route, error)
	End(ctx context.Context, id, waID string) error
	Admit(ctx context.Context, number string, numberLimit, totalLimit int) (cluster.Admission, error)
	Release(ctx context.Context, number string) error
	Dead(ctx context.Context) ([]string, error)
	Reap(ctx context.Context, inst string, lockFor time.Duration) ([]cluster.Orphan, bool, error)
	Reaped(ctx context.Context, inst, id, waID string) error
	Forget(ctx context.Context, inst string) error
	Requests(op string) uint64
	Close() error
}

// peerSender carries an event to the instance owning its call (cluster.PeerClient).
type peerSender interface {
	Send(ctx context.Context, baseURL string, body []byte) error
}

// Bounds of the cluster's work.
const (
	clusterOpTimeout  = time.Second     // one Redis operation on a call's path
	forwardTimeout    = 6 * time.Second // one forward, its retries included
	maxForwards       = 256             // forwards in flight; beyond, events are dropped (logged)
	maxReapsAtOnce    = 8               // orphans ended at once
	clusterLogEvery   = 10 * time.Second
	forwardAttemptFor = 2 * time.Second
)

// clusterNode is this gateway's part in a cluster.
type clusterNode struct {
	g     *Gateway
	cfg   ClusterConfig
	store clusterStore
	peer  peerSender
	log   *zap.Logger

	up     atomic.Bool // Redis answered the last lease renewal
	joined atomic.Bool // the lease is held (false: running alone until Join succeeds)

	forwards chan struct{}                      // one token per forward in flight
	peers    atomic.Pointer[[]cluster.Instance] // the other live instances, as last seen (broadcast)
	seen     *recentKeys                        // forwarded events already taken here
	downLog  *ratelog.Limiter

	laterMu      sync.Mutex
	later        []clusterEnd // call ends Redis did not take (cluster_call.go)
	laterDropped int

	handler http.Handler // the internal channel's
	srv     *http.Server
	ln      net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newClusterNode(g *Gateway, cfg ClusterConfig, secrets *Secrets) (*clusterNode, error) {
	store, err := cluster.NewRedis(cluster.RedisConfig{
		Addrs:      cfg.Redis.Addresses,
		MasterName: cfg.Redis.MasterName,
		Password:   secrets.RedisPassword,
		DB:         cfg.Redis.DB,
		Prefix:     cfg.Redis.KeyPrefix,
		Node:       cfg.NodeID,
		Advertise:  strings.TrimSuffix(cfg.Advertise, "/"),
		Lease:      cfg.Lease,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n := &clusterNode{g: g, cfg: cfg, store: store, peer: cluster.NewPeerClient([]byte(secrets.ClusterSecret), forwardAttemptFor),
		log:      g.log.Named("cluster").With(zap.String("node", cfg.NodeID)),
		forwards: make(chan struct{}, maxForwards), seen: newRecentKeys(10*time.Minute, 20000),
		downLog: ratelog.New(clusterLogEvery, time.Now)}
	g.ops.metrics.reg.MustRegister(g.ops.metrics.clusterGauges()...)
	for _, op := range cluster.Ops {
		g.ops.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "cluster_redis_requests_total",
			Help:        "Requests to the cluster's Redis by operation (one round trip each; claim, admit, save_info, end, release per call, route per webhook landing on an instance that does not own its call, the rest background).",
			ConstLabels: prometheus.Labels{"op": op}}, func() float64 { return float64(store.Requests(op)) }))
	}
	clientLog, every := n.log.Named("redis"), ratelog.New(clusterLogEvery, time.Now)
	cluster.SetClientLog(func(msg string) { // one line per failing command otherwise
		if ok, suppressed := every.Allow(); ok {
			clientLog.Warn(msg, zap.Int("suppressed", suppressed))
		}
	})
	n.handler = cluster.NewPeerHandler([]byte(secrets.ClusterSecret), n.takeForwarded, n.log.Named("peer"))
	return n, nil
}

// start joins the cluster (or, with redis_down: alone, runs alone until
// Redis answers), binds the internal channel and starts the lease and
// reaper loops.
func (n *clusterNode) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Lease)
	err := n.store.Join(ctx)
	cancel()
	switch {
	case err == nil:
		n.joined.Store(true)
		n.up.Store(true)
		ictx, cancel := context.WithTimeout(context.Background(), clusterOpTimeout)
		n.learnPeers(ictx) // whom to tell while Redis is unreachable
		cancel()
	case n.cfg.RedisDown == RedisDownRefuse:
		_ = n.store.Close()
		return fmt.Errorf("cluster: Redis %s does not answer (cluster.redis_down: refuse; set alone to run without it): %w",
			strings.Join(n.cfg.Redis.Addresses, ","), err)
	default:
		n.log.Error("REDIS UNREACHABLE: THIS GATEWAY RUNS ALONE (cluster.redis_down: alone): limits are counted here only, "+
			"webhooks for calls not active here cannot be routed; it joins once Redis answers", zap.Error(err))
	}
	n.g.ops.metrics.clusterUp.Set(b2f(n.up.Load()))
	ln, err := listenOps("cluster", n.cfg.Listen, "", "")
	if err != nil {
		if n.joined.Load() {
			n.leave()
		}
		_ = n.store.Close()
		return err
	}
	n.ln = ln
	mux := http.NewServeMux()
	mux.Handle(cluster.PeerPath, n.handler)
	n.srv = n.g.serve("cluster", ln, mux)
	loops, cancelLoops := context.WithCancel(context.Background())
	n.cancel = cancelLoops
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.leaseLoop(loops) }()
	go func() { defer n.wg.Done(); n.reapLoop(loops) }()
	n.log.Info("cluster started", zap.Bool("joined", n.joined.Load()), zap.String("instance", n.self()),
		zap.String("advertise", n.cfg.Advertise), zap.String("listen", ln.Addr().String()), zap.Duration("lease", n.cfg.Lease))
	return nil
}

// stop ends the loops and the channel, then leaves: called once every call
// here has ended (a drained instance leaves nothing to reap).
func (n *clusterNode) stop(ctx context.Context) {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.srv != nil {
		_ = n.srv.Shutdown(ctx)
	}
	if n.joined.Load() && n.g.reg.count() == 0 {
		n.leave()
	}
	_ = n.store.Close()
}

func (n *clusterNode) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterOpTimeout)
	defer cancel()
	if err := n.store.Leave(ctx); err != nil {
		n.log.Warn("cluster leave failed: the other instances reap this one's (empty) entry when its lease lapses", zap.Error(err))
		return
	}
	n.log.Info("cluster left")
}

// leaseLoop renews the lease every third of it; a lease found lost is
// taken again (Redis restarted) or, if another instance reaped this one,
// its calls here are ended: Meta and the PBX were already told.
func (n *clusterNode) leaseLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.renew(ctx)
	}
}

func (n *clusterNode) renew(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, n.cfg.Lease/3)
	defer cancel()
	m := n.g.ops.metrics
	if !n.joined.Load() {
		if err := n.store.Join(ctx); err != nil {
			n.setUp(false, err)
			return
		}
		n.joined.Store(true)
		n.setUp(true, nil)
		n.log.Warn("Redis answers again: this gateway joined the cluster; its calls in progress are registered")
		n.resync(ctx, true)
		n.flushEnds(true)
		return
	}
	wasUp := n.up.Load()
	st, err := n.store.Renew(ctx)
	if err != nil {
		n.setUp(false, err)
		return
	}
	n.setUp(true, nil)
	switch st {
	case cluster.LeaseRejoined:
		m.clusterLease.WithLabelValues("rejoined").Inc()
		n.log.Warn("cluster lease was gone (Redis restarted or lost its data): taken again; calls in progress registered again")
		n.resync(ctx, true)
		n.flushEnds(true)
	case cluster.LeaseHeld:
		if !wasUp {
			n.resync(ctx, false) // the calls taken alone meanwhile
		}
		n.flushEnds(false)
	case cluster.LeaseReaped:
		m.clusterLease.WithLabelValues("reaped").Inc()
		calls := n.g.reg.snapshot()
		n.log.Error("another instance took this one for lost (its lease lapsed) and ended its calls with Meta and the PBX: ending them here",
			zap.Int("calls", len(calls)))
		for _, c := range calls {
			c.ops.hangup(errInstanceReaped)
		}
		// Its reaped mark stays a while: come back as a new incarnation.
		if id, err := n.store.Reincarnate(); err != nil {
			n.log.Error("cluster: no new instance id", zap.Error(err))
		} else {
			n.log.Warn("joining again as a new instance", zap.String("instance", id))
		}
		n.joined.Store(false) // the next renewal joins
	}
}

// setUp records whether Redis answers, logging each change (and failures
// at most every clusterLogEvery).
func (n *clusterNode) setUp(up bool, err error) {
	was := n.up.Swap(up)
	n.g.ops.metrics.clusterUp.Set(b2f(up))
	switch {
	case up && !was:
		n.log.Info("Redis answers again")
	case !up && was:
		n.log.Error("Redis unreachable: calls in progress go on; new calls follow cluster.redis_down",
			zap.String("redis_down", n.cfg.RedisDown), zap.Error(err))
	case !up:
		if ok, suppressed := n.downLog.Allow(); ok {
			n.log.Warn("Redis still unreachable", zap.Error(err), zap.Int("suppressed", suppressed))
		}
	}
}

// resync registers this instance's calls in Redis: ownership, cleanup
// state and their count toward the limits. rebuilt: Redis lost its data,
// every call is registered and counted again; else only those taken while
// Redis did not answer (running alone) are.
func (n *clusterNode) resync(ctx context.Context, rebuilt bool) {
	for _, c := range n.g.reg.snapshot() {
		c.cl.mu.Lock()
		key, id, waID, number, admitted, local, info := c.cl.key, c.cl.id, c.cl.waID, c.cl.number, c.cl.admitted, c.cl.local, c.cl.info
		c.cl.mu.Unlock()
		if key == "" || (id != "" && !rebuilt) {
			continue
		}
		cl, err := n.store.Claim(ctx, key, info)
		if err != nil || (!cl.Won && cl.Owner != n.self()) {
			n.log.Warn("cluster: call not registered", zap.String("call", key), zap.String("owner", cl.Owner), zap.Error(err))
			continue
		}
		if waID != "" {
			_, _ = n.store.Place(ctx, waID) // webhooks held meanwhile are lost: the call's own timeouts end it if need be
		}
		counted := false
		if count := (rebuilt && (admitted || local)) || (!rebuilt && local && !admitted); count && number != "" {
			_, err := n.store.Admit(ctx, number, 0, 0)
			counted = err == nil
		}
		c.cl.mu.Lock()
		if c.cl.released { // it ended meanwhile: undo
			c.cl.mu.Unlock()
			n.endCall(clusterEnd{id: key, waID: waID, number: number, release: counted})
			continue
		}
		c.cl.id, c.cl.admitted = key, admitted || counted
		c.cl.mu.Unlock()
	}
}

// self is this instance's id in the cluster.
func (n *clusterNode) self() string { return n.store.Instance() }

// available says whether the cluster can be used for a new call; when it
// cannot, redis_down says whether the call goes on alone.
func (n *clusterNode) available() bool { return n.joined.Load() && n.up.Load() }

// clusterReadiness is the cluster's part of /readyz. Redis being
// unreachable does not make the instance unready: every instance shares
// the one Redis, and a load balancer that took them all out would stop the
// webhooks of the calls in progress too.
type clusterReadiness struct {
	Node      string `json:"node"`
	Instance  string `json:"instance"`
	Redis     string `json:"redis"` // up, unreachable
	Joined    bool   `json:"joined"`
	RedisDown string `json:"redis_down"` // what new calls get while Redis is unreachable
	Note      string `json:"note,omitempty"`
}

func (n *clusterNode) readiness() *clusterReadiness {
	r := &clusterReadiness{Node: n.cfg.NodeID, Instance: n.self(), Redis: "up", Joined: n.joined.Load(), RedisDown: n.cfg.RedisDown}
	if !n.up.Load() {
		r.Redis = "unreachable"
		r.Note = "calls in progress go on; new calls are refused"
		if n.cfg.RedisDown == RedisDownAlone {
			r.Note = "running alone: calls in progress go on; new calls are taken and counted here only"
		}
	}
	return r
}

// errInstanceReaped ends the calls of an instance the cluster took for lost.
var errInstanceReaped = errors.New("cluster: this instance's lease lapsed and another instance ended its calls")

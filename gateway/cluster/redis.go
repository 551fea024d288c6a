package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults and bounds of RedisConfig.
const (
	DefaultPrefix      = "wagateway"
	DefaultLease       = 10 * time.Second
	MinLease           = time.Second
	DefaultDialTimeout = 2 * time.Second
)

// Lifetimes of the call keys.
const (
	callTTL   = 24 * time.Hour   // call:<id> and info:<id> of a live call
	endedTTL  = 30 * time.Minute // "!ended" answers late events of an ended call
	heldTTL   = 30 * time.Second // events waiting for an owner
	heldMax   = 8                // newest events held per call
	reapedTTL = time.Hour        // tells a reaped instance that came back
	ended     = "!ended"
)

// RedisConfig is the store's connection and identity. redis.NewUniversalClient
// picks the client from Addrs and MasterName; several addresses without a
// MasterName would make it a Redis Cluster client, which the one-slot keys
// allow but which is not tested.
type RedisConfig struct {
	Addrs       []string      // one address: a single server; several with MasterName: Sentinel (redis.NewUniversalClient)
	MasterName  string        // Sentinel master name
	Password    string        // never logged nor put in an error
	DB          int           // database number (not with a Redis Cluster)
	Prefix      string        // key prefix, default "wagateway"
	Node        string        // this node's configured id (required)
	Advertise   string        // URL the other instances reach this one's internal event channel at (required)
	Lease       time.Duration // default 10 s; min 1 s
	DialTimeout time.Duration // default 2 s (also read/write timeouts)
}

// Redis is the cluster's shared state in Redis. Every method is one round
// trip (two when the server lacks the script: EVALSHA, then EVAL), bounded
// by its ctx, and each dial, read and write by DialTimeout. It is safe for
// concurrent use.
type Redis struct {
	c      redis.UniversalClient
	prefix string                 // "{" + Prefix + "}:"
	id     atomic.Pointer[string] // this instance: Node + "-" + 8 random hex
	node   string
	reqs   map[string]*atomic.Uint64 // requests by operation (Ops); read-only map
	lease  time.Duration
	self   string // JSON of inst:<id>
}

// leaseValue is the JSON value of inst:<I>; the Lua scripts read "addr".
type leaseValue struct {
	Node  string    `json:"node"`
	Addr  string    `json:"addr"`
	Since time.Time `json:"since"`
}

// NewRedis validates cfg and builds the client; it does no I/O.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("cluster: redis config: %w", err)
	}
	id, err := newInstanceID(cfg.Node)
	if err != nil {
		return nil, err
	}
	self, err := json.Marshal(leaseValue{Node: cfg.Node, Addr: cfg.Advertise, Since: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("cluster: instance %s: %w", id, err)
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        cfg.Addrs,
		MasterName:   cfg.MasterName,
		Password:     cfg.Password,
		DB:           cfg.DB,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.DialTimeout,
		WriteTimeout: cfg.DialTimeout,
		// A caller's deadline shortens a command, not only DialTimeout.
		ContextTimeoutEnabled: true,
		// No blind re-send: Admit, Release and Claim are not idempotent, and
		// after a lost reply a re-sent script would count twice. The pool
		// drops connections the server closed before reusing them.
		MaxRetries: -1,
		// One dial attempt, so a call with Redis unreachable fails within
		// DialTimeout instead of five of them.
		DialerRetries: 1,
		// Our MULTIs are a few small commands: no second pool for them, whose
		// failed handshake would be retried on the main pool (twice the wait).
		PipelinePoolSize: -1,
		// Plain Redis and Sentinel: no maintenance push notifications to ask for.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DisableIdentity:          true,
	})
	r := &Redis{c: c, prefix: "{" + cfg.Prefix + "}:", node: cfg.Node, lease: cfg.Lease, self: string(self),
		reqs: make(map[string]*atomic.Uint64, len(Ops))}
	for _, op := range Ops {
		r.reqs[op] = new(atomic.Uint64)
	}
	r.id.Store(&id)
	return r, nil
}

// normalize applies the defaults and checks the rest. Its errors never
// quote the password.
func (cfg *RedisConfig) normalize() error {
	if len(cfg.Addrs) == 0 {
		return errors.New("no address")
	}
	for _, a := range cfg.Addrs {
		if strings.TrimSpace(a) == "" {
			return errors.New("empty address")
		}
	}
	if cfg.Node == "" {
		return errors.New("node id is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	// A brace would end the hash tag early and scatter the keys over slots.
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return fmt.Errorf("prefix %q: no braces", cfg.Prefix)
	}
	u, err := url.Parse(cfg.Advertise)
	if cfg.Advertise == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("advertise %q: an http(s) URL is required", cfg.Advertise)
	}
	switch {
	case cfg.Lease == 0:
		cfg.Lease = DefaultLease
	case cfg.Lease < MinLease:
		return fmt.Errorf("lease %v: at least %v", cfg.Lease, MinLease)
	}
	switch {
	case cfg.DialTimeout == 0:
		cfg.DialTimeout = DefaultDialTimeout
	case cfg.DialTimeout < 0:
		return fmt.Errorf("dial timeout %v: negative", cfg.DialTimeout)
	}
	if cfg.DB < 0 {
		return fmt.Errorf("db %d: negative", cfg.DB)
	}
	return nil
}

// Instance is this process's instance id: Node + "-" + 8 random hex.
func (r *Redis) Instance() string { return r.inst() }

func (r *Redis) inst() string { return *r.id.Load() }

// Ops names the store's operations: each is one request to Redis (two
// when the server lacks the script), counted by Requests.
var Ops = []string{"join", "renew", "leave", "instances", "claim", "save_info", "place", "route", "end",
	"admit", "release", "dead", "reap", "reaped", "forget"}

// Requests is how many times op was asked of Redis (0 for an unknown op).
func (r *Redis) Requests(op string) uint64 {
	if c := r.reqs[op]; c != nil {
		return c.Load()
	}
	return 0
}

func (r *Redis) count(op string) { r.reqs[op].Add(1) }

// Reincarnate gives this process a new instance id, for when another
// instance reaped this one (its reaped mark stays an hour): Join it next.
func (r *Redis) Reincarnate() (string, error) {
	id, err := newInstanceID(r.node)
	if err != nil {
		return "", err
	}
	r.id.Store(&id)
	return id, nil
}

func newInstanceID(node string) (string, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("cluster: instance id: %w", err)
	}
	return node + "-" + hex.EncodeToString(rnd[:]), nil
}

// Close closes the connections; it does not Leave.
func (r *Redis) Close() error {
	if err := r.c.Close(); err != nil {
		return fmt.Errorf("cluster: close redis: %w", err)
	}
	return nil
}

// key is name inside the prefix's hash tag: every key is in one Cluster
// slot, as the scripts build keys they were not passed.
func (r *Redis) key(name string) string { return r.prefix + name }

func (r *Redis) instKey(inst string) string  { return r.key("inst:" + inst) }
func (r *Redis) callsKey(inst string) string { return r.key("inst:" + inst + ":calls") }
func (r *Redis) loadKey(inst string) string  { return r.key("inst:" + inst + ":load") }
func (r *Redis) callKey(id string) string    { return r.key("call:" + id) }
func (r *Redis) infoKey(id string) string    { return r.key("info:" + id) }
func (r *Redis) heldKey(waID string) string  { return r.key("held:" + waID) }
func (r *Redis) instancesKey() string        { return r.key("instances") }
func (r *Redis) reapKey(inst string) string  { return r.key("reap:" + inst) }
func (r *Redis) reapedKey(inst string) string {
	return r.key("reaped:" + inst)
}

// ms is d in whole milliseconds, as PX and PEXPIRE take it.
func ms(d time.Duration) int64 { return d.Milliseconds() }

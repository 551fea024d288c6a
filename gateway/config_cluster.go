package gateway

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// ClusterConfig makes several gateways act as one (docs/cluster.md): call
// ownership, cluster-wide limits and the cleanup of a lost instance's calls
// in Redis; webhooks for a call another instance owns are passed to it over
// the internal channel (Listen/Advertise, HMAC with Secret). Without
// redis.addresses the gateway runs alone, as before.
type ClusterConfig struct {
	Redis ClusterRedisConfig `yaml:"redis"`
	// NodeID names this instance in logs, metrics and Redis (default: the
	// host name). A restart is a new incarnation of the same node.
	NodeID string `yaml:"node_id"`
	// Listen is the internal event channel's address (default ":9444").
	// Keep it on the private network: only the other instances use it.
	Listen string `yaml:"listen"`
	// Advertise is the URL the other instances reach Listen at, e.g.
	// http://10.0.1.5:9444 (required).
	Advertise string `yaml:"advertise"`
	// Secret keys the HMAC of the internal channel: the same on every
	// instance, at least 32 characters (required).
	Secret SecretRef `yaml:"secret"`
	// Lease is how long an instance counts as alive after its last renewal
	// (renewed every third of it); a lost instance's calls are ended by
	// another within about Lease and a half. Default 10s, 1s-5m.
	Lease time.Duration `yaml:"lease"`
	// RedisDown is what happens while Redis cannot be reached: refuse
	// (default) fails the start and rejects new calls while running; alone
	// runs as a single gateway (limits counted here only, no webhook
	// routing) with a loud warning. Calls in progress go on either way.
	RedisDown string `yaml:"redis_down"`
}

// ClusterRedisConfig says where the shared Redis is.
type ClusterRedisConfig struct {
	// Addresses: one host:port for a single server; several with
	// MasterName for Redis Sentinel.
	Addresses  []string  `yaml:"addresses"`
	MasterName string    `yaml:"master_name"`
	Password   SecretRef `yaml:"password"`
	DB         int       `yaml:"db"`
	// KeyPrefix starts every key (default "wagateway"): several clusters
	// may share one Redis with different prefixes.
	KeyPrefix string `yaml:"key_prefix"`
}

// cluster.redis_down values.
const (
	RedisDownRefuse = "refuse"
	RedisDownAlone  = "alone"
)

// Defaults and bounds of the cluster settings.
const (
	defaultClusterListen = ":9444"
	defaultClusterLease  = 10 * time.Second
	minClusterSecret     = 32
	// DefaultNumberMaxCalls is Meta's concurrent call limit per business
	// number (error 138002 beyond it).
	DefaultNumberMaxCalls = 1000
)

// Enabled says whether the gateway runs as part of a cluster.
func (c ClusterConfig) Enabled() bool { return len(c.Redis.Addresses) > 0 }

func (c *Config) applyClusterDefaults() {
	for i := range c.Numbers {
		if c.Numbers[i].MaxCalls == 0 {
			c.Numbers[i].MaxCalls = DefaultNumberMaxCalls
		}
	}
	cl := &c.Cluster
	if !cl.Enabled() {
		return
	}
	if cl.NodeID == "" {
		cl.NodeID, _ = os.Hostname()
	}
	if cl.Listen == "" {
		cl.Listen = defaultClusterListen
	}
	if cl.Lease == 0 {
		cl.Lease = defaultClusterLease
	}
	if cl.RedisDown == "" {
		cl.RedisDown = RedisDownRefuse
	}
	if cl.Redis.KeyPrefix == "" {
		cl.Redis.KeyPrefix = "wagateway"
	}
}

func (c *Config) validateCluster() []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }
	if c.MaxCalls < 0 {
		bad("max_calls", "%d must not be negative (0: no limit)", c.MaxCalls)
	}
	for i, n := range c.Numbers {
		if n.MaxCalls < 0 || n.MaxCalls > DefaultNumberMaxCalls {
			bad(fmt.Sprintf("numbers[%d].max_calls", i), "%d must lie within 1-%d (Meta's limit per number)", n.MaxCalls, DefaultNumberMaxCalls)
		}
	}
	cl := c.Cluster
	if !cl.Enabled() {
		if cl.Advertise != "" || cl.Secret != (SecretRef{}) || cl.Listen != "" {
			bad("cluster.redis.addresses", "required when cluster is configured (without it the gateway runs alone)")
		}
		return p
	}
	for i, a := range cl.Redis.Addresses {
		if err := checkHostPort(a, false); err != nil {
			bad(fmt.Sprintf("cluster.redis.addresses[%d]", i), "%v", err)
		}
	}
	if len(cl.Redis.Addresses) > 1 && cl.Redis.MasterName == "" {
		bad("cluster.redis.master_name", "several addresses are Sentinels: name the master (or give one address)")
	}
	if cl.Redis.DB < 0 || cl.Redis.DB > 15 {
		bad("cluster.redis.db", "%d must lie within 0-15", cl.Redis.DB)
	}
	if err := cl.Redis.Password.check(false); err != nil {
		bad("cluster.redis.password", "%v", err)
	}
	if strings.ContainsAny(cl.Redis.KeyPrefix, "{} \t\r\n") {
		bad("cluster.redis.key_prefix", "%q must not hold braces or spaces", cl.Redis.KeyPrefix)
	}
	if cl.NodeID == "" || len(cl.NodeID) > 64 || strings.ContainsAny(cl.NodeID, "{} \t\r\n:") {
		bad("cluster.node_id", "%q must be 1-64 characters without braces, colons or spaces", cl.NodeID)
	}
	if err := checkHostPort(cl.Listen, true); err != nil {
		bad("cluster.listen", "%v", err)
	}
	if u, err := url.Parse(cl.Advertise); cl.Advertise == "" {
		bad("cluster.advertise", "required: the URL the other instances reach cluster.listen at, e.g. http://10.0.1.5:9444")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		bad("cluster.advertise", "%q is not an http(s) URL of a host and port", cl.Advertise)
	}
	if err := cl.Secret.check(true); err != nil {
		bad("cluster.secret", "%v", err)
	}
	if cl.Lease < time.Second || cl.Lease > 5*time.Minute {
		bad("cluster.lease", "%v must lie within 1s-5m", cl.Lease)
	}
	if cl.RedisDown != RedisDownRefuse && cl.RedisDown != RedisDownAlone {
		bad("cluster.redis_down", "%q must be refuse or alone", cl.RedisDown)
	}
	return p
}

// resolveClusterSecrets reads the cluster's secrets (none when it runs
// alone); it returns the problems get did not report.
func (c *Config) resolveClusterSecrets(get func(field string, ref SecretRef, dst *string), s *Secrets) []string {
	if !c.Cluster.Enabled() {
		return nil
	}
	get("cluster.secret", c.Cluster.Secret, &s.ClusterSecret)
	get("cluster.redis.password", c.Cluster.Redis.Password, &s.RedisPassword)
	if n := len(s.ClusterSecret); n > 0 && n < minClusterSecret {
		return []string{fmt.Sprintf("cluster.secret: %d characters: at least %d are needed (e.g. openssl rand -hex 32)", n, minClusterSecret)}
	}
	return nil
}

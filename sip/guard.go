package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/internal/ratelog"
)

// Source filtering on the SIP port: only trunks may send requests.
//
// The UA takes requests only from its trunks' addresses (host names are
// resolved when the trunks are set) and their AllowFrom prefixes. Requests
// from anyone else are dropped before they are parsed: no response, so
// nothing to retransmit or reflect (RFC 3261 §17.2.1 would retransmit a
// final response to an INVITE until Timer H). Responses are not filtered
// here; they only match a transaction of ours by its branch. Each allowed
// source is also held to a request rate (a token bucket per address, shared
// by all transports): over UDP each datagram is charged before parsing;
// over TCP and TLS, where a read is no message, each request is charged
// once parsed, before any handling (UA.onRequest), and dropped unanswered
// over the rate. Over TCP and TLS a connection from a source that is not
// allowed is closed as it is accepted, before any read (guard_conn.go), and
// the connections open at once are bounded per source and in all; every
// chunk a connection still open brings from a source no longer allowed (a
// reload) is dropped. In-dialog requests must come from the dialog's peer
// (Call).

// Default per-source request rate on the SIP port.
const (
	// A trunk's own traffic at a thousand calls (BYEs as agents hang up,
	// re-INVITEs, INFO digits, its OPTIONS) stays far below this; a flood
	// from one address does not.
	DefaultRequestRate  = 500 // requests per second, per source address
	DefaultRequestBurst = 1000
	maxRateSources      = 1024 // sources tracked by the rate limiter
)

// dnsTimeout bounds the resolution of one trunk host name.
const dnsTimeout = 5 * time.Second

// source is an address allowed to send requests: a prefix, and a port
// unless any port will do (0).
type source struct {
	prefix netip.Prefix
	port   uint16
}

// sourceSet is the addresses allowed to send requests.
type sourceSet struct {
	byTrunk map[string][]source // trunk name → its addresses
	all     []source
	trunks  []*Trunk // as given to SetTrunks, in order
}

func (s *sourceSet) contains(a netip.AddrPort) bool { return sourcesContain(s.all, a) }

// containsIP reports whether ip may open a connection: from any port.
func (s *sourceSet) containsIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, src := range s.all {
		if src.prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// trunkFor is the trunk a request from a comes from: the one with the most
// specific match (longest prefix, then a matching port rather than any), the
// first listed on a tie; nil if none.
func (s *sourceSet) trunkFor(a netip.AddrPort) *Trunk {
	ip := a.Addr().Unmap()
	var (
		best  *Trunk
		score = -1
	)
	for _, t := range s.trunks {
		for _, src := range s.byTrunk[t.Name] {
			if !src.prefix.Contains(ip) || (src.port != 0 && src.port != a.Port()) {
				continue
			}
			sc := 2 * src.prefix.Bits()
			if src.port != 0 {
				sc++
			}
			if sc > score {
				best, score = t, sc
			}
		}
	}
	return best
}

func sourcesContain(ss []source, a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	for _, s := range ss {
		if s.prefix.Contains(ip) && (s.port == 0 || s.port == a.Port()) {
			return true
		}
	}
	return false
}

// hostSource is one address of a trunk's host. Over UDP a PBX sends its
// requests from the port it listens on (RFC 3261 §18.1.1, RFC 3581 §4), so
// the port is part of the match; over TCP and TLS a connection it opens
// comes from any port.
func hostSource(a netip.Addr, port uint16, transport string) source {
	a = a.Unmap()
	if transport != "udp" {
		port = 0
	}
	return source{prefix: netip.PrefixFrom(a, a.BitLen()), port: port}
}

// ParseAllowFrom parses a trunk's AllowFrom entry: an IP or a CIDR prefix.
func ParseAllowFrom(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP or CIDR prefix: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP or CIDR prefix: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// trunkSources resolves a trunk's host and adds its AllowFrom prefixes.
func trunkSources(ctx context.Context, t *Trunk) ([]source, error) {
	host, portStr, err := net.SplitHostPort(t.Address)
	if err != nil {
		return nil, fmt.Errorf("trunk %q address %q: %w", t.Name, t.Address, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	var out []source
	if a, err := netip.ParseAddr(host); err == nil {
		out = append(out, hostSource(a, uint16(port), t.transport()))
	} else {
		ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("trunk %q: resolve %q: %w", t.Name, host, err)
		}
		for _, a := range addrs {
			out = append(out, hostSource(a, uint16(port), t.transport()))
		}
	}
	for _, s := range t.AllowFrom {
		p, err := ParseAllowFrom(s)
		if err != nil {
			return nil, fmt.Errorf("trunk %q allow_from: %w", t.Name, err)
		}
		out = append(out, source{prefix: p})
	}
	return out, nil
}

// SetTrunks sets the trunks whose addresses may send requests to the UA
// (at start and on reload). Host names are resolved now, each bounded by
// ctx and 5 s; a trunk whose name does not resolve keeps the addresses it
// had, and the error names it. nil or empty turns the filter off: requests
// from any source are served (tests, tools), but in-dialog requests must
// still come from the dialog's peer.
func (u *UA) SetTrunks(ctx context.Context, trunks []*Trunk) error {
	if len(trunks) == 0 {
		u.sources.Store(nil)
		return nil
	}
	old := u.sources.Load()
	set := &sourceSet{byTrunk: make(map[string][]source, len(trunks))}
	var errs []error
	for _, t := range trunks {
		if t == nil {
			continue
		}
		ps, err := trunkSources(ctx, t)
		if err != nil {
			errs = append(errs, err)
			if old != nil {
				ps = old.byTrunk[t.Name]
			}
		}
		set.byTrunk[t.Name] = ps
		set.all = append(set.all, ps...)
		set.trunks = append(set.trunks, t)
	}
	u.sources.Store(set)
	u.log.Info("sip requests accepted only from trunks", zap.Int("trunks", len(set.byTrunk)), zap.Int("prefixes", len(set.all)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sip: trunk sources: %w", err)
	}
	return nil
}

// trunkFor is the configured trunk that a request from src comes from, nil
// if none (or the source filter is off: no trunks set).
func (u *UA) trunkFor(src string) *Trunk {
	a, ok := sourceAddr(src)
	set := u.sources.Load()
	if !ok || set == nil {
		return nil
	}
	return set.trunkFor(a)
}

// dialogPeers are the addresses a call's in-dialog requests may come from:
// the trunk's (as last resolved, else its literal address and AllowFrom) and
// src, the source of the message that set the dialog up (our INVITE's 2xx,
// or the PBX's INVITE).
func (u *UA) dialogPeers(t *Trunk, src string) []source {
	var out []source
	if set := u.sources.Load(); set != nil {
		out = append(out, set.byTrunk[t.Name]...)
	}
	if len(out) == 0 {
		host, portStr, _ := net.SplitHostPort(t.Address)
		port, _ := strconv.ParseUint(portStr, 10, 16)
		if a, err := netip.ParseAddr(host); err == nil {
			out = append(out, hostSource(a, uint16(port), t.transport()))
		}
		for _, s := range t.AllowFrom {
			if p, err := ParseAllowFrom(s); err == nil {
				out = append(out, source{prefix: p})
			}
		}
	}
	if a, ok := sourceAddr(src); ok {
		out = append(out, hostSource(a.Addr(), a.Port(), t.transport()))
	}
	return out
}

// sourceAddr parses a message's source ("host:port").
func sourceAddr(src string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// readFilter drops what may not reach sipgo's parser (see above). It runs on
// the transport's read goroutine, before parsing.
func (u *UA) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	var ap netip.AddrPort
	switch a := props.RemoteAddr.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		return data, nil
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	ip := ap.Addr()
	udp := strings.EqualFold(props.Transport, "udp")
	if bytes.HasPrefix(data, []byte("SIP/2.0 ")) {
		// A response, on any transport (a TCP or TLS connection we dialed
		// to a trunk address DNS named differently later included): only a
		// transaction of ours takes it, by its branch (RFC 3261 §17.1.3).
		return data, nil
	}
	if set := u.sources.Load(); set != nil && !set.contains(ap) {
		u.drops.notTrunk.Add(1)
		u.dropLog.log(u.log, "sip request from a source that is no trunk dropped", ip, &u.drops.notTrunk)
		return nil, nil
	}
	if udp && !u.limiter.allow(ip, time.Now()) {
		u.drops.rateLimited.Add(1)
		u.dropLog.log(u.log, "sip requests over the per-source rate dropped", ip, &u.drops.rateLimited)
		return nil, nil
	}
	return data, nil
}

// dropCounts are the UA's counts of dropped requests.
type dropCounts struct {
	notTrunk, rateLimited, notDialogPeer atomic.Uint64
	authFailed, overLimit                atomic.Uint64
	connNotTrunk, connOverLimit          atomic.Uint64 // TCP and TLS connections closed at accept
}

// rateLimitedStream reports whether a request parsed from a TCP or TLS
// stream is over its source's rate (counted and logged like UDP's); UDP's
// were charged before parsing (readFilter).
func (u *UA) rateLimitedStream(req *sip.Request) bool {
	if strings.EqualFold(req.Transport(), "udp") {
		return false
	}
	a, ok := sourceAddr(req.Source())
	if !ok || u.limiter.allow(a.Addr(), time.Now()) {
		return false
	}
	u.drops.rateLimited.Add(1)
	u.dropLog.log(u.log, "sip requests over the per-source rate dropped", a.Addr(), &u.drops.rateLimited)
	return true
}

// everyLog writes at most one line per interval (the rest are counted
// only): the drops a stranger can cause must not flood the log.
type everyLog struct {
	once sync.Once
	lim  *ratelog.Limiter
}

const dropLogInterval = 10 * time.Second

func (e *everyLog) log(l *zap.Logger, msg string, src netip.Addr, total *atomic.Uint64) {
	e.once.Do(func() { e.lim = ratelog.New(dropLogInterval, nil) })
	if ok, _ := e.lim.Allow(); !ok {
		return
	}
	l.Warn(msg, zap.Stringer("source", src), zap.Uint64("dropped_total", total.Load()),
		zap.Duration("next_line_after", dropLogInterval))
}

// rateLimiter is a token bucket per source address, over a bounded map.
type rateLimiter struct {
	rate  float64 // tokens per second; <= 0: no limit
	burst float64

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[netip.Addr]*bucket{}}
}

// allow takes a token from ip's bucket.
func (l *rateLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l == nil || l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= maxRateSources {
			l.sweep(now)
			if len(l.buckets) >= maxRateSources {
				return false // too many sources at once: the new one waits
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets sources whose bucket has refilled (idle ones).
func (l *rateLimiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for ip, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, ip)
		}
	}
}

package sip

import (
	"net"
	"net/netip"
	"sync"
)

// Connection guard on the TCP and TLS listeners (see guard.go).
//
// A connection whose peer is no trunk's address nor in a trunk's AllowFrom
// (any port: a PBX opens its connections from any port) is closed as it is
// accepted, before anything is read from it: before the TLS handshake on a
// TLS listener. The connections open at once are bounded per source address
// and in all; a connection beyond either bound is closed as it is accepted
// too. Neither is logged per connection (one line per dropLogInterval).
const (
	// MaxConnsPerSource bounds the TCP or TLS connections one address
	// holds open to the UA at once. A PBX uses one, or a few.
	MaxConnsPerSource = 64
	// MaxConns bounds the TCP or TLS connections open to the UA at once.
	MaxConns = 1024
)

// connGuard counts the connections the UA's listener accepted and has not
// closed.
type connGuard struct {
	perSource, total int // the bounds

	mu    sync.Mutex
	open  map[netip.Addr]int
	count int
}

func newConnGuard(perSource, total int) *connGuard {
	return &connGuard{perSource: perSource, total: total, open: map[netip.Addr]int{}}
}

// take counts a new connection from ip; false if over a bound.
func (g *connGuard) take(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.count >= g.total || g.open[ip] >= g.perSource {
		return false
	}
	g.count++
	g.open[ip]++
	return true
}

func (g *connGuard) release(ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.count--
	if g.open[ip]--; g.open[ip] <= 0 {
		delete(g.open, ip)
	}
}

// openConns is the number of guarded connections open now.
func (g *connGuard) openConns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.count
}

// guardListener closes, as they are accepted, the connections the UA does
// not take (UA.admit); it wraps the TCP listener, under TLS for a TLS one.
type guardListener struct {
	net.Listener
	u *UA
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := l.u.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// admit is c wrapped to give its place back when closed, or nil once it
// has closed c: a stranger's, or one over the bounds.
func (u *UA) admit(c net.Conn) net.Conn {
	var ip netip.Addr
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.AddrPort().Addr().Unmap()
	}
	if set := u.sources.Load(); set != nil && (!ip.IsValid() || !set.containsIP(ip)) {
		u.drops.connNotTrunk.Add(1) // counted before the close the peer sees
		_ = c.Close()
		u.connLog.log(u.log, "sip connection from a source that is no trunk closed", ip, &u.drops.connNotTrunk)
		return nil
	}
	if !u.conns.take(ip) {
		u.drops.connOverLimit.Add(1)
		_ = c.Close()
		u.connLog.log(u.log, "sip connection over the per-source or total bound closed", ip, &u.drops.connOverLimit)
		return nil
	}
	return &guardConn{Conn: c, release: func() { u.conns.release(ip) }}
}

// guardConn gives its place back once, when first closed.
type guardConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *guardConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// UAConfig configures the gateway's SIP user agent.
type UAConfig struct {
	ListenAddr  string // "127.0.0.1:5060"; port 0 = pick a free one
	Transport   string // "udp" (default), "tcp", "tls"
	TLSCertFile string // for a tls listener
	TLSKeyFile  string
	PublicHost  string // host put in Contact, Via and SDP c= (default: host of ListenAddr)
	RTPAddress  string // IP to bind RTP sockets on (default: host of ListenAddr)
	RTPPortMin  int    // even RTP ports are taken from [RTPPortMin, RTPPortMax];
	RTPPortMax  int    // both 0 = 20000-20999
	UserAgent   string // default "wagateway"
	Logger      *zap.Logger

	// Trunks are the PBXs that may send requests (see SetTrunks); none:
	// requests from any source are served.
	Trunks []*Trunk
	// RequestRate and RequestBurst bound the requests each source address
	// may send, over any transport (token bucket); beyond, requests are
	// dropped unanswered.
	// 0 = DefaultRequestRate / DefaultRequestBurst; RequestRate < 0: no limit.
	RequestRate  float64
	RequestBurst int
	// KeepaliveInterval is how often an established call probes the PBX
	// with in-dialog OPTIONS; KeepaliveMisses unanswered in a row end it
	// (EndReason "pbx_unreachable"). 0 = DefaultKeepaliveInterval; < 0 off.
	KeepaliveInterval time.Duration

	// OnInvite takes the calls trunks place to the gateway (a PBX agent
	// dialling a WhatsApp user). It is called on its own goroutine for each
	// new INVITE from a configured trunk that passed the source check and,
	// for a trunk with credentials, digest authentication; it must end the
	// call one way or another (InboundCall.Answer, Reject or Close). Close
	// does not wait for it to return. Unset: new INVITEs get 403.
	OnInvite func(*InboundCall)
	// MaxPendingInvites bounds the inbound INVITEs not yet answered or
	// refused; beyond, new ones get 503 with Retry-After.
	// 0 = DefaultMaxPendingInvites.
	MaxPendingInvites int
	// AuthRealm is the realm of our digest challenges to trunks with
	// credentials (default DefaultAuthRealm).
	AuthRealm string
	// AuthSHA256 offers SHA-256 digests (RFC 8760) before MD5 in those
	// challenges; off, MD5 only (what every PBX answers).
	AuthSHA256 bool
	// Trace logs every SIP message sent and received, at debug level
	// (trace.go): start line, headers and body, cut at MaxTraceMessage
	// bytes, credentials masked.
	Trace bool

	// tlsClient overrides the TLS client config used to dial TLS trunks
	// (tests trust their own CA with it).
	tlsClient *tls.Config
}

// Default RTP port range.
const (
	DefaultRTPPortMin = 20000
	DefaultRTPPortMax = 20999
)

// allowHeader lists what the UA answers to.
const allowHeader = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY"

// UA is the gateway's SIP user agent: it places calls (UAC), takes the
// calls trunks place to it (UAS, UAConfig.OnInvite) and serves the
// in-dialog requests of both.
type UA struct {
	cfg       UAConfig
	log       *zap.Logger
	transport string
	rtpIP     net.IP

	ctx    context.Context // cancelled by Close; bounds background work
	cancel context.CancelFunc

	mu    sync.Mutex
	state int // 0 new, 1 started, 2 closed
	st    *stack
	calls map[string]*Call
	// pending are the inbound INVITEs not yet answered or refused, by
	// dialog key (Call-ID and our To tag).
	pending map[string]*InboundCall
	wg      sync.WaitGroup

	auth *digestAuth

	strangerRTP atomic.Uint64 // RTP datagrams dropped by calls' sockets: not from the PBX
	rtpOpen     atomic.Int64  // calls' RTP sockets open now

	sources atomic.Pointer[sourceSet] // who may send requests; nil = anyone
	limiter *rateLimiter
	drops   dropCounts
	dropLog everyLog
	conns   *connGuard // TCP and TLS connections open (guard_conn.go)
	connLog everyLog   // connections closed at accept
	authLog everyLog   // wrong credentials
	busyLog everyLog   // INVITEs over MaxPendingInvites

	trace *tracer // nil unless UAConfig.Trace
}

// NewUA checks the config; nothing is bound until Start.
func NewUA(cfg UAConfig) (*UA, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "wagateway"
	}
	tr, err := normTransport(cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("sip: transport: %w", err)
	}
	if tr == "tls" && (cfg.TLSCertFile == "" || cfg.TLSKeyFile == "") {
		return nil, errors.New("sip: transport tls needs TLSCertFile and TLSKeyFile")
	}
	host, _, err := splitListen(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	if cfg.RTPAddress == "" {
		cfg.RTPAddress = host
	}
	rtpIP := net.ParseIP(cfg.RTPAddress)
	if rtpIP == nil {
		return nil, fmt.Errorf("sip: rtp address %q is not an IP address", cfg.RTPAddress)
	}
	if cfg.RTPPortMin == 0 && cfg.RTPPortMax == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = DefaultRTPPortMin, DefaultRTPPortMax
	}
	if cfg.RTPPortMin < 1024 || cfg.RTPPortMax > 65535 || cfg.RTPPortMax <= cfg.RTPPortMin {
		return nil, fmt.Errorf("sip: rtp port range %d-%d must lie within 1024-65535 and hold at least two ports", cfg.RTPPortMin, cfg.RTPPortMax)
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if cfg.RequestRate == 0 {
		cfg.RequestRate = DefaultRequestRate
	}
	if cfg.RequestBurst <= 0 {
		cfg.RequestBurst = max(DefaultRequestBurst, int(2*cfg.RequestRate))
	}
	for _, t := range cfg.Trunks {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("sip: %w", err)
		}
	}
	if cfg.MaxPendingInvites <= 0 {
		cfg.MaxPendingInvites = DefaultMaxPendingInvites
	}
	if cfg.AuthRealm == "" {
		cfg.AuthRealm = DefaultAuthRealm
	}
	if strings.ContainsAny(cfg.AuthRealm, "\"\\\r\n\x00") {
		return nil, fmt.Errorf("sip: auth realm %q holds a quote, backslash or line break", cfg.AuthRealm)
	}
	if strings.ContainsAny(cfg.PublicHost, " \t\r\n;<>\"@") {
		return nil, fmt.Errorf("sip: public host %q is not a host", cfg.PublicHost)
	}
	var trace *tracer
	if cfg.Trace {
		trace = newTracer(cfg.Logger)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &UA{
		trace:     trace,
		cfg:       cfg,
		log:       cfg.Logger,
		transport: tr,
		rtpIP:     rtpIP,
		ctx:       ctx,
		cancel:    cancel,
		calls:     map[string]*Call{},
		pending:   map[string]*InboundCall{},
		auth:      newDigestAuth(cfg.AuthRealm, cfg.AuthSHA256),
		limiter:   newRateLimiter(cfg.RequestRate, cfg.RequestBurst),
		conns:     newConnGuard(MaxConnsPerSource, MaxConns),
	}, nil
}

// Start binds the SIP listener and returns once it is bound; requests are
// served in the background until Close. ctx bounds the bind only.
func (u *UA) Start(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != 0 {
		return errors.New("sip: UA already started or closed")
	}
	if err := u.SetTrunks(ctx, u.cfg.Trunks); err != nil {
		// Served anyway: the trunk's requests are dropped until a reload
		// resolves it, its calls still go out.
		u.log.Warn("sip trunk addresses not all resolved", zap.Error(err))
	}
	st, err := newStack(ctx, stackConfig{
		listenAddr: u.cfg.ListenAddr,
		transport:  u.transport,
		certFile:   u.cfg.TLSCertFile,
		keyFile:    u.cfg.TLSKeyFile,
		publicHost: u.cfg.PublicHost,
		userAgent:  u.cfg.UserAgent,
		log:        u.log,
		tlsClient:  u.cfg.tlsClient,
		readFilter: u.tracedReadFilter,
		guard:      func(l net.Listener) net.Listener { return &guardListener{Listener: l, u: u} },
		trace:      u.trace,
	}, func(srv *sipgo.Server) {
		for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS, sip.UPDATE, sip.INFO, sip.NOTIFY, sip.REFER, sip.MESSAGE, sip.PRACK, sip.SUBSCRIBE, sip.REGISTER} {
			srv.OnRequest(m, u.onRequest)
		}
		srv.OnNoRoute(u.onRequest)
	})
	if err != nil {
		return err
	}
	u.st = st
	u.state = 1
	u.log.Info("sip listening", zap.String("addr", st.addr), zap.String("transport", st.transport), zap.String("contact", st.contact.Address.String()))
	return nil
}

// Addr is the bound host:port ("" before Start).
func (u *UA) Addr() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.st == nil {
		return ""
	}
	return u.st.addr
}

// PendingInvites is the number of inbound INVITEs not yet answered or
// refused.
func (u *UA) PendingInvites() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.pending)
}

// ActiveCalls is the number of established calls.
func (u *UA) ActiveCalls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

// Stats are the UA's counts of what it dropped from hostile or broken
// peers, since it was made.
type Stats struct {
	// StrangerRTPPackets: datagrams dropped by calls' RTP sockets because
	// they did not come from the PBX's negotiated address (RFC 4961 §5).
	StrangerRTPPackets uint64
	// RequestsNotFromTrunk: requests dropped unanswered because their
	// source is no trunk's address nor in a trunk's AllowFrom.
	RequestsNotFromTrunk uint64
	// RequestsRateLimited: requests dropped unanswered over the
	// per-source rate.
	RequestsRateLimited uint64
	// RequestsNotFromDialogPeer: in-dialog requests dropped because they
	// came from another address than the dialog's peer.
	RequestsNotFromDialogPeer uint64
	// ConnectionsNotFromTrunk: TCP or TLS connections closed as they were
	// accepted, before any read, because their source is no trunk's.
	ConnectionsNotFromTrunk uint64
	// ConnectionsOverLimit: TCP or TLS connections closed as they were
	// accepted because MaxConnsPerSource from that address, or MaxConns in
	// all, were open.
	ConnectionsOverLimit uint64
	// InvitesAuthFailed: inbound INVITEs refused with 403 because their
	// digest credentials were wrong.
	InvitesAuthFailed uint64
	// InvitesOverLimit: inbound INVITEs refused with 503 because
	// MaxPendingInvites were pending.
	InvitesOverLimit uint64
	// RTPPortsInUse: calls' RTP sockets open now (one port each, taken
	// from the RTP range); RTPPorts: the even ports of that range, the
	// most that can be open at once.
	RTPPortsInUse int64
	RTPPorts      int
}

// Stats returns the UA's drop counts.
func (u *UA) Stats() Stats {
	return Stats{
		StrangerRTPPackets:        u.strangerRTP.Load(),
		RequestsNotFromTrunk:      u.drops.notTrunk.Load(),
		RequestsRateLimited:       u.drops.rateLimited.Load(),
		RequestsNotFromDialogPeer: u.drops.notDialogPeer.Load(),
		ConnectionsNotFromTrunk:   u.drops.connNotTrunk.Load(),
		ConnectionsOverLimit:      u.drops.connOverLimit.Load(),
		InvitesAuthFailed:         u.drops.authFailed.Load(),
		InvitesOverLimit:          u.drops.overLimit.Load(),
		RTPPortsInUse:             u.rtpOpen.Load(),
		RTPPorts:                  rtpRangePorts(u.cfg.RTPPortMin, u.cfg.RTPPortMax),
	}
}

// Close sends BYE on the calls still up (best effort, bounded), stops
// listening and waits for background work. It is idempotent.
func (u *UA) Close() error {
	u.mu.Lock()
	if u.state == 2 {
		u.mu.Unlock()
		return nil
	}
	u.state = 2
	calls := make([]*Call, 0, len(u.calls))
	for _, c := range u.calls {
		calls = append(calls, c)
	}
	st := u.st
	u.mu.Unlock()

	if len(calls) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var wg sync.WaitGroup
		for _, c := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.hangup(ctx, "shutdown", shutdownReason)
			}()
		}
		wg.Wait()
		cancel()
	}
	u.cancel()
	u.wg.Wait()
	if st != nil {
		st.close()
	}
	return nil
}

// goBackground runs f on a goroutine that Close waits for; false if closing.
func (u *UA) goBackground(f func()) bool {
	if !u.enterBackground() {
		return false
	}
	go func() {
		defer u.wg.Done()
		f()
	}()
	return true
}

// runBackground runs f now, as background work Close waits for; it reports
// false, without running f, once the UA is closing.
func (u *UA) runBackground(f func()) bool {
	if !u.enterBackground() {
		return false
	}
	defer u.wg.Done()
	f()
	return true
}

// enterBackground counts one piece of background work for Close to wait for
// (the caller calls u.wg.Done when it ends); false once the UA is closing.
func (u *UA) enterBackground() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != 1 {
		return false
	}
	u.wg.Add(1)
	return true
}

func (u *UA) addCall(c *Call) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != 1 {
		return false
	}
	u.calls[c.key] = c
	return true
}

func (u *UA) removeCall(c *Call) {
	u.mu.Lock()
	if u.calls[c.key] == c {
		delete(u.calls, c.key)
	}
	u.mu.Unlock()
}

func (u *UA) lookupCall(req *sip.Request) *Call {
	key := requestKey(req)
	if key == "" {
		return nil
	}
	u.mu.Lock()
	c := u.calls[key]
	u.mu.Unlock()
	if c == nil || !c.d.matches(req) {
		return nil
	}
	return c
}

// onRequest serves every request the PBX sends us.
func (u *UA) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	if u.rateLimitedStream(req) {
		if tx != nil {
			tx.Terminate() // no response, as over UDP
		}
		return
	}
	if req.IsAck() {
		if c := u.lookupCall(req); c != nil && u.fromPeer(c, req) {
			c.onAck(req)
		}
		return // ACK has no response
	}
	if tx == nil {
		return
	}
	if requestKey(req) == "" { // outside any dialog
		switch req.Method {
		case sip.OPTIONS: // keepalive / qualify
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("Allow", allowHeader))
			res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
			respond(tx, res, u.log)
		case sip.INVITE:
			u.onInvite(req, tx)
		case sip.BYE, sip.CANCEL, sip.UPDATE, sip.INFO, sip.PRACK:
			respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil), u.log)
		default:
			res := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
			res.AppendHeader(sip.NewHeader("Allow", allowHeader))
			respond(tx, res, u.log)
		}
		return
	}
	c := u.lookupCall(req)
	if c == nil {
		if ic := u.lookupPending(req); ic != nil && req.Method == sip.BYE {
			ic.onEarlyBye(req, tx)
			return
		}
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil), u.log)
		return
	}
	if !u.fromPeer(c, req) {
		tx.Terminate() // no response: nothing to retransmit to a spoofer
		return
	}
	c.onRequest(req, tx)
}

// fromPeer reports whether an in-dialog request comes from the dialog's
// peer (the trunk's addresses or the 2xx's source), and counts it if not.
func (u *UA) fromPeer(c *Call, req *sip.Request) bool {
	a, ok := sourceAddr(req.Source())
	if ok && sourcesContain(c.peers, a) {
		return true
	}
	u.drops.notDialogPeer.Add(1)
	u.dropLog.log(c.log, "sip in-dialog request from another address than the dialog's peer dropped", a.Addr(), &u.drops.notDialogPeer)
	return false
}

// respond sends a response and logs a failure (responses are best effort).
func respond(tx sip.ServerTransaction, res *sip.Response, log *zap.Logger) {
	if err := tx.Respond(res); err != nil {
		log.Debug("sip respond failed", zap.Int("code", res.StatusCode), zap.Error(err))
	}
}

func splitListen(addr string) (string, int, error) {
	if addr == "" {
		return "", 0, errors.New("sip: listen address: empty")
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("sip: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("sip: listen address %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("sip: listen address %q: host must be an IP address", addr)
	}
	return host, port, nil
}

// stack is one sipgo user agent bound to one listener: what both the UA and
// the echo server run on.
type stack struct {
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	client    *sipgo.Client
	listener  io.Closer
	addr      string // bound host:port
	host      string // public host for Via, Contact and SDP
	port      int
	transport string // udp, tcp, tls
	contact   sip.ContactHeader
	served    chan struct{}
}

type stackConfig struct {
	listenAddr, transport, certFile, keyFile, publicHost, userAgent string
	log                                                             *zap.Logger
	tlsClient                                                       *tls.Config
	readFilter                                                      sip.TransportReadFilter         // nil: none
	guard                                                           func(net.Listener) net.Listener // wraps the TCP listener (under TLS); nil: none
	trace                                                           *tracer                         // nil: no SIP trace
}

func newStack(ctx context.Context, cfg stackConfig, register func(*sipgo.Server)) (*stack, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sip: start: %w", err)
	}
	host, _, err := splitListen(cfg.listenAddr)
	if err != nil {
		return nil, err
	}
	slogger := newSlog(cfg.log.Named("sipgo"))

	var (
		listener io.Closer
		bound    string
		serve    func(*sipgo.Server) error
		lc       net.ListenConfig
	)
	switch cfg.transport {
	case "udp":
		pc, err := lc.ListenPacket(ctx, "udp", cfg.listenAddr)
		if err != nil {
			return nil, fmt.Errorf("sip: listen udp %s: %w", cfg.listenAddr, err)
		}
		listener, bound = pc, pc.LocalAddr().String()
		served := pc
		if cfg.trace != nil {
			served = &tracePacketConn{PacketConn: pc, t: cfg.trace}
		}
		serve = func(s *sipgo.Server) error { return s.ServeUDP(served) }
	case "tcp", "tls":
		l, err := lc.Listen(ctx, "tcp", cfg.listenAddr)
		if err != nil {
			return nil, fmt.Errorf("sip: listen %s %s: %w", cfg.transport, cfg.listenAddr, err)
		}
		if cfg.guard != nil {
			// Under TLS: a refused connection is closed before its handshake.
			l = cfg.guard(l)
		}
		if cfg.transport == "tls" {
			cert, err := tls.LoadX509KeyPair(cfg.certFile, cfg.keyFile)
			if err != nil {
				l.Close()
				return nil, fmt.Errorf("sip: tls certificate: %w", err)
			}
			var tl net.Listener = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			if cfg.trace != nil {
				tl = &traceListener{Listener: tl, t: cfg.trace, transport: "tls"}
			}
			listener, bound = tl, l.Addr().String()
			serve = func(s *sipgo.Server) error { return s.ServeTLS(tl) }
		} else {
			var tl net.Listener = l
			if cfg.trace != nil {
				tl = &traceListener{Listener: l, t: cfg.trace, transport: "tcp"}
			}
			listener, bound = tl, l.Addr().String()
			serve = func(s *sipgo.Server) error { return s.ServeTCP(tl) }
		}
	default:
		return nil, fmt.Errorf("sip: transport %q", cfg.transport)
	}
	_, portStr, _ := net.SplitHostPort(bound)
	port, _ := strconv.Atoi(portStr)

	public := cfg.publicHost
	if public == "" {
		public = host
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			public = guessLocalIP()
		}
	}

	tlsClient := cfg.tlsClient
	if tlsClient == nil {
		tlsClient = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tpOpts := []sip.TransportLayerOption{sip.WithTransportLayerLogger(slogger)}
	if cfg.readFilter != nil {
		tpOpts = append(tpOpts, sip.WithTransportLayerReadFilter(cfg.readFilter))
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.userAgent),
		sipgo.WithUserAgentHostname(public),
		sipgo.WithUserAgenTLSConfig(tlsClient),
		sipgo.WithUserAgentTransportLayerOptions(tpOpts...),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(slogger),
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
				cfg.log.Debug("sip response matched no transaction", zap.Int("code", r.StatusCode))
			}),
		),
	)
	if err != nil {
		listener.Close()
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slogger))
	if err != nil {
		ua.Close()
		listener.Close()
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	copts := []sipgo.ClientOption{
		sipgo.WithClientLogger(slogger),
		sipgo.WithClientHostname(public),
		sipgo.WithClientPort(port),
		sipgo.WithClientNAT(), // Via ;rport (RFC 3581): answers come back to our source port through NAT
	}
	if cfg.transport == "udp" {
		// Send requests from the listening socket, so that responses and
		// in-dialog requests come back to the port in Via and Contact.
		copts = append(copts, sipgo.WithClientConnectionAddr(bound))
	}
	client, err := sipgo.NewClient(ua, copts...)
	if err != nil {
		ua.Close()
		listener.Close()
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	register(srv)

	s := &stack{
		ua: ua, srv: srv, client: client, listener: listener,
		addr: bound, host: public, port: port, transport: cfg.transport,
		served: make(chan struct{}),
	}
	s.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "wagateway", Host: public, Port: port}}
	if cfg.transport != "udp" {
		s.contact.Address.UriParams = sip.HeaderParams{{K: "transport", V: cfg.transport}}
	}
	go func() {
		defer close(s.served)
		if err := serve(srv); err != nil && !errors.Is(err, net.ErrClosed) {
			cfg.log.Debug("sip listener stopped", zap.Error(err))
		}
	}()
	if cfg.transport == "udp" {
		// sipgo registers the listening socket for outgoing requests from
		// the serve goroutine; wait (bounded) until it has, or the first
		// request would try to bind the same port again.
		pool := ua.TransportLayer().Pool("udp")
		for i := 0; i < 200; i++ {
			if c := pool.Get(bound); c != nil {
				_, _ = c.TryClose() // drop the reference Get took; a listener stays open
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return s, nil
}

// close stops the listener and the sipgo layers and waits for the serve loop.
func (s *stack) close() {
	_ = s.listener.Close()
	_ = s.ua.Close()
	select {
	case <-s.served:
	case <-time.After(5 * time.Second):
	}
}

// sipTransport is the transport name as it goes into messages.
func sipTransport(t string) string { return strings.ToUpper(t) }

// guessLocalIP picks an address to advertise when listening on a wildcard
// address without PublicHost: the first non-loopback IPv4, else 127.0.0.1.
func guessLocalIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// rtpRangePorts is the number of even ports in [lo, hi] (RTP takes even
// ports, RFC 3550 §11).
func rtpRangePorts(lo, hi int) int {
	first := lo + lo%2
	if first > hi {
		return 0
	}
	return (hi-first)/2 + 1
}

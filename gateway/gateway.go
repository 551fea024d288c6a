// Package gateway orchestrates calls: it takes Meta's call webhooks, routes
// each call to a SIP trunk, and runs the per-call state machine that joins
// the WhatsApp leg, the SIP leg and the media bridge.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// Gateway is the running daemon.
type Gateway struct {
	cfg   *Config
	log   *zap.Logger
	media *webrtc.Media
	// mediaPolls stop the media workers reading media's sockets.
	mediaPolls []func()
	ua         *sip.UA
	trunks     map[string]*sip.Trunk
	router     *Router
	reg        *registry

	// What the call machine drives: the real legs once Start has run,
	// fakes in call_test.go.
	graph    graphActions
	answerer webrtcAnswerer
	dialer   pbxDialer
	now      func() time.Time
	timeouts callTimeouts

	webhook *whatsapp.WebhookHandler
	httpSrv *http.Server
	httpLn  net.Listener
	tls     bool

	ctx    context.Context
	cancel context.CancelFunc
	calls  sync.WaitGroup
	once   sync.Once

	rmu           sync.RWMutex          // guards router, trunks, trunkPing and trunkMedia (SIGHUP reload swaps them)
	trunkPing     map[string]bool       // trunk name → watched with OPTIONS
	trunkMedia    map[string]trunkMedia // trunk name → how digits cross to it, its WhatsApp codec
	outbound      []OutboundRouteConfig // business-initiated calls' routes
	offerer       webrtcOfferer         // WebRTC legs that offer (business-initiated calls)
	perms         *permissions          // users' call permissions (business-initiated calls)
	account       *accountEvents        // Meta's account events (account_events.go)
	mediaAPI      mediaDownloader       // voicemail downloads (voicemail.go)
	voicemailJobs chan struct{}         // bounds the voicemail downloads at once
	settings      SettingsGraph         // numbers' calling settings, compared at start (settings_watch.go)
	ops           *gatewayOps           // metrics, call records, health, drain, admin (ops.go)
	cl            *clusterNode          // nil when the gateway runs alone (cluster.go)
	limits        *localLimits          // max_calls counted here (alone, or redis_down: alone)
	cancelCause   context.CancelCauseFunc
}

// keepalive maps sip.keepalive_interval to the UA's (0s: off).
func keepalive(d *time.Duration) time.Duration {
	if d == nil {
		return 0 // the UA's default
	}
	if *d == 0 {
		return -1
	}
	return *d
}

// New builds a gateway from a validated config and its resolved secrets.
// Nothing is bound until Start.
func New(cfg *Config, secrets *Secrets, log *zap.Logger) (*Gateway, error) {
	if log == nil {
		log = zap.NewNop()
	}
	trunks, pinged, media, err := buildTrunks(cfg, secrets)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:        cfg,
		log:        log,
		trunks:     trunks,
		trunkPing:  pinged,
		trunkMedia: media,
		router:     NewRouter(cfg.Numbers),
		outbound:   cfg.Outbound.Routes,
		reg:        newRegistry(30 * time.Minute),
		limits:     newLocalLimits(),
		now:        time.Now,
		timeouts:   defaultCallTimeouts,
	}
	g.router.now = func() time.Time { return g.now() } // route hours follow the gateway's clock
	// Look for the PBX's RTP five times per timeout (at most every 5 s), so
	// a silent PBX is noticed within pbx_rtp_timeout plus a fifth of it.
	if d := *cfg.Media.PBXRTPTimeout; d > 0 {
		g.timeouts.pbxWatch = min(g.timeouts.pbxWatch, d/5)
	}
	g.initOps(cfg, secrets)
	graph := whatsapp.NewGraphClient(whatsapp.GraphConfig{
		BaseURL:     cfg.WhatsApp.GraphBaseURL,
		Version:     cfg.WhatsApp.APIVersion,
		AccessToken: secrets.AccessToken,
		Timeout:     cfg.WhatsApp.GraphTimeout,
		Logger:      log.Named("graph"),
		OnRequest:   g.ops.metrics.graphRequest,
	})
	g.graph = graph
	g.mediaAPI = graph
	g.account = newAccountEvents()
	g.voicemailJobs = make(chan struct{}, maxVoicemailJobs)
	g.settings = graph
	g.perms = newPermissions(graph, g.ops.metrics, log.Named("permission"))
	if cfg.Cluster.Enabled() {
		if g.cl, err = newClusterNode(g, cfg.Cluster, secrets); err != nil {
			return nil, err
		}
	}
	var forward *whatsapp.ForwardConfig
	if u := cfg.Outbound.ForwardWebhooksURL; u != "" {
		forward = &whatsapp.ForwardConfig{URL: u, Logger: log.Named("forward")}
	}
	g.webhook = whatsapp.NewWebhookHandler(whatsapp.WebhookConfig{
		VerifyToken:       secrets.VerifyToken,
		AppSecret:         secrets.AppSecret,
		OnCall:            g.handleCallEvent,
		OnStatus:          g.handleStatus,
		OnPermissionReply: g.perms.reply,
		OnAccountEvent:    g.handleAccountEvent,
		OnVoicemail:       g.handleVoicemail,
		Forward:           forward,
		Logger:            log.Named("webhook"),
		OnResult:          g.ops.metrics.webhookResult,
	})
	return g, nil
}

// Start binds the WebRTC UDP port, the SIP listener and the HTTP listener.
func (g *Gateway) Start(ctx context.Context) error {
	g.ctx, g.cancelCause = context.WithCancelCause(context.Background())
	g.cancel = func() { g.cancelCause(context.Canceled) }
	for _, w := range g.cfg.Warnings() {
		g.log.Warn("config: " + w)
	}
	var err error
	g.media, err = webrtc.NewMedia(webrtc.MediaConfig{
		UDPPort:   g.cfg.WebRTC.UDPPort,
		ListenIPs: g.cfg.WebRTC.ListenIPs,
		PublicIPs: g.cfg.WebRTC.PublicIPs,
		Logger:    g.log.Named("webrtc"),
	})
	if err != nil {
		return err
	}
	g.pollMedia()
	if d := g.cfg.CallRecords.VoicemailDir; d != "" {
		if err := os.MkdirAll(d, 0o750); err != nil {
			g.closeMedia()
			return fmt.Errorf("call_records.voicemail_dir: %w", err)
		}
	}
	g.answerer = mediaAnswerer{g.media}
	g.offerer = mediaOfferer{g.media}
	trunks, _ := g.trunkSet()
	g.ua, err = sip.NewUA(sip.UAConfig{
		ListenAddr:  g.cfg.SIP.Listen,
		Transport:   g.cfg.SIP.Transport,
		TLSCertFile: g.cfg.SIP.TLSCertFile,
		TLSKeyFile:  g.cfg.SIP.TLSKeyFile,
		PublicHost:  g.cfg.SIP.PublicHost,
		RTPAddress:  g.cfg.SIP.RTPAddress,
		RTPPortMin:  g.cfg.SIP.RTPPortMin,
		RTPPortMax:  g.cfg.SIP.RTPPortMax,
		Logger:      g.log.Named("sip"),
		Trunks:      trunkList(trunks),
		OnInvite:    g.startOutbound,
		Trace:       g.cfg.Log.SIPTrace,

		KeepaliveInterval: keepalive(g.cfg.SIP.KeepaliveInterval),
	})
	if err != nil {
		g.closeMedia()
		return fmt.Errorf("sip: %w", err)
	}
	if err := g.ua.Start(ctx); err != nil {
		g.closeMedia()
		return fmt.Errorf("sip: %w", err)
	}
	g.dialer = uaDialer{g.ua}
	g.ops.metrics.watchSIP(g.ua.Stats)
	if g.cl != nil {
		// Joined before the webhook listener opens: no call is taken
		// before its ownership can be recorded.
		if err := g.cl.start(); err != nil {
			g.ua.Close()
			g.closeMedia()
			return err
		}
	}

	// The webhook listener faces the internet: the webhook, and a health
	// answer without detail if asked. /metrics, /readyz and the admin API
	// have their own listeners (startOps).
	mux := http.NewServeMux()
	mux.Handle(g.cfg.HTTP.WebhookPath, g.webhook)
	if p := g.cfg.HTTP.HealthPath; p != "" {
		mux.HandleFunc("GET "+p, g.servePublicHealth)
	}
	g.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	ln, err := listenOps("http", g.cfg.HTTP.Listen, g.cfg.HTTP.TLSCertFile, g.cfg.HTTP.TLSKeyFile)
	if err != nil {
		g.ua.Close()
		g.closeMedia()
		return err
	}
	g.tls = g.cfg.HTTP.TLSCertFile != ""
	g.httpLn = ln
	go func() {
		if err := g.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("http server stopped", zap.Error(err))
		}
	}()
	if err := g.startOps(); err != nil {
		_ = g.httpSrv.Close()
		g.ua.Close()
		g.closeMedia()
		return err
	}
	g.startCallingCheck()
	g.log.Info("gateway started", zap.String("webhook", g.WebhookURL()), zap.String("sip", g.ua.Addr()),
		zap.String("metrics", g.MetricsAddr()),
		zap.Int("trunks", len(g.trunks)), zap.Int("numbers", len(g.cfg.Numbers)))
	return nil
}

// WebhookURL is where this gateway takes webhooks (the bound address).
func (g *Gateway) WebhookURL() string {
	scheme := "http"
	if g.tls {
		scheme = "https"
	}
	addr := g.httpLn.Addr().String()
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "::" || host == "0.0.0.0") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return scheme + "://" + addr + g.cfg.HTTP.WebhookPath
}

// SIPAddr is the bound SIP listener.
func (g *Gateway) SIPAddr() string { return g.ua.Addr() }

// ActiveCalls counts the calls in progress.
func (g *Gateway) ActiveCalls() int { return g.reg.count() }

// handleCallEvent takes one webhook call event (already signature-checked
// and de-duplicated by the webhook handler).
func (g *Gateway) handleCallEvent(ev whatsapp.CallEvent) { g.dispatchCallEvent(ev, true) }

// handleStatus takes a status webhook of a business-initiated call
// (RINGING, ACCEPTED, REJECTED).
func (g *Gateway) handleStatus(st whatsapp.StatusEvent) { g.dispatchStatus(st, true) }

// dispatchCallEvent handles a call event here, or, in a cluster, passes it
// to the instance owning its call (fromMeta: Meta delivered it here; an
// event another instance passed on is never passed on again).
func (g *Gateway) dispatchCallEvent(ev whatsapp.CallEvent, fromMeta bool) {
	log := g.log.With(zap.String("call_id", ev.CallID))
	event := strings.ToLower(ev.Event)
	bic := strings.EqualFold(ev.Direction, "BUSINESS_INITIATED")
	switch {
	case event == "connect" && !bic:
		g.startCall(ev, log)
		return
	case event != "connect" && event != "terminate":
		log.Debug("ignoring call event", zap.String("event", ev.Event))
		return
	}
	if event == "terminate" && fromMeta {
		g.ops.metrics.terminateErrors(ev.Errors)
	}
	if fromMeta && g.reg.get(ev.CallID) == nil && g.cl.passOn(forwardedEvent{Call: &ev}, ev.CallID, event == "terminate") {
		return
	}
	if event == "connect" {
		g.handleAnswer(ev, log)
		return
	}
	if c := g.reg.get(ev.CallID); c != nil {
		c.callerTerminated(ev)
		return
	}
	// Terminate before connect (delivery order is not guaranteed):
	// remember it so the late connect is not answered, and hold it for
	// a business-initiated call whose Graph connect has not returned.
	g.reg.markEnded(ev.CallID)
	g.reg.hold(ev.CallID, heldEvent{call: &ev})
	log.Info("terminate for no active call: remembered", zap.String("status", ev.Status))
}

// handleAnswer takes the connect webhook of a business-initiated call: Meta's
// answer to our offer.
func (g *Gateway) handleAnswer(ev whatsapp.CallEvent, log *zap.Logger) {
	if c := g.reg.get(ev.CallID); c != nil && c.outbound {
		c.postMeta(metaEvent{answer: &ev})
		return
	}
	if !g.reg.hold(ev.CallID, heldEvent{call: &ev}) {
		log.Warn("answer for an unknown business-initiated call dropped: too many held")
		return
	}
	log.Debug("answer for a call not placed yet: held")
}

// dispatchStatus is dispatchCallEvent for statuses.
func (g *Gateway) dispatchStatus(st whatsapp.StatusEvent, fromMeta bool) {
	if c := g.reg.get(st.CallID); c != nil && c.outbound {
		c.postMeta(metaEvent{status: &st})
		return
	}
	if fromMeta && g.cl.passOn(forwardedEvent{Status: &st}, st.CallID, false) {
		return
	}
	if !g.reg.hold(st.CallID, heldEvent{status: &st}) {
		g.log.Warn("status for an unknown call dropped: too many held", zap.String("call_id", st.CallID))
	}
}

// startCall takes a connect webhook: the call it starts, or nil when the
// connect is not one to answer (business-initiated, a duplicate, a call
// already ended, or the gateway stopping).
func (g *Gateway) startCall(ev whatsapp.CallEvent, log *zap.Logger) *call {
	if ev.Direction != "" && !strings.EqualFold(ev.Direction, "USER_INITIATED") {
		log.Info("ignoring connect of a business-initiated call", zap.String("direction", ev.Direction))
		return nil
	}
	if g.ctx.Err() != nil {
		log.Warn("connect while stopping: not answered")
		return nil
	}
	c := newCall(g, ev)
	if g.reg.get(ev.CallID) == nil && !g.claimCall(c, ev.CallID, log) {
		return nil
	}
	// The call's context exists before the admin API can see the call.
	ctx := c.ops.bind(g.ctx)
	if ok, why := g.reg.begin(ev.CallID, c); !ok {
		c.ops.hangup(context.Canceled)
		g.releaseCall(c)
		log.Info("connect ignored", zap.String("why", why))
		return nil
	}
	g.calls.Add(1)
	go func() {
		defer g.calls.Done()
		defer g.reg.end(ev.CallID)
		defer g.releaseCall(c)
		c.run(ctx)
	}()
	return c
}

// Close ends every call on both sides (BYE and Graph terminate), then
// releases the listeners. It waits at most for ctx.
// pollMedia has the media workers read the ICE sockets while they have calls
// (rtpbridge.SharedSocket): no goroutine is woken per WhatsApp packet.
func (g *Gateway) pollMedia() {
	for _, s := range g.media.Sockets() {
		g.mediaPolls = append(g.mediaPolls, rtpbridge.PollShared(s))
	}
}

// closeMedia takes the ICE sockets off the media workers and closes them.
func (g *Gateway) closeMedia() error {
	for _, stop := range g.mediaPolls {
		stop()
	}
	g.mediaPolls = nil
	return g.media.Close()
}

func (g *Gateway) Close(ctx context.Context) error {
	var err error
	g.once.Do(func() {
		if g.cancel == nil {
			return
		}
		g.cancel()
		done := make(chan struct{})
		go func() { g.calls.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("gateway close: calls still ending: %w", ctx.Err())
		}
		if g.httpSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = g.httpSrv.Shutdown(sctx)
			cancel()
		}
		_ = g.webhook.Close() // delivers what is queued; calls are already ending
		if g.cl != nil {
			g.cl.stop(ctx) // leaves the cluster when no call is left here
		}
		g.stopOps(ctx) // trunk pings, admin API; call records flushed
		if g.ua != nil {
			_ = g.ua.Close()
		}
		if g.media != nil {
			_ = g.closeMedia()
		}
	})
	return err
}

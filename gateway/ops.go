package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/internal/ratelog"
	"github.com/wagateway/wagateway/sip"
)

// gatewayOps holds the operations side of a Gateway: metrics, call records,
// trunk health, drain state and the admin API.
type gatewayOps struct {
	metrics    *metrics
	records    *recorder
	monitor    *trunkMonitor
	adminToken string // never logged
	// recordsToken is call_records.url_token, also sent with forwarded
	// voicemails; never logged.
	recordsToken string
	draining     atomic.Bool
	started      atomic.Bool
	stopped      atomic.Bool

	admin   *http.Server
	adminLn net.Listener
	// The operational endpoints' own listener, when metrics.listen is not
	// the admin listener (nil otherwise).
	metricsSrv *http.Server
	metricsLn  net.Listener
	authLog    *ratelog.Limiter // admin auth failures: one warning per authLogEvery

	stop chan struct{}
	wg   sync.WaitGroup

	reloadMu sync.Mutex // one Reload at a time
}

// mediaFlushInterval is how often live calls' media counters reach the metrics.
const mediaFlushInterval = 5 * time.Second

// initOps builds the operations side (nothing bound yet); New calls it.
func (g *Gateway) initOps(cfg *Config, secrets *Secrets) {
	o := &gatewayOps{stop: make(chan struct{}), adminToken: secrets.AdminToken, authLog: ratelog.New(authLogEvery, time.Now)}
	o.metrics = newMetrics()
	o.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "active_calls",
		Help: "Calls in progress (from the connect webhook to the end of both legs)."},
		func() float64 { return float64(g.reg.count()) }))
	o.records = newRecorder(cfg.CallRecords, secrets.CallRecordsToken, g.log.Named("records"), o.metrics)
	o.recordsToken = secrets.CallRecordsToken
	o.monitor = newTrunkMonitor(cfg.Health, g.log.Named("health"), o.metrics)
	g.ops = o
}

// opsRoutes adds /metrics, /healthz and /readyz to the metrics listener
// (metrics.listen: its own, or the admin API's).
func (g *Gateway) opsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", g.ops.metrics.handler())
	mux.HandleFunc("GET /healthz", g.serveHealthz)
	mux.HandleFunc("GET /readyz", g.serveReadyz)
}

// startOps opens the call record file, starts the trunk pings, the media
// flush and the admin API. Start calls it once the listeners are bound.
func (g *Gateway) startOps() error {
	o := g.ops
	if err := o.records.start(); err != nil {
		return err
	}
	o.monitor.ping = g.ua.Options
	trunks, pinged := g.trunkSet()
	o.monitor.run(trunks, pinged)
	if g.cfg.Admin.Listen != "" {
		if err := g.startAdmin(); err != nil {
			o.monitor.stop()
			o.records.close(context.Background())
			return err
		}
	}
	if !g.cfg.MetricsShareAdmin() {
		if err := g.startMetrics(); err != nil {
			if o.admin != nil {
				_ = o.admin.Close()
			}
			o.monitor.stop()
			o.records.close(context.Background())
			return err
		}
	}
	o.wg.Add(1)
	go g.flushLoop()
	o.started.Store(true)
	return nil
}

// stopOps stops what startOps started; the records queue is flushed within ctx.
func (g *Gateway) stopOps(ctx context.Context) {
	o := g.ops
	if !o.started.Load() || o.stopped.Swap(true) {
		return
	}
	close(o.stop)
	o.wg.Wait()
	o.monitor.stop()
	for _, srv := range []*http.Server{o.admin, o.metricsSrv} {
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		}
	}
	o.records.close(ctx)
}

// startMetrics serves /metrics, /healthz and /readyz on metrics.listen
// when it is not the admin listener.
func (g *Gateway) startMetrics() error {
	o := g.ops
	mux := http.NewServeMux()
	g.opsRoutes(mux)
	ln, err := listenOps("metrics", g.cfg.Metrics.Listen, g.cfg.Metrics.TLSCertFile, g.cfg.Metrics.TLSKeyFile)
	if err != nil {
		return err
	}
	o.metricsLn = ln
	o.metricsSrv = g.serve("metrics", ln, mux)
	g.log.Info("metrics, /healthz and /readyz listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", g.cfg.Metrics.TLSCertFile != ""))
	return nil
}

// serve runs an operations HTTP server on ln (bounded header and body
// reads) until it is shut down; it logs if it stops any other way.
func (g *Gateway) serve(name string, ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error(name+" server stopped", zap.Error(err))
		}
	}()
	return srv
}

// listenOps binds an HTTP listener (section http, admin or metrics), with
// TLS 1.2+ when it has a certificate; errors name the section's fields.
func listenOps(section, addr, certFile, keyFile string) (net.Listener, error) {
	var cfg *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.tls_cert_file: %w", section, err)
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s.listen %s: %w", section, addr, err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// MetricsAddr is the bound listener of /metrics, /healthz and /readyz: the
// admin API's when they share it ("" before Start).
func (g *Gateway) MetricsAddr() string {
	switch {
	case g.ops.metricsLn != nil:
		return g.ops.metricsLn.Addr().String()
	case g.cfg.MetricsShareAdmin():
		return g.AdminAddr()
	}
	return ""
}

func (g *Gateway) flushLoop() {
	defer g.ops.wg.Done()
	t := time.NewTicker(mediaFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ops.stop:
			return
		case <-t.C:
			for _, c := range g.reg.snapshot() {
				c.ops.flushMedia(g.ops.metrics)
			}
			g.account.expire(g.now(), g.ops.metrics)
		}
	}
}

// routing returns the routes and trunks in force (SIGHUP may replace them).
func (g *Gateway) routing() (*Router, map[string]*sip.Trunk, map[string]trunkMedia) {
	g.rmu.RLock()
	defer g.rmu.RUnlock()
	return g.router, g.trunks, g.trunkMedia
}

// outboundRoutes returns the outbound routes in force (SIGHUP may replace them).
func (g *Gateway) outboundRoutes() []OutboundRouteConfig {
	g.rmu.RLock()
	defer g.rmu.RUnlock()
	return g.outbound
}

// trunkSet lists the trunks in force and which of them are pinged.
func (g *Gateway) trunkSet() (map[string]*sip.Trunk, map[string]bool) {
	g.rmu.RLock()
	defer g.rmu.RUnlock()
	pinged := make(map[string]bool, len(g.trunkPing))
	for k, v := range g.trunkPing {
		pinged[k] = v
	}
	return g.trunks, pinged
}

// Metrics serves the gateway's Prometheus metrics (also at /metrics).
func (g *Gateway) Metrics() http.Handler { return g.ops.metrics.handler() }

// Draining reports whether Drain has begun.
func (g *Gateway) Draining() bool { return g.ops.draining.Load() }

// Drain stops taking calls and lets the active ones end: new calls are
// rejected (Graph reject), /readyz answers 503, and calls in progress go on
// until they end or drain_timeout (or ctx) passes; the rest are then ended
// on both sides (SIP BYE or CANCEL, Graph terminate or reject). It returns
// once no call is left, or an error when some would not end. Close
// releases the listeners afterwards.
func (g *Gateway) Drain(ctx context.Context) error {
	if g.ctx == nil {
		return errors.New("gateway: drain before start")
	}
	g.ops.draining.Store(true)
	g.ops.metrics.draining.Set(1)
	timeout := g.cfg.DrainTimeout
	g.log.Info("draining: new calls are rejected; waiting for active calls",
		zap.Int("active", g.reg.count()), zap.Duration("drain_timeout", timeout))
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	if g.waitNoCalls(ctx, timer.C) {
		g.log.Info("drained: no call left")
		return nil
	}
	g.log.Warn("drain timeout: ending the remaining calls on both sides", zap.Int("active", g.reg.count()))
	g.cancelCause(errDrainTimeout)
	limit := time.NewTimer(15 * time.Second) // BYE and terminate, each bounded
	defer limit.Stop()
	if g.waitNoCalls(context.Background(), limit.C) {
		return nil
	}
	return errors.New("gateway: drain: calls still ending")
}

// waitNoCalls polls until no call is active (true) or until stop or ctx.
func (g *Gateway) waitNoCalls(ctx context.Context, stop <-chan time.Time) bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if g.reg.count() == 0 {
			return true
		}
		select {
		case <-stop:
			return g.reg.count() == 0
		case <-ctx.Done():
			return g.reg.count() == 0
		case <-t.C:
		}
	}
}

// HangupCall ends one active call on both sides, as the admin API does.
// It is false when no call has that id.
func (g *Gateway) HangupCall(callID string) bool {
	c := g.reg.get(callID)
	if c == nil {
		return false
	}
	g.log.Info("hanging up a call on request", zap.String("call_id", callID))
	return c.ops.hangup(errAdminHangup)
}

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
)

// trunkMonitor pings each trunk with SIP OPTIONS. A trunk whose pings go
// unanswered DownAfter times in a row is down until it answers again; new
// calls routed to it are rejected at once instead of ringing into nothing.
// A digest challenge (401/407) is an answer: the PBX is alive. The UA
// answers it with the trunk's credentials if it has some; credentials the
// trunk refuses keep it up but set auth_failed, since its calls fail too.
type trunkMonitor struct {
	cfg  HealthConfig
	log  *zap.Logger
	m    *metrics
	ping func(ctx context.Context, t *sip.Trunk) (sip.OptionsResult, error)

	mu     sync.Mutex
	states map[string]*trunkState
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// trunkState is one trunk's health, as /readyz shows it.
type trunkState struct {
	Pinged      bool      `json:"pinged"` // false: options_ping off, always taken as up
	Up          bool      `json:"up"`
	Answered    bool      `json:"answered"` // at least one answer since start or reload
	Failures    int       `json:"failures"` // unanswered pings in a row
	LastCode    int       `json:"last_code,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastRTTms   float64   `json:"last_rtt_ms,omitempty"`
	Since       time.Time `json:"since"` // of the current up/down state
	LastChecked time.Time `json:"last_checked,omitzero"`
	// AuthFailed: the trunk challenges OPTIONS and refuses its credentials
	// (challenged again), or its challenge cannot be answered. It is still
	// up (it answers), but calls to it will fail the same way.
	AuthFailed bool `json:"auth_failed,omitempty"`
	// InviteFailing: the trunk answers OPTIONS but refused the last
	// health.invite_failures INVITEs in a row (InviteFailures) with an
	// auth refusal (401/403/407 after the credentials), a 5xx, or no
	// response at all; InviteError says how the last one failed. Cleared by
	// the next INVITE the trunk takes (any other response: 2xx, or a user's
	// 486/480/404/603, shows it handles calls).
	InviteFailing  bool      `json:"invite_failing,omitempty"`
	InviteFailures int       `json:"invite_failures,omitempty"`
	InviteError    string    `json:"invite_error,omitempty"`
	InviteFailedAt time.Time `json:"invite_failed_at,omitzero"`

	auth sip.OptionsAuth // how the last answered ping's challenge went
}

func newTrunkMonitor(cfg HealthConfig, log *zap.Logger, m *metrics) *trunkMonitor {
	if cfg.InviteFailures <= 0 {
		cfg.InviteFailures = DefaultInviteFailures
	}
	return &trunkMonitor{cfg: cfg, log: log, m: m, states: map[string]*trunkState{}}
}

// run (re)starts the pingers for this set of trunks. States of trunks kept
// across a reload are kept; removed trunks are forgotten.
func (tm *trunkMonitor) run(trunks map[string]*sip.Trunk, pinged map[string]bool) {
	tm.stop()
	ctx, cancel := context.WithCancel(context.Background())
	tm.mu.Lock()
	tm.cancel = cancel
	states := make(map[string]*trunkState, len(trunks))
	for name := range trunks {
		st := tm.states[name]
		if st == nil || st.Pinged != pinged[name] {
			st = &trunkState{Pinged: pinged[name], Up: true, Since: time.Now()}
		}
		states[name] = st
	}
	for name := range tm.states {
		if states[name] == nil {
			tm.m.trunkUp.DeleteLabelValues(name)
			tm.m.trunkPingRTT.DeleteLabelValues(name)
			tm.m.trunkAuthFail.DeleteLabelValues(name)
			tm.m.trunkInviteFail.DeleteLabelValues(name)
		}
	}
	authFailed := make(map[string]bool, len(states))
	inviteFailing := make(map[string]bool, len(states))
	for name, st := range states {
		authFailed[name] = st.AuthFailed
		inviteFailing[name] = st.InviteFailing
	}
	tm.states = states
	tm.mu.Unlock()
	for name, t := range trunks {
		tm.m.trunkUp.WithLabelValues(name).Set(1)
		tm.m.trunkAuthFail.WithLabelValues(name).Set(b2f(authFailed[name]))
		tm.m.trunkInviteFail.WithLabelValues(name).Set(b2f(inviteFailing[name]))
		tm.m.knownTrunk(name)
		if !pinged[name] {
			continue
		}
		tm.wg.Add(1)
		go tm.loop(ctx, name, t)
	}
}

func (tm *trunkMonitor) stop() {
	tm.mu.Lock()
	cancel := tm.cancel
	tm.cancel = nil
	tm.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	tm.wg.Wait()
}

func (tm *trunkMonitor) loop(ctx context.Context, name string, t *sip.Trunk) {
	defer tm.wg.Done()
	tick := time.NewTicker(tm.cfg.OptionsInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, tm.cfg.OptionsTimeout)
		start := time.Now()
		res, err := tm.ping(pctx, t)
		rtt := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return
		}
		tm.result(name, t.Username, res, rtt, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// result takes one ping's outcome; user is the trunk's username (for the
// log of refused credentials; the password is never logged).
func (tm *trunkMonitor) result(name, user string, res sip.OptionsResult, rtt time.Duration, err error) {
	code := res.Code
	tm.mu.Lock()
	st := tm.states[name]
	if st == nil {
		tm.mu.Unlock()
		return
	}
	st.LastChecked = time.Now()
	wasUp, prevAuth := st.Up, st.auth
	if err == nil {
		st.Answered, st.Failures, st.LastCode, st.LastError = true, 0, code, ""
		st.LastRTTms = round2(float64(rtt) / float64(time.Millisecond))
		st.Up = true
		st.auth = res.Auth
		st.AuthFailed = authFailed(res.Auth)
	} else {
		st.Failures++
		st.LastError = err.Error()
		if st.Failures >= tm.cfg.DownAfter {
			st.Up = false
		}
	}
	if st.Up != wasUp {
		st.Since = time.Now()
	}
	up, failures, lastErr := st.Up, st.Failures, st.LastError
	tm.mu.Unlock()

	if err == nil {
		tm.m.trunkPingRTT.WithLabelValues(name).Set(rtt.Seconds())
		tm.m.trunkAuthFail.WithLabelValues(name).Set(b2f(authFailed(res.Auth)))
		if res.Auth != prevAuth {
			tm.logAuth(name, user, prevAuth, res)
		}
	}
	if up {
		tm.m.trunkUp.WithLabelValues(name).Set(1)
	} else {
		tm.m.trunkUp.WithLabelValues(name).Set(0)
	}
	switch {
	case up && !wasUp:
		tm.log.Info("trunk up again: answers OPTIONS", zap.String("trunk", name), zap.Int("code", code))
	case !up && wasUp:
		tm.log.Warn("trunk down: OPTIONS unanswered; its calls are rejected until it answers",
			zap.String("trunk", name), zap.Int("failures", failures), zap.String("error", lastErr))
	case err != nil:
		tm.log.Debug("trunk OPTIONS unanswered", zap.String("trunk", name), zap.Int("failures", failures), zap.Error(err))
	}
}

// inviteResult takes how one INVITE to the trunk went: failed (an auth
// refusal, a 5xx, no response at all; why says which) or not (the trunk
// took it). health.invite_failures failures in a row mark the trunk
// invite_failing, and /readyz not ready, until an INVITE is taken again.
func (tm *trunkMonitor) inviteResult(name string, failed bool, why string) {
	tm.mu.Lock()
	st := tm.states[name]
	if st == nil {
		tm.mu.Unlock()
		return
	}
	was := st.InviteFailing
	if failed {
		st.InviteFailures++
		st.InviteError, st.InviteFailedAt = why, time.Now()
		if st.InviteFailures >= tm.cfg.InviteFailures {
			st.InviteFailing = true
		}
	} else {
		st.InviteFailures, st.InviteFailing, st.InviteError, st.InviteFailedAt = 0, false, "", time.Time{}
	}
	now, n := st.InviteFailing, st.InviteFailures
	tm.mu.Unlock()
	tm.m.trunkInviteFail.WithLabelValues(name).Set(b2f(now))
	switch {
	case now && !was:
		tm.log.Warn("trunk refuses every INVITE: not ready until it takes a call (OPTIONS may still be answered)",
			zap.String("trunk", name), zap.Int("failures", n), zap.String("error", why))
	case was && !now:
		tm.log.Info("trunk takes INVITEs again", zap.String("trunk", name))
	}
}

// inviteFailure classifies an INVITE's end for trunk health: an auth
// refusal (the credentials were answered, or none are configured), a 5xx,
// or no response at all count as the trunk's failure; a final response
// of a user's (486, 480, 404, 603, …) or a 2xx show the trunk takes
// calls. code is the final response (0: none); responded is whether any
// response (even 100 Trying) came.
func inviteFailure(code int, reason string, responded bool, err error) (failed bool, why string) {
	switch {
	case code >= 200 && code < 300:
		return false, ""
	case code == 401 || code == 403 || code == 407 || code >= 500 && code < 600:
		return true, fmt.Sprintf("SIP %d %s", code, reason)
	case code != 0:
		return false, ""
	case responded:
		return false, "" // it answered (ringing) but the call went unanswered
	case err != nil:
		return true, "no response: " + err.Error()
	}
	return true, "no response"
}

func authFailed(a sip.OptionsAuth) bool {
	return a == sip.OptionsAuthRefused || a == sip.OptionsAuthUnanswerable
}

// logAuth logs a change in how the trunk's OPTIONS challenge goes, once per
// change rather than every ping. Refused credentials are a warning: calls
// to the trunk will be refused as well.
func (tm *trunkMonitor) logAuth(name, user string, prev sip.OptionsAuth, res sip.OptionsResult) {
	log := tm.log.With(zap.String("trunk", name), zap.Int("code", res.Code))
	switch res.Auth {
	case sip.OptionsAuthNoCredentials:
		log.Debug("trunk OPTIONS challenged, no credentials configured: counted as up, a challenge shows the PBX is alive")
	case sip.OptionsAuthRefused:
		log.Warn("trunk refuses the credentials (wrong username/password?): OPTIONS challenged again after answering with them; counted as up, but calls to it will fail too",
			zap.String("username", user))
	case sip.OptionsAuthUnanswerable:
		log.Warn("trunk OPTIONS challenge cannot be answered: counted as up, but calls to it may fail too",
			zap.String("username", user), zap.String("error", res.Detail))
	case sip.OptionsAuthAccepted:
		if authFailed(prev) {
			log.Info("trunk accepts the credentials again: OPTIONS answered after the digest challenge")
		} else {
			log.Debug("trunk OPTIONS challenged and answered with the trunk's credentials")
		}
	default:
		if authFailed(prev) {
			log.Info("trunk no longer challenges OPTIONS")
		} else {
			log.Debug("trunk no longer challenges OPTIONS")
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// down says whether calls to the trunk must be rejected, and why.
func (tm *trunkMonitor) down(name string) (bool, string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	st := tm.states[name]
	if st == nil || st.Up {
		return false, ""
	}
	return true, fmt.Sprintf("%d SIP OPTIONS pings unanswered since %s (last: %s)",
		st.Failures, st.Since.UTC().Format(time.RFC3339), st.LastError)
}

// ready is true when every pinged trunk has answered and none is down.
func (tm *trunkMonitor) ready() (bool, map[string]trunkState) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	ok := true
	out := make(map[string]trunkState, len(tm.states))
	for name, st := range tm.states {
		out[name] = *st
		if st.Pinged && (!st.Up || !st.Answered) || st.InviteFailing {
			ok = false
		}
	}
	return ok, out
}

// readiness is the /readyz answer.
type readiness struct {
	Ready     bool                  `json:"ready"`
	Listeners bool                  `json:"listeners"`
	Draining  bool                  `json:"draining"`
	Trunks    map[string]trunkState `json:"trunks"`
	Down      []string              `json:"not_ready_trunks,omitempty"`
	Why       []string              `json:"reasons,omitempty"` // why not ready, one line each
	Calls     int                   `json:"active_calls"`
	Cluster   *clusterReadiness     `json:"cluster,omitempty"`
}

// Ready reports whether the gateway should get new calls: its listeners are
// bound, every trunk answers OPTIONS and takes INVITEs (none is
// invite_failing), and it is not draining.
func (g *Gateway) Ready() bool { return g.readiness().Ready }

func (g *Gateway) readiness() readiness {
	r := readiness{
		Listeners: g.ops.started.Load() && !g.ops.stopped.Load(),
		Draining:  g.ops.draining.Load(),
		Calls:     g.reg.count(),
	}
	if g.cl != nil {
		r.Cluster = g.cl.readiness()
	}
	trunksOK, trunks := g.ops.monitor.ready()
	r.Trunks = trunks
	for name, st := range trunks {
		switch {
		case st.Pinged && !st.Up:
			r.Down = append(r.Down, name)
			r.Why = append(r.Why, fmt.Sprintf("trunk %s: %d SIP OPTIONS pings unanswered (last: %s)", name, st.Failures, st.LastError))
		case st.Pinged && !st.Answered:
			r.Down = append(r.Down, name)
			r.Why = append(r.Why, fmt.Sprintf("trunk %s: SIP OPTIONS not answered yet", name))
		case st.InviteFailing:
			r.Down = append(r.Down, name)
			r.Why = append(r.Why, fmt.Sprintf("trunk %s: invite_failing: %d INVITEs in a row refused or unanswered (last: %s)", name, st.InviteFailures, st.InviteError))
		}
	}
	sort.Strings(r.Down)
	sort.Strings(r.Why)
	if !r.Listeners {
		r.Why = append(r.Why, "listeners not bound")
	}
	if r.Draining {
		r.Why = append(r.Why, "draining")
	}
	r.Ready = r.Listeners && trunksOK && !r.Draining
	return r
}

func (g *Gateway) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

func (g *Gateway) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	r := g.readiness()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// servePublicHealth answers http.health_path on the webhook listener: 200
// when the gateway takes calls, 503 when not (draining, a trunk down,
// stopping), with no detail (that is /readyz on the metrics listener).
func (g *Gateway) servePublicHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !g.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("unavailable\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

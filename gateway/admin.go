package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The admin API, on its own listener (admin.listen), every request with
// "Authorization: Bearer <admin.token>":
//
//	GET    /admin/calls              the active calls with live media stats (JSON)
//	GET    /admin/calls/{id}         one call
//	POST   /admin/calls/{id}/hangup  end it on both sides (202; 404 if unknown)
//	DELETE /admin/calls/{id}         the same
//	GET    /admin/permissions/{phone_number_id}/{user}          a user's call permission (admin_permission.go)
//	POST   /admin/permissions/{phone_number_id}/{user}/request  send a call permission request
//	GET    /admin/account-events     Meta's account events (restrictions, violations, settings changes), latest last
//
// /metrics, /healthz and /readyz are served there too, without a token,
// when metrics.listen is admin.listen (its default when the admin API is on).
func (g *Gateway) startAdmin() error {
	o := g.ops
	if o.adminToken == "" {
		return errors.New("admin: admin.token resolved to nothing; the admin API is not served without one")
	}
	mux := http.NewServeMux()
	if g.cfg.MetricsShareAdmin() {
		g.opsRoutes(mux)
	}
	mux.Handle("GET /admin/calls", g.adminAuth(g.adminList))
	mux.Handle("GET /admin/calls/{id}", g.adminAuth(g.adminGet))
	mux.Handle("POST /admin/calls/{id}/hangup", g.adminAuth(g.adminHangup))
	mux.Handle("DELETE /admin/calls/{id}", g.adminAuth(g.adminHangup))
	mux.Handle("GET /admin/permissions/{pnid}/{user}", g.adminAuth(g.adminPermissionGet))
	mux.Handle("GET /admin/account-events", g.adminAuth(g.adminAccountEvents))
	mux.Handle("POST /admin/permissions/{pnid}/{user}/request", g.adminAuth(g.adminPermissionRequest))
	ln, err := listenOps("admin", g.cfg.Admin.Listen, g.cfg.Admin.TLSCertFile, g.cfg.Admin.TLSKeyFile)
	if err != nil {
		return err
	}
	o.adminLn = ln
	o.admin = g.serve("admin", ln, mux)
	g.log.Info("admin API listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", g.cfg.Admin.TLSCertFile != ""))
	return nil
}

// AdminAddr is the bound admin listener ("" when the admin API is off).
func (g *Gateway) AdminAddr() string {
	if g.ops.adminLn == nil {
		return ""
	}
	return g.ops.adminLn.Addr().String()
}

func (g *Gateway) adminAuth(h http.HandlerFunc) http.Handler {
	want := sha256.Sum256([]byte(g.ops.adminToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(given))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			g.ops.metrics.adminRequests.WithLabelValues("unauthorized").Inc()
			if ok, suppressed := g.ops.authLog.Allow(); ok {
				g.log.Warn("admin request refused: bad or missing token", zap.String("remote", r.RemoteAddr),
					zap.String("path", r.URL.Path), zap.Int("suppressed_since_last", suppressed),
					zap.Duration("log_every", authLogEvery))
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="wagateway-admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
}

func (g *Gateway) adminList(w http.ResponseWriter, _ *http.Request) {
	calls := g.reg.snapshot()
	out := make([]liveCall, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.live())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Connect.Before(out[j].Connect) })
	g.ops.metrics.adminRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"calls": out, "draining": g.Draining()})
}

func (g *Gateway) adminGet(w http.ResponseWriter, r *http.Request) {
	c := g.reg.get(r.PathValue("id"))
	if c == nil {
		g.ops.metrics.adminRequests.WithLabelValues("not_found").Inc()
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no active call with that id"})
		return
	}
	g.ops.metrics.adminRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, c.live())
}

func (g *Gateway) adminHangup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !g.HangupCall(id) {
		g.ops.metrics.adminRequests.WithLabelValues("not_found").Inc()
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no active call with that id"})
		return
	}
	g.ops.metrics.adminRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusAccepted, map[string]string{"call_id": id, "status": "hanging up"})
}

func (g *Gateway) adminAccountEvents(w http.ResponseWriter, _ *http.Request) {
	g.ops.metrics.adminRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"events": g.account.snapshot()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func sortStrings(s []string) { sort.Strings(s) }

// authLogEvery: at most one "admin request refused" line this often; the
// line counts those not logged since the previous one, and
// wagateway_admin_requests_total{result="unauthorized"} counts them all.
const authLogEvery = 10 * time.Second

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
)

// The admin API's call permissions (business-initiated calls), so a CRM
// can prepare permission before an agent dials:
//
//	GET  /admin/permissions/{phone_number_id}/{user}          Meta's current state of the user's permission
//	                                                           (fresh, not cached) and the replies the gateway took
//	POST /admin/permissions/{phone_number_id}/{user}/request  send a permission request; body (optional)
//	                                                           {"message": "…"} or {"template": "name", "language": "en_US"}
//
// user is an E.164 number (with or without +) or a BSUID.

// maxAdminBody bounds a request body.
const maxAdminBody = 16 << 10

type permissionView struct {
	PermissionState
	Replies []permissionReply `json:"replies,omitempty"`
}

func (g *Gateway) adminPermissionTarget(w http.ResponseWriter, r *http.Request) (string, waUser, bool) {
	pnid := r.PathValue("pnid")
	u, err := parseDialled(r.PathValue("user"))
	if err != nil || !pnidPattern.MatchString(pnid) {
		g.ops.metrics.adminRequests.WithLabelValues("bad_request").Inc()
		msg := "phone_number_id must be digits"
		if err != nil {
			msg = err.Error()
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
		return "", waUser{}, false
	}
	return pnid, u, true
}

func (g *Gateway) adminPermissionGet(w http.ResponseWriter, r *http.Request) {
	pnid, u, ok := g.adminPermissionTarget(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	perm, err := g.perms.state(ctx, pnid, u, true)
	if err != nil {
		g.adminGraphError(w, err)
		return
	}
	g.ops.metrics.adminRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, permissionView{PermissionState: permissionStateOf(pnid, u, perm),
		Replies: g.perms.repliesOf(pnid, userKey(pnid, u).user)})
}

func (g *Gateway) adminPermissionRequest(w http.ResponseWriter, r *http.Request) {
	pnid, u, ok := g.adminPermissionTarget(w, r)
	if !ok {
		return
	}
	var body struct {
		Message  string `json:"message"`
		Template string `json:"template"`
		Language string `json:"language"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err == nil && len(raw) > 0 {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		g.ops.metrics.adminRequests.WithLabelValues("bad_request").Inc()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	req, err := permissionRequestFor(g.outboundRoutes(), pnid,
		PermissionRequestBody{Message: body.Message, Template: PermissionTemplateConfig{Name: body.Template, Language: body.Language}})
	if err != nil {
		g.ops.metrics.adminRequests.WithLabelValues("bad_request").Inc()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	kind, err := g.perms.request(ctx, pnid, u, req.Message, req.Template)
	if err != nil {
		g.adminGraphError(w, err)
		return
	}
	g.ops.metrics.adminRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusAccepted, map[string]string{"phone_number_id": pnid, "user": u.String(), "sent": kind})
}

// adminGraphError answers a failed Graph request: Meta's error (its code,
// message and details) as 502, the API unreachable as 504.
func (g *Gateway) adminGraphError(w http.ResponseWriter, err error) {
	g.ops.metrics.adminRequests.WithLabelValues("upstream_error").Inc()
	var ge *whatsapp.GraphError
	if errors.As(err, &ge) {
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": ge.Message, "meta_code": ge.Code, "details": ge.Details})
		return
	}
	writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": err.Error()})
}

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
	PhoneNumberID string                      `json:"phone_number_id"`
	User          string                      `json:"user"`
	Status        string                      `json:"status"`
	Expires       time.Time                   `json:"expires,omitzero"`
	CanCall       bool                        `json:"can_call"`
	CanRequest    bool                        `json:"can_request"`
	Actions       []whatsapp.PermissionAction `json:"actions,omitempty"`
	Replies       []permissionReply           `json:"replies,omitempty"`
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
	writeJSON(w, http.StatusOK, permissionView{PhoneNumberID: pnid, User: u.String(), Status: perm.Status, Expires: perm.Expires,
		CanCall: perm.CanCall, CanRequest: perm.CanRequest, Actions: perm.Actions,
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
	msg, tmpl := body.Message, PermissionTemplateConfig{Name: body.Template, Language: body.Language}
	if msg == "" && tmpl.Name == "" {
		// The first outbound route of the number that has something to send.
		for _, rt := range g.outboundRoutes() {
			if allowedNumber(rt, pnid) && (rt.PermissionMessage != "" || rt.PermissionTemplate.Name != "") {
				msg, tmpl = rt.PermissionMessage, rt.PermissionTemplate
				break
			}
		}
	}
	if tmpl.Name != "" && tmpl.Language == "" {
		tmpl.Language = "en_US"
	}
	if msg == "" && tmpl.Name == "" {
		g.ops.metrics.adminRequests.WithLabelValues("bad_request").Inc()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "give a message or a template: no outbound route of this number has one"})
		return
	}
	if len([]rune(msg)) > maxPermissionBodyChars {
		g.ops.metrics.adminRequests.WithLabelValues("bad_request").Inc()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "message too long"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	kind, err := g.perms.request(ctx, pnid, u, msg, tmpl)
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

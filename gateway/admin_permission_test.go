package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wagateway/wagateway/whatsapp"
)

func TestAdminPermissions(t *testing.T) {
	m := newOutMachine(t, OutboundRouteConfig{Permission: PermissionRequest, PermissionMessage: "May we call?"})
	m.perms.perm = whatsapp.CallPermission{Status: "temporary", CanCall: true, CanRequest: false}
	m.g.perms.reply(whatsapp.PermissionReply{PhoneNumberID: testPNID, From: "14085551234", Accepted: true})

	get := httptest.NewRequest(http.MethodGet, "/admin/permissions/"+testPNID+"/+14085551234", nil)
	get.SetPathValue("pnid", testPNID)
	get.SetPathValue("user", "+14085551234")
	w := httptest.NewRecorder()
	m.g.adminPermissionGet(w, get)
	var view permissionView
	if err := json.Unmarshal(w.Body.Bytes(), &view); err != nil || w.Code != 200 {
		t.Fatalf("GET %d: %s", w.Code, w.Body)
	}
	if view.Status != "temporary" || !view.CanCall || len(view.Replies) != 1 || view.Replies[0].Response != "accept" {
		t.Errorf("view %+v", view)
	}

	post := func(user, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/admin/permissions/x/y/request", strings.NewReader(body))
		r.SetPathValue("pnid", testPNID)
		r.SetPathValue("user", user)
		w := httptest.NewRecorder()
		m.g.adminPermissionRequest(w, r)
		return w
	}
	if w := post("14085551234", ""); w.Code != http.StatusAccepted || !strings.Contains(w.Body.String(), "interactive") {
		t.Errorf("request with the route's message: %d %s", w.Code, w.Body)
	}
	if w := post("14085551234", `{"template":"callback_ok"}`); w.Code != http.StatusAccepted || !strings.Contains(w.Body.String(), "template") {
		t.Errorf("request with a template: %d %s", w.Code, w.Body)
	}
	if got := m.perms.sent(); len(got) != 2 || got[0] != "interactive:May we call?" || got[1] != "template:callback_ok" {
		t.Errorf("sent %v", got)
	}
	if w := post("not a user!", ""); w.Code != http.StatusBadRequest {
		t.Errorf("a bad user: %d", w.Code)
	}
	if w := post("14085551234", `{"message":`); w.Code != http.StatusBadRequest {
		t.Errorf("a bad body: %d", w.Code)
	}
	m.perms.reqErr = &whatsapp.GraphError{HTTPStatus: 400, Code: 138009, Message: "limit"}
	if w := post("14085551234", `{"message":"again"}`); w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "138009") {
		t.Errorf("Meta's refusal: %d %s", w.Code, w.Body)
	}
}

package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp"
)

// Call permissions outside a running gateway (wagateway permission status
// and request): the same Graph requests and the same choice of what to send
// as the admin API, with the config's whatsapp section and access token.

// PermissionTarget is one WhatsApp user of one business number.
type PermissionTarget struct {
	PhoneNumberID string
	user          waUser
}

// User names the user: +digits, or the BSUID.
func (t PermissionTarget) User() string { return t.user.String() }

// ParsePermissionTarget checks a Cloud API phone number ID (digits) and a
// user: an E.164 number with or without '+' (separators dropped, as in a
// dialled Request-URI) or a BSUID.
func ParsePermissionTarget(pnid, user string) (PermissionTarget, error) {
	if !pnidPattern.MatchString(pnid) {
		return PermissionTarget{}, fmt.Errorf("phone number ID %q is not a Cloud API phone number ID (digits)", pnid)
	}
	u, err := parseDialled(user)
	if err != nil {
		return PermissionTarget{}, fmt.Errorf("user: %w", err)
	}
	return PermissionTarget{PhoneNumberID: pnid, user: u}, nil
}

// PermissionState is a user's call permission as Meta has it (GET
// call_permissions), as the admin API and the CLI show it.
type PermissionState struct {
	PhoneNumberID string                      `json:"phone_number_id"`
	User          string                      `json:"user"`
	Status        string                      `json:"status"` // no_permission, temporary, permanent
	Expires       time.Time                   `json:"expires,omitzero"`
	CanCall       bool                        `json:"can_call"`
	CanRequest    bool                        `json:"can_request"`
	Actions       []whatsapp.PermissionAction `json:"actions,omitempty"`
}

func permissionStateOf(pnid string, u waUser, perm *whatsapp.CallPermission) PermissionState {
	return PermissionState{PhoneNumberID: pnid, User: u.String(), Status: perm.Status, Expires: perm.Expires,
		CanCall: perm.CanCall, CanRequest: perm.CanRequest, Actions: perm.Actions}
}

// PermissionRequestBody is what a call permission request sends: the
// free-form message, or the template (without a message, or outside the
// 24 h window).
type PermissionRequestBody struct {
	Message  string
	Template PermissionTemplateConfig
}

// PermissionRequestFor completes req for a business number of cfg: with
// neither a message nor a template, those of the first outbound route of
// the number that has one (as the admin API and permission: request do);
// a template's language defaults to en_US. The error says there is nothing
// to send, or the message is longer than Meta takes.
func PermissionRequestFor(cfg *Config, pnid string, req PermissionRequestBody) (PermissionRequestBody, error) {
	return permissionRequestFor(cfg.Outbound.Routes, pnid, req)
}

func permissionRequestFor(routes []OutboundRouteConfig, pnid string, req PermissionRequestBody) (PermissionRequestBody, error) {
	if strings.TrimSpace(req.Message) == "" {
		req.Message = ""
	}
	if req.Message == "" && req.Template.Name == "" {
		for _, rt := range routes {
			if allowedNumber(rt, pnid) && (rt.PermissionMessage != "" || rt.PermissionTemplate.Name != "") {
				req.Message, req.Template = rt.PermissionMessage, rt.PermissionTemplate
				break
			}
		}
	}
	if req.Template.Name != "" && req.Template.Language == "" {
		req.Template.Language = "en_US"
	}
	switch {
	case req.Message == "" && req.Template.Name == "":
		return req, errors.New("give a message or a template: no outbound route of this number has one")
	case len([]rune(req.Message)) > maxPermissionBodyChars:
		return req, fmt.Errorf("message too long: %d characters, at most %d", len([]rune(req.Message)), maxPermissionBodyChars)
	}
	return req, nil
}

// PermissionClient reads and requests users' call permissions with the
// config's whatsapp section (graph_base_url, api_version, graph_timeout)
// and its access token, outside a running gateway.
type PermissionClient struct {
	perms *permissions
}

// NewPermissionClient resolves whatsapp.access_token (and no other secret);
// an error is a *ConfigError.
func NewPermissionClient(cfg *Config) (*PermissionClient, error) {
	token, err := cfg.WhatsApp.AccessToken.Resolve()
	if err == nil && token == "" {
		err = errors.New("no value")
	}
	if err != nil {
		return nil, &ConfigError{Problems: []string{"whatsapp.access_token: " + err.Error()}}
	}
	graph := whatsapp.NewGraphClient(whatsapp.GraphConfig{
		BaseURL:     cfg.WhatsApp.GraphBaseURL,
		Version:     cfg.WhatsApp.APIVersion,
		AccessToken: token,
		Timeout:     cfg.WhatsApp.GraphTimeout,
	})
	return &PermissionClient{perms: newPermissions(graph, newMetrics(), zap.NewNop())}, nil
}

// Status asks Meta for the user's call permission (never cached).
func (c *PermissionClient) Status(ctx context.Context, t PermissionTarget) (PermissionState, error) {
	perm, err := c.perms.state(ctx, t.PhoneNumberID, t.user, true)
	if err != nil {
		return PermissionState{}, err
	}
	return permissionStateOf(t.PhoneNumberID, t.user, perm), nil
}

// Request sends a call permission request (req as PermissionRequestFor
// completes it): the message, or the template when there is no message or
// Meta says the user is outside the 24 h window (131047). It returns what
// went: "interactive" or "template".
func (c *PermissionClient) Request(ctx context.Context, t PermissionTarget, req PermissionRequestBody) (string, error) {
	return c.perms.request(ctx, t.PhoneNumberID, t.user, req.Message, req.Template)
}

// MetaError is Meta's refusal of a Graph request: its error object and the
// HTTP status it came with.
type MetaError struct {
	HTTPStatus, Code, Subcode int
	Message, Details          string
	FBTraceID                 string
}

// AsMetaError finds Meta's refusal in err; false when the request got no
// answer (network error, timeout) or was refused before it was sent.
func AsMetaError(err error) (MetaError, bool) {
	var ge *whatsapp.GraphError
	if !errors.As(err, &ge) {
		return MetaError{}, false
	}
	msg := ge.Message
	if msg == "" {
		msg = ge.UserMessage
	}
	return MetaError{HTTPStatus: ge.HTTPStatus, Code: ge.Code, Subcode: ge.Subcode,
		Message: msg, Details: ge.Details, FBTraceID: ge.FBTraceID}, true
}

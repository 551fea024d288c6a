package gateway

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/wagateway/wagateway/sip"
)

// OutboundConfig is business-initiated calls: agents dial WhatsApp users
// from the PBX (Meta's BIC). Absent, an INVITE from a trunk gets 403.
type OutboundConfig struct {
	Routes []OutboundRouteConfig `yaml:"routes"`
	// ForwardWebhooksURL: Meta allows one callback URL per app, so the
	// webhooks the gateway does not consume (chat messages, message
	// statuses, other fields) are POSTed here unchanged, signature and all,
	// e.g. to the business's messaging backend. Empty: they are dropped.
	ForwardWebhooksURL string `yaml:"forward_webhooks_url"`
}

// OutboundRouteConfig decides which business number places an agent's call
// and what happens without the user's call permission. Routes are tried in
// order; the first whose trunk and prefix match takes the call.
type OutboundRouteConfig struct {
	Name  string `yaml:"name"`
	Trunk string `yaml:"trunk"` // INVITEs from this trunk (required)
	// Prefix: dialled numbers that start with it (compared as +digits,
	// e.g. "+44"); empty takes every number and every BSUID.
	Prefix string `yaml:"prefix"`
	// PhoneNumberID is the business number that places the call, unless
	// PhoneNumberIDHeader names a header of the INVITE that gives it per
	// call (it must then be one of the numbers in phone_number_ids, or
	// this route's phone_number_id).
	PhoneNumberID       string   `yaml:"phone_number_id"`
	PhoneNumberIDHeader string   `yaml:"phone_number_id_header"`
	PhoneNumberIDs      []string `yaml:"phone_number_ids"` // the numbers the header may name
	// BizOpaqueHeader: a header of the INVITE whose value goes to Meta as
	// biz_opaque_callback_data (it comes back in the terminate webhook and
	// the call record). Default: the SIP Call-ID.
	BizOpaqueHeader string `yaml:"biz_opaque_header"`
	// Permission is what happens when the user has not granted call
	// permission: refuse (default) refuses at once; request sends a call
	// permission request, then refuses saying so; wait sends it and keeps
	// the agent's call ringing for PermissionWait, placing the call the
	// moment the user accepts.
	Permission     string        `yaml:"permission"`
	PermissionWait time.Duration `yaml:"permission_wait"` // with wait: default 60s, at most 5m
	// PermissionMessage is the body of the free-form permission request
	// (inside the 24 h customer service window); PermissionTemplate an
	// approved template with a call_permission_request component, used
	// outside it (or always, without a message).
	PermissionMessage  string                   `yaml:"permission_message"`
	PermissionTemplate PermissionTemplateConfig `yaml:"permission_template"`
	// RingTimeout ends a call Meta leaves ringing (default 60s).
	RingTimeout time.Duration `yaml:"ring_timeout"`
}

// PermissionTemplateConfig names an approved message template.
type PermissionTemplateConfig struct {
	Name     string `yaml:"name"`
	Language string `yaml:"language"` // default en_US
}

// Permission modes of an outbound route.
const (
	PermissionRefuse  = "refuse"
	PermissionRequest = "request"
	PermissionWait    = "wait"
)

const (
	defaultPermissionWait  = 60 * time.Second
	maxPermissionWait      = 5 * time.Minute
	defaultRingTimeout     = 60 * time.Second
	maxPermissionBodyChars = 1024 // Meta's limit for an interactive message body
	maxHeaderNameLen       = 64
)

var (
	pnidPattern   = regexp.MustCompile(`^[0-9]{1,32}$`)
	prefixPattern = regexp.MustCompile(`^\+?[0-9]{1,15}$`)
	headerPattern = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_` + "`" + `|~-]+$`) // an RFC 3261 token
)

func (c *Config) applyOutboundDefaults() {
	for i := range c.Outbound.Routes {
		r := &c.Outbound.Routes[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("outbound#%d", i)
		}
		if r.Permission == "" {
			r.Permission = PermissionRefuse
		}
		if r.Permission == PermissionWait && r.PermissionWait == 0 {
			r.PermissionWait = defaultPermissionWait
		}
		if r.RingTimeout == 0 {
			r.RingTimeout = defaultRingTimeout
		}
		if r.PermissionTemplate.Name != "" && r.PermissionTemplate.Language == "" {
			r.PermissionTemplate.Language = "en_US"
		}
	}
}

// validateOutbound returns the problems of the outbound section, each with
// its field.
func (c *Config) validateOutbound(trunks map[string]bool) []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }
	if u := c.Outbound.ForwardWebhooksURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			bad("outbound.forward_webhooks_url", "%q is not an http(s) URL", u)
		}
	}
	names := map[string]bool{}
	for i, r := range c.Outbound.Routes {
		f := fmt.Sprintf("outbound.routes[%d]", i)
		if names[r.Name] {
			bad(f+".name", "%q is used twice", r.Name)
		}
		names[r.Name] = true
		if !trunks[r.Trunk] {
			bad(f+".trunk", "%q is not a configured trunk", r.Trunk)
		}
		if r.Prefix != "" && !prefixPattern.MatchString(r.Prefix) {
			bad(f+".prefix", "%q is not a number prefix (+ and digits)", r.Prefix)
		}
		switch {
		case r.PhoneNumberID == "" && r.PhoneNumberIDHeader == "":
			bad(f+".phone_number_id", "required (or phone_number_id_header)")
		case r.PhoneNumberID != "" && !pnidPattern.MatchString(r.PhoneNumberID):
			bad(f+".phone_number_id", "%q is not a phone number ID (digits)", r.PhoneNumberID)
		}
		if h := r.PhoneNumberIDHeader; h != "" {
			if !headerPattern.MatchString(h) || len(h) > maxHeaderNameLen {
				bad(f+".phone_number_id_header", "%q is not a header name", h)
			}
			if len(r.PhoneNumberIDs) == 0 && r.PhoneNumberID == "" {
				bad(f+".phone_number_ids", "list the numbers the header may name")
			}
		}
		for j, id := range r.PhoneNumberIDs {
			if !pnidPattern.MatchString(id) {
				bad(fmt.Sprintf("%s.phone_number_ids[%d]", f, j), "%q is not a phone number ID (digits)", id)
			}
		}
		if h := r.BizOpaqueHeader; h != "" && (!headerPattern.MatchString(h) || len(h) > maxHeaderNameLen) {
			bad(f+".biz_opaque_header", "%q is not a header name", h)
		}
		switch r.Permission {
		case PermissionRefuse:
		case PermissionRequest, PermissionWait:
			if r.PermissionMessage == "" && r.PermissionTemplate.Name == "" {
				bad(f+".permission", "%q needs permission_message or permission_template to send", r.Permission)
			}
		default:
			bad(f+".permission", "%q is not refuse, request or wait", r.Permission)
		}
		if r.Permission == PermissionWait && (r.PermissionWait < time.Second || r.PermissionWait > maxPermissionWait) {
			bad(f+".permission_wait", "%v must lie within 1s-%v", r.PermissionWait, maxPermissionWait)
		}
		if n := len([]rune(r.PermissionMessage)); n > maxPermissionBodyChars {
			bad(f+".permission_message", "%d characters, at most %d", n, maxPermissionBodyChars)
		}
		if strings.ContainsAny(r.PermissionTemplate.Name, " \t\r\n") {
			bad(f+".permission_template.name", "%q is not a template name", r.PermissionTemplate.Name)
		}
		if r.RingTimeout < 5*time.Second || r.RingTimeout > 3*time.Minute {
			bad(f+".ring_timeout", "%v must lie within 5s-3m", r.RingTimeout)
		}
		if r.Permission == PermissionWait && r.PermissionWait+r.RingTimeout > sip.MaxRingDuration {
			// The agent's INVITE is answered 480 once it has rung that long.
			bad(f+".permission_wait", "%v plus ring_timeout %v exceeds the %v an agent's call may ring", r.PermissionWait, r.RingTimeout, sip.MaxRingDuration)
		}
	}
	return p
}

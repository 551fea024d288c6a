package gateway

import (
	"fmt"
	"strconv"
)

// refusal is the final response an agent's INVITE gets when the call cannot
// be placed or the user does not answer: a SIP status the PBX acts on, a
// Q.850 cause in the Reason header (RFC 3326) for its CDR, and a text for
// the agent in Reason and Warning (RFC 3261 §20.43, code 399).
type refusal struct {
	code   int
	phrase string
	q850   int
	text   string
	// metaCode is Meta's error code behind it, 0 if none.
	metaCode int
}

func (r *refusal) String() string {
	return strconv.Itoa(r.code) + " " + r.phrase + ": " + r.text
}

// metaRefusal is one row of the table from Meta's error codes (Graph
// connect, call permissions, the terminate webhook) to what the agent gets.
type metaRefusal struct {
	code   int
	phrase string
	q850   int
	text   string
}

// metaRefusals maps Meta's calling error codes (Cloud API Calling,
// "Troubleshooting") to SIP. Meta's own SIP mode answers a business-initiated
// INVITE it refuses with 403 for permission, limits and payment, 480 for an
// unreachable user and 503 when calling is unavailable; this table follows
// it. docs/outbound.md prints it.
var metaRefusals = map[int]metaRefusal{
	138006: {403, "Forbidden", 21, "no call permission from this WhatsApp user"},
	138009: {403, "Forbidden", 21, "call permission request limit reached for this user (1 a day, 2 a week)"},
	138012: {403, "Forbidden", 21, "daily limit of connected calls to this user reached (100 in 24 h)"},
	138013: {403, "Forbidden", 21, "business-initiated calling is not available for this business number"},
	138017: {403, "Forbidden", 21, "the user already granted permanent permission"},
	131044: {403, "Forbidden", 21, "no valid payment method on the WhatsApp Business Account"},
	138014: {503, "Service Unavailable", 63, "business-initiated calling paused for low call quality (7 days)"},
	138000: {503, "Service Unavailable", 63, "calling is not enabled on this business number"},
	138015: {503, "Service Unavailable", 63, "the number's messaging limit is too low for calling"},
	138002: {503, "Service Unavailable", 34, "concurrent call limit of the business number reached"},
	138005: {503, "Service Unavailable", 42, "call rate limit reached"},
	613:    {503, "Service Unavailable", 42, "Graph API rate limit reached"},
	138001: {480, "Temporarily Unavailable", 20, "the WhatsApp user cannot be called"},
	138003: {486, "Busy Here", 17, "a call to this user is already in progress"},
	138007: {408, "Request Timeout", 102, "WhatsApp did not get the call's media set up in time"},
	138019: {480, "Temporarily Unavailable", 41, "WhatsApp could not set the call up"},
	138020: {480, "Temporarily Unavailable", 41, "WhatsApp's media relay could not be reached"},
	100:    {500, "Server Internal Error", 41, "Meta refused the request's parameters (the SDP offer?)"},
}

// refusalForMeta is the refusal for Meta's error code; an unknown code is
// a 500 that names it.
func refusalForMeta(code int, detail string) *refusal {
	m, ok := metaRefusals[code]
	if !ok {
		m = metaRefusal{500, "Server Internal Error", 41, "WhatsApp refused the call"}
	}
	text := m.text + " (Meta error " + strconv.Itoa(code) + ")"
	if detail != "" && !ok {
		text += ": " + detail
	}
	return &refusal{code: m.code, phrase: m.phrase, q850: m.q850, text: text, metaCode: code}
}

// Refusals that do not come from a Meta error.
var (
	refuseUserDeclined  = refusal{code: 603, phrase: "Decline", q850: 21, text: "the WhatsApp user declined the call"}
	refuseNoAnswer      = refusal{code: 480, phrase: "Temporarily Unavailable", q850: 19, text: "the WhatsApp user did not answer"}
	refuseUnreachable   = refusal{code: 480, phrase: "Temporarily Unavailable", q850: 18, text: "the WhatsApp user could not be reached"}
	refuseGraphDown     = refusal{code: 503, phrase: "Service Unavailable", q850: 38, text: "the WhatsApp Cloud API could not be reached"}
	refuseMediaFailed   = refusal{code: 480, phrase: "Temporarily Unavailable", q850: 41, text: "the WhatsApp media connection failed"}
	refuseGatewayFailed = refusal{code: 500, phrase: "Server Internal Error", q850: 41, text: "gateway failure"}
	refuseDraining      = refusal{code: 503, phrase: "Service Unavailable", q850: 41, text: "gateway draining: call again"}
	refuseOverLimit     = refusal{code: 503, phrase: "Service Unavailable", q850: 34, text: "too many calls in progress (max_calls)"}
	refuseClusterDown   = refusal{code: 503, phrase: "Service Unavailable", q850: 41, text: "gateway cluster unavailable (Redis unreachable)"}
	refuseShutdown      = refusal{code: 503, phrase: "Service Unavailable", q850: 41, text: "gateway shutting down"}
)

// Refusals of the permission modes.
func refusePermissionRequested(kind string) *refusal {
	return &refusal{code: 403, phrase: "Forbidden", q850: 21,
		text: fmt.Sprintf("no call permission: a %s permission request was sent; call again once the user accepts", kind)}
}

func refusePermissionDeclined() *refusal {
	return &refusal{code: 603, phrase: "Decline", q850: 21, text: "the WhatsApp user declined the call permission request"}
}

func refusePermissionTimeout(wait fmt.Stringer) *refusal {
	return &refusal{code: 480, phrase: "Temporarily Unavailable", q850: 19,
		text: "the WhatsApp user did not answer the call permission request within " + wait.String()}
}

package gateway

import (
	"strings"

	"github.com/wagateway/wagateway/sip"
)

// Outcomes of a call, as logged, counted and written in its record.
const (
	OutcomeBridged      = "bridged"       // both sides talked; ended by either
	OutcomeNoRoute      = "no_route"      // rejected: nothing configured for it
	OutcomePBXRejected  = "pbx_rejected"  // the PBX answered with a final error (busy, decline, …)
	OutcomeNoAnswer     = "no_answer"     // the PBX did not answer within the route's answer_timeout
	OutcomeCallerHungUp = "caller_hungup" // the caller left before the call was bridged
	OutcomeFailed       = "failed"        // a local, media or Graph error
	OutcomeShutdown     = "shutdown"      // ended because the gateway stopped
	OutcomeTrunkDown    = "trunk_down"    // rejected at once: the route's trunk does not answer OPTIONS
	OutcomeDraining     = "draining"      // rejected: the gateway is draining (SIGTERM)
	OutcomeAdminHangup  = "admin_hangup"  // ended through the admin API
	OutcomeOverLimit    = "over_limit"    // rejected: max_calls or the number's max_calls reached (over the cluster)
	// OutcomeClusterDown: rejected: Redis unreachable and cluster.redis_down: refuse.
	OutcomeClusterDown = "cluster_unavailable"
	// OutcomePBXMediaTimeout: bridged, then the PBX sent no RTP for
	// media.pbx_rtp_timeout while not holding the call (dead or silent).
	OutcomePBXMediaTimeout = "pbx_media_timeout"
	// OutcomeNoMedia: accepted, but no audio ever arrived from one side or
	// both (the WebRTC leg never carried any, or the PBX sent none).
	OutcomeNoMedia = "no_media"
	// OutcomePBXUnreachable: the PBX stopped answering in-dialog OPTIONS
	// (sip.keepalive_interval): vanished, or lost the dialog.
	OutcomePBXUnreachable = "pbx_unreachable"

	// Business-initiated calls (an agent dials a WhatsApp user).
	OutcomeNoPermission        = "no_permission"        // refused: the user has not granted call permission (or a limit is reached)
	OutcomePermissionRequested = "permission_requested" // refused after sending a permission request (permission: request)
	OutcomePermissionDeclined  = "permission_declined"  // the user declined the request the agent's call waited for
	OutcomePermissionTimeout   = "permission_timeout"   // the user did not reply within permission_wait
	OutcomeMetaRefused         = "meta_refused"         // Graph connect refused (limits, quality pause, payment, …)
	OutcomeUserDeclined        = "user_declined"        // the user declined the ringing call
	OutcomeAgentCancelled      = "agent_cancelled"      // the agent hung up (CANCEL) before the user answered
)

// Who ended a call, in call records.
const (
	byCaller  = "caller"  // the WhatsApp user (terminate webhook)
	byPBX     = "pbx"     // BYE or a final error response from the PBX
	byGateway = "gateway" // a timeout, a failure, a refusal, shutdown or drain
	byAdmin   = "admin"   // the admin API
	// byUser is the WhatsApp user of a business-initiated call (who was
	// called, not the caller).
	byUser = "whatsapp_user"
)

// endKind is what ended a call: the first thing that happened that it
// could not go on after. Everything after it is clean-up.
type endKind uint8

const (
	endNoRoute         endKind = iota + 1 // no route for the number and payloads
	endDraining                           // admission refused: draining
	endTrunkDown                          // admission refused: the route's trunk is down
	endAnswerFailed                       // the offer could not be answered
	endGraphFailed                        // a Graph action (pre_accept, accept) failed or timed out
	endPBXRejected                        // the PBX's final error response
	endNoAnswer                           // the route's answer_timeout passed while ringing
	endInviteFailed                       // the INVITE failed without a final response (transport, timeout)
	endBridgeFailed                       // the media bridge could not be built
	endCallerHungUp                       // Meta's terminate webhook
	endPBXHungUp                          // the PBX's BYE
	endMediaFailed                        // the WebRTC leg failed (ICE consent, DTLS) and no terminate came
	endShutdown                           // the gateway stopped
	endDrainTimeout                       // drain_timeout passed with the call still up
	endAdmin                              // the admin API
	endStateError                         // an illegal state transition (a bug)
	endPBXMediaTimeout                    // no RTP from the PBX for media.pbx_rtp_timeout, not on hold
	endPBXUnreachable                     // the PBX stopped answering in-dialog OPTIONS
	// Business-initiated calls.
	endRefused        // refused before Meta rang the user: routing, permission, Graph connect (cause.outcome, cause.refusal)
	endUserDeclined   // the user declined the ringing call (REJECTED)
	endAgentCancelled // the PBX CANCELled the agent's INVITE
)

// endCause is an endKind with what the log and record say about it.
type endCause struct {
	kind    endKind
	detail  string
	sipCode int // endPBXRejected: the final response code
	// Business-initiated calls: what the agent's INVITE is answered with
	// when it ends unanswered (nil: decided from kind), and endRefused's
	// outcome.
	refusal *refusal
	outcome string
}

// mediaSeen says whether any audio packet arrived from each side.
type mediaSeen struct{ fromWhatsApp, fromPBX bool }

// decideOutcome is the one place a call's outcome and who ended it are
// decided: from what ended it, how far it had got (bridged or not) and
// whether audio arrived from both sides (a call whose media never came up
// is not bridged).
func decideOutcome(c endCause, bridged bool, seen mediaSeen) (outcome, hangupBy string) {
	outcome, hangupBy = outcomeOf(c, bridged)
	if outcome == OutcomeBridged && !(seen.fromWhatsApp && seen.fromPBX) {
		outcome = OutcomeNoMedia
	}
	return outcome, hangupBy
}

func outcomeOf(c endCause, bridged bool) (outcome, hangupBy string) {
	switch c.kind {
	case endNoRoute:
		return OutcomeNoRoute, byGateway
	case endDraining:
		return OutcomeDraining, byGateway
	case endTrunkDown:
		return OutcomeTrunkDown, byGateway
	case endPBXRejected:
		return OutcomePBXRejected, byPBX
	case endNoAnswer:
		return OutcomeNoAnswer, byGateway
	case endCallerHungUp:
		if bridged {
			return OutcomeBridged, byCaller
		}
		return OutcomeCallerHungUp, byCaller
	case endPBXHungUp:
		if bridged {
			return OutcomeBridged, byPBX
		}
		return OutcomeFailed, byPBX // the PBX hung up before Meta accepted
	case endMediaFailed:
		if bridged {
			return OutcomeBridged, byGateway
		}
		return OutcomeFailed, byGateway
	case endShutdown, endDrainTimeout:
		return OutcomeShutdown, byGateway
	case endAdmin:
		return OutcomeAdminHangup, byAdmin
	case endPBXMediaTimeout:
		return OutcomePBXMediaTimeout, byGateway
	case endPBXUnreachable:
		return OutcomePBXUnreachable, byGateway
	case endRefused:
		return c.outcome, byGateway
	case endUserDeclined:
		return OutcomeUserDeclined, byUser
	case endAgentCancelled:
		return OutcomeAgentCancelled, byPBX
	}
	return OutcomeFailed, byGateway // answer, Graph, INVITE or bridge failure
}

// byeReason is the Reason header (RFC 3326) of the BYE, or the CANCEL of a
// PBX still ringing, the gateway sends when the call ends for c: Q.850
// causes as telephony reads them.
func byeReason(c endCause) sip.Reason {
	switch c.kind {
	case endCallerHungUp:
		return sip.Reason{Protocol: "Q.850", Cause: 16, Text: "caller hung up"}
	case endAdmin:
		return sip.Reason{Protocol: "Q.850", Cause: 16, Text: "hung up through the gateway's admin API"}
	case endShutdown, endDrainTimeout:
		return sip.Reason{Protocol: "Q.850", Cause: 41, Text: "gateway shutting down"}
	case endMediaFailed:
		return sip.Reason{Protocol: "Q.850", Cause: 41, Text: "whatsapp media connection failed"}
	case endNoAnswer: // the INVITE's CANCEL
		return sip.Reason{Protocol: "Q.850", Cause: 19, Text: "no answer"} // no answer from user (user alerted)
	case endPBXMediaTimeout:
		return sip.Reason{Protocol: "Q.850", Cause: 102, Text: "no RTP from the PBX"} // recovery on timer expiry
	case endGraphFailed:
		return sip.Reason{Protocol: "Q.850", Cause: 41, Text: "whatsapp did not take the call"}
	}
	return sip.Reason{Protocol: "Q.850", Cause: 41, Text: "gateway failure"} // bridge, state error
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `'`) + `"` }

package wasim

import (
	"fmt"
	"strings"
	"time"
)

// Report is what happened on one call, user-initiated (the simulator
// placed it) or business-initiated (the business placed it with connect).
type Report struct {
	CallID string
	// Direction is "USER_INITIATED" or "BUSINESS_INITIATED", as in Meta's webhooks.
	Direction string
	// User is the WhatsApp user's wa_id (the caller, or the callee of a
	// business-initiated call), or the BSUID when there is no wa_id.
	User string
	// Outcome is one of the Outcome… constants.
	Outcome string

	PlacedAt    time.Time // the connect webhook was built (BIC: connect returned the call id)
	PreAcceptAt time.Time // pre_accept returned 200 (user-initiated only)
	// AcceptAt is when accept returned 200; on a business-initiated call,
	// when the user answered.
	AcceptAt    time.Time
	RingingAt   time.Time // BIC: the RINGING status was posted
	MediaUpAt   time.Time // ICE and DTLS with the business were up
	FirstSentAt time.Time // first user→business packet
	// FirstMediaAt is the first business→user packet.
	FirstMediaAt time.Time
	EndAt        time.Time

	// Violations are the Meta rules the business broke on this call.
	Violations []string
	// ActionsReceived lists the Graph actions received for this call, in
	// order, including refused ones.
	ActionsReceived []string
	// WebhookFailures lists webhooks the gateway did not answer with 200.
	WebhookFailures []string
	// WebhooksSent lists the call's webhooks in the order they were posted:
	// "connect", "status:RINGING", "status:ACCEPTED", "status:REJECTED",
	// "terminate" (a duplicate as "connect (duplicate)").
	WebhooksSent []string
	// BizOpaqueCallbackData is what the business gave in connect or accept.
	BizOpaqueCallbackData string
	// Codec is the audio codec the call ran: "opus", or "PCMU"/"PCMA" when
	// the caller offered it (the number's audio.additional_codecs) and the
	// business's answer picked it.
	Codec string

	PacketsSent, PacketsDropped int // caller→business (dropped: by loss injection)
	PacketsReceived             int // business→user, every payload type
	SSRCsReceived               int
	// SeqGaps counts the packets missing from the business's sequence numbers.
	SeqGaps             int
	DTMFPacketsReceived int    // payload type 126
	DigitsReceived      string // DTMF digits heard, in order (one per event)
	DecodeErrors        int

	// Analysis of the decoded received audio after its first 200 ms.
	ReceivedFreqHz    float64
	ReceivedPurity    float64
	ReceivedLevelDBFS float64 // -120 when nothing was received
	ReceivedSeconds   float64
	// LongestSilenceGap is the longest stretch without a business packet
	// after the first one (up to the end of the call).
	LongestSilenceGap time.Duration
	// TerminateErrorCode is the error the simulator put in the terminate
	// webhook when it ended the call itself (138021, 138020), else 0.
	TerminateErrorCode int

	// PacketsBeforeAnswer counts the business's packets that arrived on a
	// business-initiated call before the user answered (ringback the user
	// never hears; not a violation, and not in the audio analysis).
	PacketsBeforeAnswer int
	// PermissionChecks and PermissionRequests are the business's
	// call_permissions queries and permission request messages for this
	// call's user so far (business-initiated calls).
	PermissionChecks, PermissionRequests int

	// ReceivedPCM is the decoded business→user audio at 16 kHz, kept when
	// CallOptions.KeepAudio or User.KeepAudio is set (at most two minutes).
	// Lost packets leave no gap: it is the received frames end to end.
	ReceivedPCM []int16 `json:"-"`
}

// Answered reports whether the business accepted the call.
func (r *Report) Answered() bool { return !r.AcceptAt.IsZero() }

func (r *Report) clone() *Report {
	c := *r
	c.Violations = append([]string(nil), r.Violations...)
	c.ActionsReceived = append([]string(nil), r.ActionsReceived...)
	c.WebhookFailures = append([]string(nil), r.WebhookFailures...)
	c.WebhooksSent = append([]string(nil), r.WebhooksSent...)
	// ReceivedPCM is shared: it is not written once the report is final.
	return &c
}

// String renders the report for people, one fact a line.
func (r *Report) String() string {
	var b strings.Builder
	at := func(t time.Time) string {
		if t.IsZero() || r.PlacedAt.IsZero() {
			return "-"
		}
		return "+" + t.Sub(r.PlacedAt).Round(time.Millisecond).String()
	}
	bic := r.Direction == directionBIC
	fmt.Fprintf(&b, "call %s\n", r.CallID)
	if bic {
		fmt.Fprintf(&b, "  direction:      business-initiated, to %s\n", r.User)
	}
	fmt.Fprintf(&b, "  outcome:        %s", r.Outcome)
	if r.TerminateErrorCode != 0 {
		fmt.Fprintf(&b, " (terminate error %d)", r.TerminateErrorCode)
	}
	b.WriteByte('\n')
	if bic {
		fmt.Fprintf(&b, "  timeline:       ringing %s, media up %s, answered %s, first media sent %s, first media received %s, end %s\n",
			at(r.RingingAt), at(r.MediaUpAt), at(r.AcceptAt), at(r.FirstSentAt), at(r.FirstMediaAt), at(r.EndAt))
		fmt.Fprintf(&b, "  permission:     %d check(s), %d request(s) for this user\n", r.PermissionChecks, r.PermissionRequests)
	} else {
		fmt.Fprintf(&b, "  timeline:       pre_accept %s, accept %s, first media sent %s, first media received %s, end %s\n",
			at(r.PreAcceptAt), at(r.AcceptAt), at(r.FirstSentAt), at(r.FirstMediaAt), at(r.EndAt))
	}
	if len(r.WebhooksSent) > 0 {
		fmt.Fprintf(&b, "  webhooks:       %s\n", strings.Join(r.WebhooksSent, ", "))
	}
	if r.Codec != "" {
		fmt.Fprintf(&b, "  codec:          %s\n", r.Codec)
	}
	if r.Answered() && !r.EndAt.IsZero() {
		fmt.Fprintf(&b, "  talk time:      %s\n", r.EndAt.Sub(r.AcceptAt).Round(time.Millisecond))
	}
	actions := "none"
	if len(r.ActionsReceived) > 0 {
		actions = strings.Join(r.ActionsReceived, ", ")
	}
	fmt.Fprintf(&b, "  graph actions:  %s\n", actions)
	fmt.Fprintf(&b, "  sent:           %d packets (%d dropped on purpose)\n", r.PacketsSent, r.PacketsDropped)
	fmt.Fprintf(&b, "  received:       %d packets, %d SSRC(s), %d missing by sequence, %d DTMF packets, %d decode errors, longest silence %s\n",
		r.PacketsReceived, r.SSRCsReceived, r.SeqGaps, r.DTMFPacketsReceived, r.DecodeErrors, r.LongestSilenceGap.Round(time.Millisecond))
	if r.PacketsBeforeAnswer > 0 {
		fmt.Fprintf(&b, "  before answer:  %d packets (not heard by the user)\n", r.PacketsBeforeAnswer)
	}
	if r.DigitsReceived != "" {
		fmt.Fprintf(&b, "  digits heard:   %s\n", r.DigitsReceived)
	}
	if r.ReceivedSeconds > 0 {
		fmt.Fprintf(&b, "  received audio: %.1f s, dominant %.0f Hz (purity %.2f), level %.1f dBFS\n",
			r.ReceivedSeconds, r.ReceivedFreqHz, r.ReceivedPurity, r.ReceivedLevelDBFS)
	} else {
		b.WriteString("  received audio: none\n")
	}
	for _, f := range r.WebhookFailures {
		fmt.Fprintf(&b, "  webhook failed: %s\n", f)
	}
	if len(r.Violations) == 0 {
		b.WriteString("  violations:     none\n")
	} else {
		fmt.Fprintf(&b, "  violations:     %d\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "    - %s\n", v)
		}
	}
	return b.String()
}

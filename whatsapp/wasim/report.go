package wasim

import (
	"fmt"
	"strings"
	"time"
)

// Report is what happened on one call.
type Report struct {
	CallID string
	// Outcome is one of the Outcome… constants.
	Outcome string

	PlacedAt    time.Time // the connect webhook was built
	PreAcceptAt time.Time // pre_accept returned 200
	AcceptAt    time.Time // accept returned 200
	FirstSentAt time.Time // first caller→business packet
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
	// ReceivedPCM is that audio itself when CallOptions.KeepAudio is set:
	// 16 kHz mono, packets decoded in arrival order.
	ReceivedPCM []int16
	// LongestSilenceGap is the longest stretch without a business packet
	// after the first one (up to the end of the call).
	LongestSilenceGap time.Duration
	// TerminateErrorCode is the error the simulator put in the terminate
	// webhook when it ended the call itself (138021, 138020), else 0.
	TerminateErrorCode int
}

// Answered reports whether the business accepted the call.
func (r *Report) Answered() bool { return !r.AcceptAt.IsZero() }

func (r *Report) clone() *Report {
	c := *r
	c.Violations = append([]string(nil), r.Violations...)
	c.ActionsReceived = append([]string(nil), r.ActionsReceived...)
	c.WebhookFailures = append([]string(nil), r.WebhookFailures...)
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
	fmt.Fprintf(&b, "call %s\n", r.CallID)
	fmt.Fprintf(&b, "  outcome:        %s", r.Outcome)
	if r.TerminateErrorCode != 0 {
		fmt.Fprintf(&b, " (terminate error %d)", r.TerminateErrorCode)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "  timeline:       pre_accept %s, accept %s, first media sent %s, first media received %s, end %s\n",
		at(r.PreAcceptAt), at(r.AcceptAt), at(r.FirstSentAt), at(r.FirstMediaAt), at(r.EndAt))
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

package sip

import (
	"errors"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Reason is the value of a Reason header (RFC 3326 §2): the protocol whose
// cause it is ("Q.850" or "SIP"), the cause, and an optional text.
type Reason struct {
	Protocol string
	Cause    int
	Text     string
}

// String renders the header value; "" for the zero Reason.
func (r Reason) String() string {
	if r.Protocol == "" {
		return ""
	}
	v := r.Protocol + ";cause=" + strconv.Itoa(r.Cause)
	if r.Text != "" {
		v += `;text="` + strings.Map(func(ch rune) rune {
			if ch == '"' || ch == '\\' || ch < 0x20 || ch == 0x7f {
				return -1 // a quoted-string may not hold them unescaped (RFC 3261 §25.1)
			}
			return ch
		}, r.Text) + `"`
	}
	return v
}

// shutdownReason ends the calls and INVITEs of a UA that closes.
var shutdownReason = Reason{Protocol: "Q.850", Cause: 41, Text: "gateway shutting down"}

// IsZero reports whether r is no reason at all.
func (r Reason) IsZero() bool { return r.Protocol == "" }

// CancelCause carries the Reason for the CANCEL of an INVITE whose context
// ends: give it as the cause (context.WithCancelCause, WithTimeoutCause) and
// Invite puts it in the CANCEL (RFC 3326 §2: "the reason why the request
// was cancelled").
type CancelCause struct{ Reason Reason }

func (e *CancelCause) Error() string { return "cancelled: " + e.Reason.String() }

// cancelReason is the Reason a context's cause carries, if any.
func cancelReason(cause error) Reason {
	var cc *CancelCause
	if errors.As(cause, &cc) {
		return cc.Reason
	}
	return Reason{}
}

// maxReasonText bounds the text kept from a peer's Reason header.
const maxReasonText = 64

// peerReason reads the Reason header a PBX put in its BYE, CANCEL or final
// response (RFC 3326): the Q.850 one if there are several, else the first
// one we can read. A malformed header gives the zero Reason. The text is
// cut short and stripped of control characters; the protocol is one of
// "Q.850" and "SIP", the cause within 1-699.
func peerReason(m sip.Message) Reason {
	var found Reason
	for _, h := range m.GetHeaders("Reason") {
		for _, v := range strings.Split(h.Value(), ",") {
			r, ok := parseReason(v)
			if !ok {
				continue
			}
			if r.Protocol == "Q.850" {
				return r
			}
			if found.IsZero() {
				found = r
			}
		}
	}
	return found
}

// parseReason parses one reason-value: protocol *(;param).
func parseReason(v string) (Reason, bool) {
	parts := strings.Split(v, ";")
	var r Reason
	switch p := strings.TrimSpace(parts[0]); {
	case strings.EqualFold(p, "Q.850"):
		r.Protocol = "Q.850"
	case strings.EqualFold(p, "SIP"):
		r.Protocol = "SIP"
	default:
		return Reason{}, false
	}
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "cause":
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil || n < 1 || n > 699 {
				return Reason{}, false
			}
			r.Cause = n
		case "text":
			t := strings.Trim(strings.TrimSpace(val), `"`)
			t = strings.Map(func(ch rune) rune {
				if ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' {
					return -1
				}
				return ch
			}, t)
			if len(t) > maxReasonText {
				t = t[:maxReasonText]
			}
			r.Text = strings.ToValidUTF8(t, "")
		}
	}
	if r.Cause == 0 {
		return Reason{}, false
	}
	return r, true
}

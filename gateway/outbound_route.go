package gateway

import (
	"fmt"
	"regexp"
	"strings"
)

// waUser is the WhatsApp user an agent dialled: a phone number (wa_id,
// digits only) or a business-scoped user id.
type waUser struct {
	waID, bsuid string
}

func (u waUser) String() string {
	if u.waID != "" {
		return "+" + u.waID
	}
	return u.bsuid
}

var (
	e164Digits = regexp.MustCompile(`^[1-9][0-9]{6,14}$`) // E.164: at most 15 digits, no leading 0
	bsuidChars = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// parseDialled reads the Request-URI user of an agent's INVITE: "+14085551234"
// or "14085551234" (visual separators "-", ".", " " and "()" are dropped
// from numbers), or a BSUID.
func parseDialled(user string) (waUser, error) {
	u := strings.TrimSpace(user)
	if u == "" {
		return waUser{}, fmt.Errorf("no user in the Request-URI")
	}
	digits := strings.Map(func(r rune) rune {
		switch r {
		case '-', '.', ' ', '(', ')':
			return -1
		}
		return r
	}, strings.TrimPrefix(u, "+"))
	if e164Digits.MatchString(digits) {
		return waUser{waID: digits}, nil
	}
	if strings.HasPrefix(u, "+") || strings.Trim(digits, "0123456789") == "" {
		return waUser{}, fmt.Errorf("%q is not an E.164 number", u)
	}
	if !bsuidChars.MatchString(u) {
		return waUser{}, fmt.Errorf("%q is neither an E.164 number nor a WhatsApp user id", u)
	}
	return waUser{bsuid: u}, nil
}

// outboundCall is what an agent's INVITE resolved to.
type outboundCall struct {
	route     OutboundRouteConfig
	pnid      string // the business number that places the call
	user      waUser
	bizOpaque string // biz_opaque_callback_data
}

// inviteInfo is what routing reads of an agent's INVITE.
type inviteInfo struct {
	trunk     string
	user      string // Request-URI user
	header    func(name string) string
	sipCallID string
}

// maxBizOpaque is Meta's limit for biz_opaque_callback_data.
const maxBizOpaque = 512

// routeOutbound picks the first route for the INVITE's trunk and number. A
// refusal says which SIP response the agent gets.
func routeOutbound(routes []OutboundRouteConfig, in inviteInfo) (outboundCall, *refusal) {
	user, err := parseDialled(in.user)
	if err != nil {
		return outboundCall{}, &refusal{code: 404, phrase: "Not Found", text: err.Error()}
	}
	for _, r := range routes {
		if r.Trunk != in.trunk || !matchPrefix(r.Prefix, user) {
			continue
		}
		oc := outboundCall{route: r, user: user, pnid: r.PhoneNumberID, bizOpaque: in.sipCallID}
		if h := r.PhoneNumberIDHeader; h != "" {
			if v := strings.TrimSpace(in.header(h)); v != "" {
				if !allowedNumber(r, v) {
					return outboundCall{}, &refusal{code: 403, phrase: "Forbidden",
						text: fmt.Sprintf("%s names business number %q, which route %q may not use", h, v, r.Name)}
				}
				oc.pnid = v
			}
		}
		if oc.pnid == "" {
			return outboundCall{}, &refusal{code: 400, phrase: "Bad Request",
				text: fmt.Sprintf("route %q needs the business number in %s", r.Name, r.PhoneNumberIDHeader)}
		}
		if h := r.BizOpaqueHeader; h != "" {
			if v := in.header(h); v != "" {
				oc.bizOpaque = v
			}
		}
		oc.bizOpaque = truncateRunes(headerSafe(oc.bizOpaque), maxBizOpaque)
		return oc, nil
	}
	return outboundCall{}, &refusal{code: 404, phrase: "Not Found",
		text: fmt.Sprintf("no outbound route for %s from trunk %q", user, in.trunk)}
}

// matchPrefix: an empty prefix takes every user; a prefix takes numbers
// that start with it (BSUIDs never match one).
func matchPrefix(prefix string, u waUser) bool {
	if prefix == "" {
		return true
	}
	return u.waID != "" && strings.HasPrefix(u.waID, strings.TrimPrefix(prefix, "+"))
}

func allowedNumber(r OutboundRouteConfig, pnid string) bool {
	if pnid == r.PhoneNumberID {
		return true
	}
	for _, id := range r.PhoneNumberIDs {
		if id == pnid {
			return true
		}
	}
	return false
}

// truncateRunes cuts s to at most n characters.
func truncateRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

package gateway

import (
	"fmt"
	"strings"
	"time"
)

// Route is where one call goes: a trunk and a destination URI.
type Route struct {
	Name          string
	Trunk         string
	Destination   string
	AnswerTimeout time.Duration
	AnswerEarly   bool // early_media: answer
}

// Router picks a route by business number, then by cta_payload and
// deeplink_payload; routes of a number are tried in config order.
type Router struct {
	byNumber map[string][]RouteConfig
}

// NewRouter indexes the configured numbers.
func NewRouter(numbers []NumberConfig) *Router {
	r := &Router{byNumber: make(map[string][]RouteConfig, len(numbers))}
	for _, n := range numbers {
		r.byNumber[n.PhoneNumberID] = n.Routes
	}
	return r
}

// RouteFor returns the first matching route, or an error saying why none did.
func (r *Router) RouteFor(phoneNumberID, ctaPayload, deeplinkPayload string) (Route, error) {
	routes, ok := r.byNumber[phoneNumberID]
	if !ok {
		return Route{}, fmt.Errorf("business number %q is not served by this gateway (numbers[].phone_number_id)", phoneNumberID)
	}
	if len(routes) == 0 {
		return Route{}, fmt.Errorf("business number %q has no routes (only its calling settings are managed)", phoneNumberID)
	}
	for _, rc := range routes {
		if matchPayload(rc.CTAPayload, ctaPayload) && matchPayload(rc.DeeplinkPayload, deeplinkPayload) {
			return Route{Name: rc.Name, Trunk: rc.Trunk, Destination: rc.Destination, AnswerTimeout: rc.AnswerTimeout,
				AnswerEarly: rc.EarlyMedia == EarlyMediaAnswer}, nil
		}
	}
	return Route{}, fmt.Errorf("no route of number %q matches cta_payload %q deeplink_payload %q", phoneNumberID, ctaPayload, deeplinkPayload)
}

// matchPayload: an empty pattern matches anything; "abc*" is a prefix match;
// anything else must be equal.
func matchPayload(pattern, value string) bool {
	switch {
	case pattern == "":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(value, strings.TrimSuffix(pattern, "*"))
	default:
		return pattern == value
	}
}

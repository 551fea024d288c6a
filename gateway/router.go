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
	// AfterHours: the route's hours are closed, and the call goes to its
	// after_hours_destination.
	AfterHours bool
}

// Router picks a route by business number, then by cta_payload and
// deeplink_payload, then by the route's hours; routes of a number are tried
// in config order.
type Router struct {
	byNumber map[string][]RouteConfig
	hours    map[*RouteConfig]*schedule
	now      func() time.Time
}

// NewRouter indexes the configured numbers (validated: their hours compile).
func NewRouter(numbers []NumberConfig) *Router {
	r := &Router{byNumber: make(map[string][]RouteConfig, len(numbers)), hours: map[*RouteConfig]*schedule{}, now: time.Now}
	for _, n := range numbers {
		r.byNumber[n.PhoneNumberID] = n.Routes
		for i := range n.Routes {
			if h := n.Routes[i].Hours; h != nil {
				if s, problems := h.compile(""); len(problems) == 0 {
					r.hours[&n.Routes[i]] = s
				}
			}
		}
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
	closed := 0
	for i := range routes {
		rc := &routes[i]
		if !matchPayload(rc.CTAPayload, ctaPayload) || !matchPayload(rc.DeeplinkPayload, deeplinkPayload) {
			continue
		}
		rt := Route{Name: rc.Name, Trunk: rc.Trunk, Destination: rc.Destination, AnswerTimeout: rc.AnswerTimeout,
			AnswerEarly: rc.EarlyMedia == EarlyMediaAnswer}
		if s := r.hours[rc]; s != nil && !s.open(r.now()) {
			if rc.AfterHoursDestination == "" {
				closed++
				continue // closed: a later route may take the call
			}
			rt.Destination, rt.AfterHours = rc.AfterHoursDestination, true
		}
		return rt, nil
	}
	if closed > 0 {
		return Route{}, fmt.Errorf("the routes of number %q that match are closed now (hours) and have no after_hours_destination", phoneNumberID)
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

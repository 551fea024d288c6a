package gateway

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp"
)

// Meta's account events (webhook fields account_settings_update and
// account_update): someone changed calling settings in WhatsApp Manager, or
// Meta warns about (violation) or pauses (restriction) calling on a number.
// Each is logged at WARN, counted, kept for the admin API
// (GET /admin/account-events) and written to the call records as a line
// of type account_event.

// maxAccountEvents bounds what the admin API keeps.
const maxAccountEvents = 100

// knownAccountTypes are the violation and restriction types Meta documents
// (Cloud API Calling, "Call settings"); any other is counted as "other",
// so a label can never grow without bound.
var knownAccountTypes = map[string]bool{
	"LOW_BUSINESS_INITIATED_CALLING_QUALITY":               true,
	"LOW_USER_INITIATED_CALLING_QUALITY":                   true,
	"USER_INITIATED_CALLS_LOW_PICKUP_RATE":                 true,
	"RESTRICTED_BUSINESS_INITIATED_CALLING":                true,
	"RESTRICTED_USER_INITIATED_CALLING":                    true,
	"RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN": true,
	"RESTRICTED_BIZ_INITIATED_AND_USER_INITIATED_CALLING":  true,
	"LOW_CALLING_QUALITY":                                  true,
}

var knownAccountEvents = map[string]bool{"PHONE_NUMBER_SETTINGS": true, "ACCOUNT_VIOLATION": true, "ACCOUNT_RESTRICTION": true}

// AccountEventRecord is an account event as the admin API lists it and the
// call records write it ("type": "account_event").
type AccountEventRecord struct {
	Type            string    `json:"type"` // account_event
	At              time.Time `json:"at"`
	Field           string    `json:"field"` // account_settings_update, account_update
	Event           string    `json:"event"` // PHONE_NUMBER_SETTINGS, ACCOUNT_VIOLATION, ACCOUNT_RESTRICTION, …
	PhoneNumberID   string    `json:"phone_number_id,omitempty"`
	PhoneNumber     string    `json:"phone_number,omitempty"` // Meta names a number by its display number in account_update
	ViolationType   string    `json:"violation_type,omitempty"`
	RestrictionType string    `json:"restriction_type,omitempty"`
	Expiration      time.Time `json:"expiration,omitzero"`
	Settings        string    `json:"settings,omitempty"` // account_settings_update: the calling settings Meta reports, masked
}

type accountEvents struct {
	mu     sync.Mutex
	list   []AccountEventRecord
	active map[[2]string]time.Time // (number, restriction) → expiration, for the gauge
}

func newAccountEvents() *accountEvents {
	return &accountEvents{active: map[[2]string]time.Time{}}
}

// handleAccountEvent takes one account event (webhook worker goroutine).
func (g *Gateway) handleAccountEvent(ev whatsapp.AccountEvent) {
	rec := AccountEventRecord{Type: "account_event", At: g.now(), Field: ev.Field, Event: ev.Event,
		PhoneNumberID: ev.PhoneNumberID, PhoneNumber: ev.PhoneNumber, ViolationType: ev.ViolationType,
		RestrictionType: ev.RestrictionType, Expiration: ev.Expiration}
	if ev.Calling != nil {
		rec.Settings = string(ev.Raw)
	}
	number := ev.PhoneNumberID
	if number == "" {
		number = ev.PhoneNumber
	}
	kind := ev.ViolationType + ev.RestrictionType
	event := ev.Event
	if !knownAccountEvents[event] {
		event = "other"
	}
	label := kind
	if label == "" {
		label = "none"
	} else if !knownAccountTypes[label] {
		label = "other"
	}
	g.ops.metrics.accountEvents.WithLabelValues(event, label).Inc()
	log := g.log.Named("account").With(zap.String("phone_number", number), zap.String("event", ev.Event))
	switch ev.Event {
	case "ACCOUNT_RESTRICTION":
		log.Warn("whatsapp account restriction: Meta paused calling on the number", zap.String("restriction", ev.RestrictionType),
			zap.Time("until", ev.Expiration))
		g.account.restrict(number, label, ev.Expiration, g.now(), g.ops.metrics)
	case "ACCOUNT_VIOLATION":
		log.Warn("whatsapp account violation: calling may be paused if it goes on", zap.String("violation", ev.ViolationType))
	case "PHONE_NUMBER_SETTINGS":
		log.Warn("calling settings changed in WhatsApp Manager", zap.String("phone_number_id", ev.PhoneNumberID))
		g.recheckCalling(ev.PhoneNumberID)
	default:
		log.Info("whatsapp account event", zap.String("field", ev.Field))
	}
	g.account.add(rec)
	g.ops.records.writeLine(rec, number)
}

func (a *accountEvents) add(r AccountEventRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.list) >= maxAccountEvents {
		a.list = append(a.list[:0], a.list[1:]...)
	}
	a.list = append(a.list, r)
}

func (a *accountEvents) snapshot() []AccountEventRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AccountEventRecord(nil), a.list...)
}

// restrict marks a restriction active until its expiration (7 days when
// Meta gives none for a timed one; never for the call-button restriction).
func (a *accountEvents) restrict(number, restriction string, until, now time.Time, m *metrics) {
	if until.IsZero() {
		until = now.Add(7 * 24 * time.Hour)
	}
	a.mu.Lock()
	a.active[[2]string{number, restriction}] = until
	a.mu.Unlock()
	m.callingRestricted.WithLabelValues(number, restriction).Set(1)
}

// expire clears the gauge of restrictions that ended (the flush loop).
func (a *accountEvents) expire(now time.Time, m *metrics) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, until := range a.active {
		if now.After(until) {
			m.callingRestricted.WithLabelValues(k[0], k[1]).Set(0)
			delete(a.active, k)
		}
	}
}

// recheckCalling compares a managed number's settings again after someone
// changed them in WhatsApp Manager (bounded, in the background).
func (g *Gateway) recheckCalling(pnid string) {
	if g.settings == nil || pnid == "" {
		return
	}
	managed := false
	for _, n := range g.cfg.Numbers {
		managed = managed || (n.PhoneNumberID == pnid && n.Calling != nil)
	}
	if !managed {
		return
	}
	g.ops.wg.Add(1)
	go func() {
		defer g.ops.wg.Done()
		ctx, cancel := context.WithTimeout(g.ctx, callingCheckTimeout)
		defer cancel()
		g.checkCallingOf(ctx, func(id string) bool { return strings.EqualFold(id, pnid) })
	}()
}

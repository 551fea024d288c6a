package whatsapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CallEvent is one entry of calls[] of a "calls" webhook, flattened with its
// envelope.
type CallEvent struct {
	PhoneNumberID      string // value.metadata.phone_number_id
	DisplayPhoneNumber string // value.metadata.display_phone_number
	CallID             string // "wacid...."
	Event              string // "connect", "terminate" (lower-cased)
	Direction          string // USER_INITIATED | BUSINESS_INITIATED (upper-cased)
	From, To           string // may be empty (since 2026-05 `from` may be absent)
	FromUserID         string // BSUID
	ProfileName        string // contacts[] profile.name matched by wa_id or user_id (or the sole contact)
	Timestamp          time.Time
	SDPType, SDP       string // session.sdp_type / session.sdp

	DeeplinkPayload, CTAPayload string

	Status             string // terminate: COMPLETED/FAILED, upper-cased
	StartTime, EndTime time.Time
	Duration           time.Duration

	BizOpaqueCallbackData string
	Errors                []CallError // from calls[].errors and value.errors, merged
}

// CallError is one entry of the errors[] of a call webhook.
type CallError struct {
	Code    int
	Message string
	Details string // error_data.details
}

// CallerID returns the caller's number, or the BSUID when the number is
// absent.
func (e CallEvent) CallerID() string {
	if e.From != "" {
		return e.From
	}
	return e.FromUserID
}

// StatusEvent is one entry of value.statuses[] with type "call": the
// progress of a business-initiated call (RINGING, ACCEPTED, REJECTED).
type StatusEvent struct {
	PhoneNumberID         string
	CallID                string
	Status                string // upper-cased
	Timestamp             time.Time
	RecipientID           string // recipient_id, may be empty
	BizOpaqueCallbackData string
	Errors                []CallError
}

// MaxWebhookEvents bounds the calls[] entries and the statuses[] entries
// of type "call" of one webhook body. Meta delivers a call's events one or a few at a
// time; a body with more is refused whole rather than half dispatched.
const MaxWebhookEvents = 1000

var errTooManyEvents = fmt.Errorf("whatsapp webhook: more than %d call events in one body", MaxWebhookEvents)

// ParseWebhook parses a raw webhook POST body and returns its call events in
// order. Changes that carry no calls (messages, message statuses) are ignored
// without error; malformed JSON is an error.
func ParseWebhook(body []byte) ([]CallEvent, error) {
	calls, _, err := ParseWebhookAll(body)
	return calls, err
}

// ParseWebhookAll is ParseWebhook that also returns the call statuses
// (value.statuses[] entries with type "call"), in order.
func ParseWebhookAll(body []byte) ([]CallEvent, []StatusEvent, error) {
	var env wireEnvelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return nil, nil, fmt.Errorf("whatsapp webhook: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("whatsapp webhook: trailing data after the JSON object")
	}
	if env.Object != "" && env.Object != "whatsapp_business_account" {
		return nil, nil, nil
	}
	var calls []CallEvent
	var statuses []StatusEvent
	events := 0
	for _, entry := range env.Entry {
		for _, ch := range entry.Changes {
			v := ch.Value
			if v == nil {
				continue
			}
			if events += len(v.Calls); events > MaxWebhookEvents {
				return nil, nil, errTooManyEvents
			}
			valueErrs := v.Errors.callErrors()
			for _, c := range v.Calls {
				calls = append(calls, v.callEvent(c, valueErrs))
			}
			for _, s := range v.Statuses {
				if !strings.EqualFold(s.Type, "call") {
					continue
				}
				if events++; events > MaxWebhookEvents {
					return nil, nil, errTooManyEvents
				}
				statuses = append(statuses, StatusEvent{
					PhoneNumberID:         v.Metadata.PhoneNumberID,
					CallID:                s.ID,
					Status:                strings.ToUpper(s.Status),
					Timestamp:             s.Timestamp.unix(),
					RecipientID:           s.RecipientID,
					BizOpaqueCallbackData: s.BizOpaqueCallbackData,
					Errors:                mergeErrors(s.Errors.callErrors(), valueErrs),
				})
			}
		}
	}
	return calls, statuses, nil
}

func (v *wireValue) callEvent(c wireCall, valueErrs []CallError) CallEvent {
	ev := CallEvent{
		PhoneNumberID:         v.Metadata.PhoneNumberID,
		DisplayPhoneNumber:    v.Metadata.DisplayPhoneNumber,
		CallID:                c.ID,
		Event:                 strings.ToLower(c.Event),
		Direction:             strings.ToUpper(c.Direction),
		From:                  c.From,
		To:                    c.To,
		FromUserID:            c.FromUserID,
		Timestamp:             c.Timestamp.unix(),
		DeeplinkPayload:       c.DeeplinkPayload,
		CTAPayload:            c.CTAPayload,
		Status:                strings.ToUpper(c.Status),
		StartTime:             c.StartTime.unix(),
		EndTime:               c.EndTime.unix(),
		BizOpaqueCallbackData: c.BizOpaqueCallbackData,
		Errors:                mergeErrors(c.Errors.callErrors(), valueErrs),
	}
	if c.Session != nil {
		ev.SDPType = c.Session.SDPType
		ev.SDP = c.Session.SDP
	}
	ev.Duration = callDuration(c.Duration)
	ev.ProfileName = v.profileName(c)
	return ev
}

// profileName finds the caller's contact: by wa_id against from, by user_id
// against from_user_id, else the only contact of the value.
func (v *wireValue) profileName(c wireCall) string {
	for _, ct := range v.Contacts {
		if (c.From != "" && ct.WaID == c.From) || (c.FromUserID != "" && ct.UserID == c.FromUserID) {
			return ct.Profile.Name
		}
	}
	if len(v.Contacts) == 1 {
		return v.Contacts[0].Profile.Name
	}
	return ""
}

// maxCallDuration bounds a terminate's duration. Meta sends whole seconds
// of a call; anything beyond a day is not a call's length, and a float of
// seconds above about 9.2e9 would overflow time.Duration's int64
// nanoseconds into a negative value.
const maxCallDuration = 24 * time.Hour

// callDuration reads the terminate's duration in seconds. An absent,
// unreadable, non-positive, non-finite or absurd (over maxCallDuration)
// value gives 0: unknown, as when Meta leaves it out.
func callDuration(f flexScalar) time.Duration {
	secs, ok := f.float()
	// The comparison is false for NaN; +Inf is above the bound.
	if !ok || !(secs > 0) || secs > maxCallDuration.Seconds() {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

// maxWireErrors bounds the errors read from one errors[] array. Meta's
// documented payloads carry one or two; value.errors[] is copied onto every
// call and status of its value, so without a bound a 1 MiB body of N calls
// beside N errors would build N×N errors.
const maxWireErrors = 64

// mergeErrors concatenates the lists, leaving out exact repeats (Meta may
// put the same error in calls[] and beside it). A set makes it linear: a
// signed body with 40k errors took 46 s of CPU with the pairwise comparison
// it replaces.
func mergeErrors(lists ...[]CallError) []CallError {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	if n == 0 {
		return nil
	}
	out := make([]CallError, 0, n)
	seen := make(map[CallError]struct{}, n)
	for _, l := range lists {
		for _, e := range l {
			if _, dup := seen[e]; dup {
				continue
			}
			seen[e] = struct{}{}
			out = append(out, e)
		}
	}
	return out
}

// Wire shapes. Only what the gateway reads is declared; everything else in
// the body is ignored by encoding/json.

type wireEnvelope struct {
	Object string      `json:"object"`
	Entry  []wireEntry `json:"entry"`
}

type wireEntry struct {
	ID      string       `json:"id"`
	Changes []wireChange `json:"changes"`
}

type wireChange struct {
	Field string     `json:"field"`
	Value *wireValue `json:"value"`
}

type wireValue struct {
	MessagingProduct string `json:"messaging_product"`
	Metadata         struct {
		DisplayPhoneNumber string `json:"display_phone_number"`
		PhoneNumberID      string `json:"phone_number_id"`
	} `json:"metadata"`
	Contacts []wireContact `json:"contacts"`
	Calls    []wireCall    `json:"calls"`
	Statuses []wireStatus  `json:"statuses"`
	Errors   wireErrors    `json:"errors"`
}

type wireContact struct {
	Profile struct {
		Name string `json:"name"`
	} `json:"profile"`
	WaID   string `json:"wa_id"`
	UserID string `json:"user_id"`
}

type wireCall struct {
	ID         string     `json:"id"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	FromUserID string     `json:"from_user_id"`
	Event      string     `json:"event"`
	Direction  string     `json:"direction"`
	Timestamp  flexScalar `json:"timestamp"`
	Session    *struct {
		SDPType string `json:"sdp_type"`
		SDP     string `json:"sdp"`
	} `json:"session"`
	DeeplinkPayload       string     `json:"deeplink_payload"`
	CTAPayload            string     `json:"cta_payload"`
	Status                string     `json:"status"`
	StartTime             flexScalar `json:"start_time"`
	EndTime               flexScalar `json:"end_time"`
	Duration              flexScalar `json:"duration"`
	BizOpaqueCallbackData string     `json:"biz_opaque_callback_data"`
	Errors                wireErrors `json:"errors"`
}

type wireStatus struct {
	ID                    string     `json:"id"`
	Type                  string     `json:"type"`
	Status                string     `json:"status"`
	Timestamp             flexScalar `json:"timestamp"`
	RecipientID           string     `json:"recipient_id"`
	BizOpaqueCallbackData string     `json:"biz_opaque_callback_data"`
	Errors                wireErrors `json:"errors"`
}

type wireErrors []struct {
	Code      flexScalar `json:"code"`
	Message   string     `json:"message"`
	Title     string     `json:"title"`
	ErrorData struct {
		Details string `json:"details"`
	} `json:"error_data"`
}

func (we wireErrors) callErrors() []CallError {
	if len(we) == 0 {
		return nil
	}
	if len(we) > maxWireErrors {
		we = we[:maxWireErrors] // the first ones; see maxWireErrors
	}
	out := make([]CallError, 0, len(we))
	for _, e := range we {
		code, _ := e.Code.float()
		msg := e.Message
		if msg == "" {
			msg = e.Title
		}
		out = append(out, CallError{Code: int(code), Message: msg, Details: e.ErrorData.Details})
	}
	return out
}

// flexScalar holds a JSON string or number: Meta sends unix times as strings
// ("1671644824") but a number must not make the whole body unreadable.
type flexScalar string

func (f *flexScalar) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexScalar(strings.TrimSpace(s))
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or a number, got %.20s", b)
		}
		*f = flexScalar(n)
	}
	return nil
}

func (f flexScalar) float() (float64, bool) {
	if f == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(f), 64)
	return v, err == nil
}

// unix reads unix seconds; an absent or unreadable value gives the zero
// time (one odd field must not lose the call).
func (f flexScalar) unix() time.Time {
	if f == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(string(f), 10, 64); err == nil {
		if n <= 0 {
			return time.Time{}
		}
		return time.Unix(n, 0).UTC()
	}
	if v, ok := f.float(); ok && v > 0 {
		sec := int64(v)
		return time.Unix(sec, int64((v-float64(sec))*1e9)).UTC()
	}
	return time.Time{}
}

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
	FromUserID         string // BSUID of the caller (user-initiated calls)
	ToUserID           string // BSUID of the called user (business-initiated calls)
	ProfileName        string // the user's contacts[] profile.name, matched by wa_id or user_id (or the sole contact)
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

// BusinessInitiated reports whether the call was placed by the business
// (Connect): Meta's connect then carries the SDP answer (W2).
func (e CallEvent) BusinessInitiated() bool { return e.Direction == "BUSINESS_INITIATED" }

// User names the WhatsApp user of the call: the called one (to,
// to_user_id) of a business-initiated call, else the caller.
func (e CallEvent) User() UserRef {
	if e.BusinessInitiated() {
		return UserRef{WaID: e.To, BSUID: e.ToUserID}
	}
	return UserRef{WaID: e.From, BSUID: e.FromUserID}
}

// StatusEvent is one entry of value.statuses[] with type "call": the
// progress of a business-initiated call (RINGING, ACCEPTED, REJECTED).
type StatusEvent struct {
	PhoneNumberID         string
	CallID                string
	Status                string // upper-cased
	Timestamp             time.Time
	RecipientID           string // recipient_id, may be empty
	RecipientUserID       string // recipient_user_id (BSUID)
	BizOpaqueCallbackData string
	Errors                []CallError
}

// PermissionReply is W8: a messages webhook with interactive.type call_permission_reply.
type PermissionReply struct {
	PhoneNumberID, From, FromUserID, MessageID, ContextID string
	Accepted, Permanent                                   bool
	Expires                                               time.Time
	Source                                                string // user_action | automatic
	Timestamp                                             time.Time

	Response    string // call_permission_reply.response, lower-cased: accept | reject
	ProfileName string // contacts[] profile.name of the user, if any
}

// User names the user who replied.
func (r PermissionReply) User() UserRef { return UserRef{WaID: r.From, BSUID: r.FromUserID} }

// WebhookEvents is what one webhook body carries for the gateway, and
// whether it carries anything else.
type WebhookEvents struct {
	Calls             []CallEvent       // calls[] of field "calls"
	Statuses          []StatusEvent     // statuses[] of type "call"
	PermissionReplies []PermissionReply // messages[] of field "messages" that are call_permission_reply
	// AccountEvents are the changes of fields account_settings_update (W11)
	// and account_update (W12), one per restriction_info entry.
	AccountEvents []AccountEvent
	// Voicemails are the messages[] of field "messages" that are audio
	// with a call id (W9).
	Voicemails []Voicemail
	// Other is true when the body carries content the gateway does not
	// consume: a change of another field, an account update that is not
	// about calling (partner, ban, messaging restrictions, settings other
	// than calling), a messages[] entry that is neither a
	// call_permission_reply nor a voicemail (chat), a message status,
	// errors of field "messages", or a body for another object than
	// whatsapp_business_account. Replies, account events and voicemails
	// are consumed only where their callback is set (WebhookConfig).
	Other bool
}

// MaxWebhookEvents bounds the calls[] entries, the statuses[] entries of
// type "call", the call permission replies, the account events and the
// voicemails of one webhook body. Meta
// delivers a call's events one or a few at a time; a body with more is
// refused whole rather than half dispatched.
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
	ev, err := ParseWebhookEvents(body)
	if err != nil {
		return nil, nil, err
	}
	return ev.Calls, ev.Statuses, nil
}

// ParseWebhookEvents parses a raw webhook POST body: its call events and
// statuses (changes of field "calls"; a change without a field is read as
// one), its call permission replies and voicemails (field "messages"), its
// account events (fields account_settings_update and account_update) and
// whether it carries anything else. Malformed JSON, or a "calls" change
// that does not have the documented shape, is an error; a change of
// another field that does not is only Other.
func ParseWebhookEvents(body []byte) (WebhookEvents, error) {
	var out WebhookEvents
	var env wireEnvelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return WebhookEvents{}, fmt.Errorf("whatsapp webhook: %w", err)
	}
	if dec.More() {
		return WebhookEvents{}, errors.New("whatsapp webhook: trailing data after the JSON object")
	}
	if env.Object != "" && env.Object != "whatsapp_business_account" {
		out.Other = true
		return out, nil
	}
	events := 0
	for _, entry := range env.Entry {
		for _, ch := range entry.Changes {
			if isJSONNull(ch.Value) {
				out.Other = out.Other || (ch.Field != "calls" && ch.Field != "")
				continue
			}
			switch ch.Field {
			case "calls", "":
				var v wireValue
				if err := json.Unmarshal(ch.Value, &v); err != nil {
					return WebhookEvents{}, fmt.Errorf("whatsapp webhook: calls change: %w", err)
				}
				if err := v.collectCalls(&out, &events); err != nil {
					return WebhookEvents{}, err
				}
			case "messages":
				if err := collectMessages(ch.Value, &out, &events); err != nil {
					return WebhookEvents{}, err
				}
			case fieldAccountSettingsUpdate, fieldAccountUpdate:
				if err := collectAccount(entry, ch, &out, &events); err != nil {
					return WebhookEvents{}, err
				}
			default:
				out.Other = true
			}
		}
	}
	return out, nil
}

func isJSONNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// collectCalls adds a "calls" change's calls and call statuses to out.
func (v *wireValue) collectCalls(out *WebhookEvents, events *int) error {
	if *events += len(v.Calls); *events > MaxWebhookEvents {
		return errTooManyEvents
	}
	valueErrs := v.Errors.callErrors()
	for _, c := range v.Calls {
		out.Calls = append(out.Calls, v.callEvent(c, valueErrs))
	}
	for _, s := range v.Statuses {
		if !strings.EqualFold(s.Type, "call") {
			out.Other = true // a message status: not the gateway's
			continue
		}
		if *events++; *events > MaxWebhookEvents {
			return errTooManyEvents
		}
		out.Statuses = append(out.Statuses, v.statusEvent(s, valueErrs))
	}
	if len(v.Messages) > 0 {
		out.Other = true
	}
	return nil
}

func (v *wireValue) statusEvent(s wireStatus, valueErrs []CallError) StatusEvent {
	return StatusEvent{
		PhoneNumberID:         v.Metadata.PhoneNumberID,
		CallID:                s.ID,
		Status:                strings.ToUpper(s.Status),
		Timestamp:             s.Timestamp.unix(),
		RecipientID:           s.RecipientID,
		RecipientUserID:       s.RecipientUserID,
		BizOpaqueCallbackData: s.BizOpaqueCallbackData,
		Errors:                mergeErrors(s.Errors.callErrors(), valueErrs),
	}
}

// wireMessagesValue is the value of a "messages" change, read leniently:
// its entries are chat traffic of every kind, whose shapes are not the
// gateway's to judge. An entry it cannot read is Other, never an error.
type wireMessagesValue struct {
	Metadata json.RawMessage   `json:"metadata"`
	Contacts json.RawMessage   `json:"contacts"`
	Messages []json.RawMessage `json:"messages"`
	Statuses []json.RawMessage `json:"statuses"`
	Errors   json.RawMessage   `json:"errors"`
}

// collectMessages adds a "messages" change's call permission replies to
// out and marks the rest Other.
func collectMessages(raw json.RawMessage, out *WebhookEvents, events *int) error {
	var mv wireMessagesValue
	if err := json.Unmarshal(raw, &mv); err != nil {
		out.Other = true
		return nil
	}
	if len(mv.Statuses) > 0 || !isEmptyJSONArray(mv.Errors) {
		out.Other = true
	}
	var meta wireMetadata
	_ = json.Unmarshal(mv.Metadata, &meta) // unreadable: no phone number id
	var contacts []wireContact
	contactsRead := false
	for _, m := range mv.Messages {
		var wm wireMessage
		if json.Unmarshal(m, &wm) != nil {
			out.Other = true
			continue
		}
		if wm.isVoicemail() {
			if *events++; *events > MaxWebhookEvents {
				return errTooManyEvents
			}
			out.Voicemails = append(out.Voicemails, wm.voicemail(meta.PhoneNumberID))
			continue
		}
		if wm.Interactive == nil || wm.Interactive.CallPermissionReply == nil ||
			!strings.EqualFold(wm.Interactive.Type, "call_permission_reply") {
			out.Other = true
			continue
		}
		if *events++; *events > MaxWebhookEvents {
			return errTooManyEvents
		}
		if !contactsRead {
			_ = json.Unmarshal(mv.Contacts, &contacts) // names only
			contactsRead = true
		}
		out.PermissionReplies = append(out.PermissionReplies, wm.permissionReply(meta.PhoneNumberID, contacts))
	}
	return nil
}

func isEmptyJSONArray(raw json.RawMessage) bool {
	if isJSONNull(raw) {
		return true
	}
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) == 0
}

func (wm *wireMessage) permissionReply(phoneNumberID string, contacts []wireContact) PermissionReply {
	r := wm.Interactive.CallPermissionReply
	resp := strings.ToLower(strings.TrimSpace(r.Response))
	pr := PermissionReply{
		PhoneNumberID: phoneNumberID,
		From:          wm.From,
		FromUserID:    wm.FromUserID,
		MessageID:     wm.ID,
		// Accept "approve" too: Messenger's version of the same reply says so.
		Accepted:  resp == "accept" || resp == "approve",
		Permanent: bool(r.IsPermanent),
		Expires:   r.ExpirationTimestamp.unix(),
		Source:    strings.ToLower(strings.TrimSpace(r.ResponseSource)),
		Timestamp: wm.Timestamp.unix(),
		Response:  resp,
	}
	if wm.Context != nil {
		pr.ContextID = wm.Context.ID
	}
	pr.ProfileName = matchContact(contacts, wm.From, wm.FromUserID)
	return pr
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
		ToUserID:              c.ToUserID,
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

// profileName finds the user's contact: the caller's (from,
// from_user_id), or the called user's (to, to_user_id) for a
// business-initiated call.
func (v *wireValue) profileName(c wireCall) string {
	if strings.EqualFold(c.Direction, "BUSINESS_INITIATED") {
		return matchContact(v.Contacts, c.To, c.ToUserID)
	}
	return matchContact(v.Contacts, c.From, c.FromUserID)
}

// matchContact finds a contact by wa_id against waID, by user_id against
// userID, else takes the only contact.
func matchContact(contacts []wireContact, waID, userID string) string {
	for _, ct := range contacts {
		if (waID != "" && ct.WaID == waID) || (userID != "" && ct.UserID == userID) {
			return ct.Profile.Name
		}
	}
	if len(contacts) == 1 {
		return contacts[0].Profile.Name
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
	ID      string          `json:"id"`
	Time    json.RawMessage `json:"time"` // unix seconds; read leniently (entryTime)
	Changes []wireChange    `json:"changes"`
}

type wireChange struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"` // read by field
}

type wireMetadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

type wireValue struct {
	MessagingProduct string            `json:"messaging_product"`
	Metadata         wireMetadata      `json:"metadata"`
	Contacts         []wireContact     `json:"contacts"`
	Calls            []wireCall        `json:"calls"`
	Statuses         []wireStatus      `json:"statuses"`
	Errors           wireErrors        `json:"errors"`
	Messages         []json.RawMessage `json:"messages"` // not read; only seen
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
	ToUserID   string     `json:"to_user_id"`
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
	RecipientUserID       string     `json:"recipient_user_id"`
	BizOpaqueCallbackData string     `json:"biz_opaque_callback_data"`
	Errors                wireErrors `json:"errors"`
}

// wireMessage is a messages[] entry, declared as far as W8 and W9 need.
type wireMessage struct {
	From       string     `json:"from"`
	FromUserID string     `json:"from_user_id"`
	ID         string     `json:"id"`
	Timestamp  flexScalar `json:"timestamp"`
	Type       string     `json:"type"`
	Context    *struct {
		ID string `json:"id"`
	} `json:"context"`
	Interactive *struct {
		Type                string `json:"type"`
		CallPermissionReply *struct {
			Response            string     `json:"response"`
			IsPermanent         flexBool   `json:"is_permanent"`
			ExpirationTimestamp flexScalar `json:"expiration_timestamp"`
			ResponseSource      string     `json:"response_source"`
		} `json:"call_permission_reply"`
	} `json:"interactive"`
	Audio *struct {
		ID       flexScalar `json:"id"`
		MimeType string     `json:"mime_type"`
		SHA256   string     `json:"sha256"`
	} `json:"audio"`
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

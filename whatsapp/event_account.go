package whatsapp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Account events (webhook fields account_settings_update, W11, and
// account_update, W12) and voicemails (W9).

const (
	fieldAccountSettingsUpdate = "account_settings_update"
	fieldAccountUpdate         = "account_update"
)

// AccountEvent is a change of the webhook fields account_settings_update (W11) or account_update (W12).
//
// W11 (the number's settings changed, the business's own changes
// included) carries Event PHONE_NUMBER_SETTINGS, PhoneNumberID and, when
// calling settings changed, Calling (in R2's shape). W12 carries Event
// ACCOUNT_VIOLATION (a warning: ViolationType), ACCOUNT_RESTRICTION (a
// pause, usually 7 days: RestrictionType and Expiration; one AccountEvent
// per restriction_info entry) or another account event of the WABA
// (partner, ban, …: only Event). Meta names the number of a W12 by its
// display number (PhoneNumber), not by its id.
type AccountEvent struct {
	Field           string           // account_settings_update | account_update
	PhoneNumberID   string           // phone_number_settings.phone_number_id (W11), metadata.phone_number_id or phone_number_id if present
	Event           string           // upper-cased: PHONE_NUMBER_SETTINGS, ACCOUNT_VIOLATION, ACCOUNT_RESTRICTION, …
	ViolationType   string           // violation_info.violation_type: LOW_BUSINESS_INITIATED_CALLING_QUALITY, …
	RestrictionType string           // restriction_info[].restriction_type: RESTRICTED_BUSINESS_INITIATED_CALLING, …
	Expiration      time.Time        // restriction_info[].expiration; zero if none
	Calling         *CallingSettings // W11's phone_number_settings.calling, if present and readable
	Timestamp       time.Time        // value.timestamp, else the entry's time; zero if neither
	// Raw is the change's value, compact, SIP passwords masked; a value
	// longer than MaxAccountEventRaw bytes is a JSON string holding its
	// start (at most twice as long, escaped). Nil if unreadable.
	Raw json.RawMessage

	PhoneNumber string // W12's phone_number: the business's display number (e.g. 16505552771), else metadata.display_phone_number
	WABAID      string // the entry's id: the WhatsApp Business Account (Meta's examples say "0")

	key string // dedupe key: field, WABA, hash of the whole value, index
}

// Voicemail is W9: an inbound audio message whose id is the call id (wacid) of the call that left it.
//
// Meta delivers it best-effort, on the "messages" field, after the call's
// terminate. MediaID is fetched with DownloadMedia; SHA256 is Meta's
// digest as given (base64 in Meta's examples).
type Voicemail struct {
	PhoneNumberID, From, FromUserID, CallID string // CallID = messages[].id (a wacid.…)
	MediaID, MimeType, SHA256               string
	Timestamp                               time.Time
}

// User names the caller who left the voicemail.
func (v Voicemail) User() UserRef { return UserRef{WaID: v.From, BSUID: v.FromUserID} }

// MaxAccountEventRaw bounds AccountEvent.Raw.
const MaxAccountEventRaw = 8 << 10

// maxAccountRestrictions bounds the restriction_info entries read from
// one change (Meta sends one or two).
const maxAccountRestrictions = 64

// wireAccountValue is the value of an account_settings_update or
// account_update change, read leniently: an unreadable one is Other.
type wireAccountValue struct {
	Timestamp     flexScalar `json:"timestamp"`
	Type          string     `json:"type"`
	Event         string     `json:"event"`
	PhoneNumber   flexScalar `json:"phone_number"`
	PhoneNumberID flexScalar `json:"phone_number_id"`
	Metadata      *struct {
		DisplayPhoneNumber flexScalar `json:"display_phone_number"`
		PhoneNumberID      flexScalar `json:"phone_number_id"`
	} `json:"metadata"`
	PhoneNumberSettings *struct {
		PhoneNumberID flexScalar      `json:"phone_number_id"`
		Calling       json.RawMessage `json:"calling"`
	} `json:"phone_number_settings"`
	ViolationInfo *struct {
		ViolationType string `json:"violation_type"`
	} `json:"violation_info"`
	RestrictionInfo []struct {
		RestrictionType string     `json:"restriction_type"`
		Expiration      flexScalar `json:"expiration"`
	} `json:"restriction_info"`
}

// collectAccount adds an account change's events to out. A change not
// about calling is also Other: another application may need it.
func collectAccount(entry wireEntry, ch wireChange, out *WebhookEvents, events *int) error {
	var v wireAccountValue
	if json.Unmarshal(ch.Value, &v) != nil {
		out.Other = true
		return nil
	}
	base := AccountEvent{
		Field:     ch.Field,
		Event:     strings.ToUpper(strings.Trim(v.Event, "[] ")),
		Timestamp: v.Timestamp.unix(),
		Raw:       accountRaw(ch.Value),
		WABAID:    entry.ID,
	}
	if base.Timestamp.IsZero() {
		base.Timestamp = entryTime(entry.Time)
	}
	base.PhoneNumberID = string(v.PhoneNumberID)
	base.PhoneNumber = string(v.PhoneNumber)
	if v.Metadata != nil {
		base.PhoneNumberID = firstNonEmpty(base.PhoneNumberID, string(v.Metadata.PhoneNumberID))
		base.PhoneNumber = firstNonEmpty(base.PhoneNumber, string(v.Metadata.DisplayPhoneNumber))
	}
	sum := valueHash(ch.Value)
	calling := false
	evs := make([]AccountEvent, 0, 1)
	switch ch.Field {
	case fieldAccountSettingsUpdate:
		ev := base
		if ev.Event == "" {
			ev.Event = strings.ToUpper(strings.Trim(v.Type, "[] ")) // Meta's example: "[phone_number_settings]"
		}
		if ps := v.PhoneNumberSettings; ps != nil {
			ev.PhoneNumberID = firstNonEmpty(string(ps.PhoneNumberID), ev.PhoneNumberID)
			if ev.Event == "" {
				ev.Event = "PHONE_NUMBER_SETTINGS"
			}
			if !isJSONNull(ps.Calling) {
				calling = true // calling settings changed, readable or not
				var cs CallingSettings
				if json.Unmarshal(ps.Calling, &cs) == nil {
					ev.Calling = &cs
				}
			}
		}
		evs = append(evs, ev)
	default: // account_update
		if v.ViolationInfo != nil {
			base.ViolationType = strings.TrimSpace(v.ViolationInfo.ViolationType)
		}
		calling = base.ViolationType != "" || len(v.RestrictionInfo) > 0
		if base.ViolationType != "" && !aboutCalling(base.ViolationType) {
			calling = false
		}
		if len(v.RestrictionInfo) == 0 {
			evs = append(evs, base)
		}
		for _, r := range capList(v.RestrictionInfo, maxAccountRestrictions) {
			ev := base
			ev.RestrictionType = strings.TrimSpace(r.RestrictionType)
			ev.Expiration = r.Expiration.unix()
			if !aboutCalling(ev.RestrictionType) {
				calling = false
			}
			evs = append(evs, ev)
		}
	}
	if !calling {
		out.Other = true
	}
	for i := range evs {
		if *events++; *events > MaxWebhookEvents {
			return errTooManyEvents
		}
		evs[i].key = ch.Field + "\x00" + entry.ID + "\x00" + sum + "\x00" + strconv.Itoa(i)
		out.AccountEvents = append(out.AccountEvents, evs[i])
	}
	return nil
}

// aboutCalling tells the calling violations and restrictions
// (…_CALLING_QUALITY, USER_INITIATED_CALLS_LOW_PICKUP_RATE,
// RESTRICTED_…_CALLING…) from the others (messaging, templates).
func aboutCalling(typ string) bool { return strings.Contains(strings.ToUpper(typ), "CALL") }

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// entryTime reads an entry's time (unix seconds); zero if absent or odd.
func entryTime(raw json.RawMessage) time.Time {
	var f flexScalar
	if len(raw) == 0 || json.Unmarshal(raw, &f) != nil {
		return time.Time{}
	}
	return f.unix()
}

// valueHash names a change's value for deduplication: Meta's retries carry
// the same value.
func valueHash(raw json.RawMessage) string {
	var buf bytes.Buffer
	b := []byte(raw)
	if json.Compact(&buf, raw) == nil {
		b = buf.Bytes()
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// accountRaw is the value for AccountEvent.Raw: compact, any
// sip_user_password masked, bounded.
func accountRaw(raw json.RawMessage) json.RawMessage {
	if bytes.Contains(raw, []byte("sip_user_password")) {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			maskPasswords(v, 0)
			if b, err := json.Marshal(v); err == nil {
				raw = b
			}
		} else {
			return nil // unreadable and maybe holding a secret
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil
	}
	if buf.Len() <= MaxAccountEventRaw {
		return json.RawMessage(buf.Bytes())
	}
	// At most twice the bound: quotes and backslashes double, nothing
	// else is escaped (HTML escaping off).
	s, err := encodeJSON(strings.ToValidUTF8(buf.String()[:MaxAccountEventRaw], "") + "…")
	if err != nil {
		return nil
	}
	return s
}

// maskPasswords replaces the values of sip_user_password keys in a
// decoded JSON value, to a bounded depth.
func maskPasswords(v any, depth int) {
	if depth > 32 {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.EqualFold(k, "sip_user_password") {
				x[k] = maskedSecret
				continue
			}
			maskPasswords(e, depth+1)
		}
	case []any:
		for _, e := range x {
			maskPasswords(e, depth+1)
		}
	}
}

// isVoicemail tells W9 from other messages: an audio message whose id is
// a call id.
func (wm *wireMessage) isVoicemail() bool {
	return wm.Audio != nil && strings.HasPrefix(wm.ID, "wacid.") &&
		(wm.Type == "" || strings.EqualFold(wm.Type, "audio"))
}

func (wm *wireMessage) voicemail(phoneNumberID string) Voicemail {
	return Voicemail{
		PhoneNumberID: phoneNumberID,
		From:          wm.From,
		FromUserID:    wm.FromUserID,
		CallID:        wm.ID,
		MediaID:       string(wm.Audio.ID),
		MimeType:      wm.Audio.MimeType,
		SHA256:        wm.Audio.SHA256,
		Timestamp:     wm.Timestamp.unix(),
	}
}

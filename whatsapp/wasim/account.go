package wasim

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Account events the tests trigger, in Meta's shapes ("Configure Call
// Settings": settings update webhooks, calling restrictions, voicemail
// webhooks; the account_update webhook reference):
//
//   - account_settings_update (W11): value {messaging_product, timestamp,
//     type:"PHONE_NUMBER_SETTINGS", phone_number_settings{phone_number_id,
//     calling}}. Meta's sample shows type "[phone_number_settings]" while its
//     table says the value is PHONE_NUMBER_SETTINGS: the simulator writes the
//     latter. timestamp is a string of unix seconds, as in the sample.
//   - account_update (W12): entry{id, time, changes}, value {phone_number
//     (the display number), event ACCOUNT_VIOLATION with
//     violation_info{violation_type} or ACCOUNT_RESTRICTION with
//     restriction_info[{restriction_type, expiration}]}, no
//     messaging_product and no metadata, as Meta's samples. The low pickup
//     rate warning and the call button restriction carry Meta's
//     "remediation" text; the button restriction has no expiration unless
//     one is given (it lasts until the business shows the button again); the
//     other restrictions default to 7 days ("a period of 7 days").
//   - voicemail (W9): a messages webhook with an audio message whose id is
//     the call's wacid, audio{id, sha256 (base64), mime_type "audio/ogg;
//     codecs=opus"}, as Meta's voicemail sample.

// Account update events and their types (W12).
const (
	AccountViolation   = "ACCOUNT_VIOLATION"
	AccountRestriction = "ACCOUNT_RESTRICTION"
)

var (
	violationTypes = []string{
		"LOW_BUSINESS_INITIATED_CALLING_QUALITY", "LOW_USER_INITIATED_CALLING_QUALITY",
		"USER_INITIATED_CALLS_LOW_PICKUP_RATE", "LOW_CALLING_QUALITY",
	}
	// restrictionReasons are the reasons GET settings shows (Meta's samples).
	restrictionReasons = map[string]string{
		"RESTRICTED_BUSINESS_INITIATED_CALLING":                "Business initiated calling capability has been temporarily disabled for this phone number due to high negative feedback from users.",
		"RESTRICTED_USER_INITIATED_CALLING":                    "User initiated calling capability has been temporarily disabled for this phone number due to high negative feedback from users.",
		"RESTRICTED_BIZ_INITIATED_AND_USER_INITIATED_CALLING":  "Calling capability has been temporarily disabled for this phone number due to high negative feedback from users.",
		"RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN": "The call button has been hidden due to low pickup rates.",
	}
)

const (
	remediationPickup = "Please identify and address the cause of user-initiated calls not being picked up and make sure the business is properly resourced to handle expected call volumes."
	remediationButton = "The call button has been hidden due to low pickup rates. Please identify and address the cause of user-initiated calls not being picked up. Next, display the calling buttons by either working with your partner or going to WhatsApp Manager > Account tools > Phone numbers > select Phone number > Calls > toggle on Display call buttons"
	buttonHidden      = "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN"
)

// accountEnvelope is a webhook whose value is not the messaging value
// (account_settings_update, account_update).
type accountEnvelope struct {
	Object string         `json:"object"`
	Entry  []accountEntry `json:"entry"`
}

type accountEntry struct {
	ID      string          `json:"id"`
	Time    int64           `json:"time,omitempty"`
	Changes []accountChange `json:"changes"`
}

type accountChange struct {
	Field string `json:"field"`
	Value any    `json:"value"`
}

type settingsUpdateValue struct {
	MessagingProduct    string              `json:"messaging_product"`
	Timestamp           string              `json:"timestamp"`
	Type                string              `json:"type"`
	PhoneNumberSettings phoneNumberSettings `json:"phone_number_settings"`
}

type phoneNumberSettings struct {
	PhoneNumberID string         `json:"phone_number_id"`
	Calling       map[string]any `json:"calling"` // null when calling did not change
}

type accountUpdateValue struct {
	PhoneNumber     string            `json:"phone_number"`
	Event           string            `json:"event"`
	ViolationInfo   *violationInfo    `json:"violation_info,omitempty"`
	RestrictionInfo []restrictionInfo `json:"restriction_info,omitempty"`
}

type violationInfo struct {
	ViolationType string `json:"violation_type"`
	Remediation   string `json:"remediation,omitempty"`
}

type restrictionInfo struct {
	RestrictionType string `json:"restriction_type"`
	Expiration      int64  `json:"expiration,omitempty"`
	Remediation     string `json:"remediation,omitempty"`
}

func (s *Sim) accountEnvelope(field string, at time.Time, v any) accountEnvelope {
	e := accountEntry{ID: s.cfg.WABAID, Changes: []accountChange{{Field: field, Value: v}}}
	if !at.IsZero() {
		e.Time = at.Unix()
	}
	return accountEnvelope{Object: "whatsapp_business_account", Entry: []accountEntry{e}}
}

// SendAccountSettingsUpdate posts an account_settings_update webhook (W11)
// for pnid carrying calling as phone_number_settings.calling, as Meta does
// when a number's settings change (in WhatsApp Manager, say). calling is
// also merged at its top level into the stored settings, unchecked, so GET
// settings shows the change. It returns when the webhook is delivered (or
// not, after Meta's retries).
func (s *Sim) SendAccountSettingsUpdate(pnid string, calling map[string]any) error {
	s.mu.Lock()
	ns := s.numbers[pnid]
	if ns == nil {
		s.mu.Unlock()
		return errUnknownNumber
	}
	calling = deepCopy(calling)
	merged := maps.Clone(ns.calling)
	maps.Copy(merged, deepCopy(calling))
	ns.calling = merged
	s.mu.Unlock()
	return s.postSettingsUpdate(pnid, calling)
}

func (s *Sim) postSettingsUpdate(pnid string, calling map[string]any) error {
	v := settingsUpdateValue{
		MessagingProduct: "whatsapp", Timestamp: unixString(time.Now()), Type: "PHONE_NUMBER_SETTINGS",
		PhoneNumberSettings: phoneNumberSettings{PhoneNumberID: pnid, Calling: calling},
	}
	return s.postWebhook(s.ctx, "account_settings_update", s.cfg.AppSecret, marshal(s.accountEnvelope("account_settings_update", time.Time{}, v)), webhookAttempts)
}

// SendAccountUpdate posts an account_update webhook (W12) for pnid: kind
// ACCOUNT_VIOLATION with typ as violation_type (LOW_BUSINESS_INITIATED_CALLING_QUALITY,
// LOW_USER_INITIATED_CALLING_QUALITY, USER_INITIATED_CALLS_LOW_PICKUP_RATE,
// LOW_CALLING_QUALITY), or ACCOUNT_RESTRICTION with typ as restriction_type
// (RESTRICTED_BUSINESS_INITIATED_CALLING, RESTRICTED_USER_INITIATED_CALLING,
// RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN,
// RESTRICTED_BIZ_INITIATED_AND_USER_INITIATED_CALLING) lasting until
// expiration (zero: 7 days from the simulator's clock; none for the call
// button). A restriction is listed in GET settings' restrictions until it
// expires. Expiration is ignored for a violation.
func (s *Sim) SendAccountUpdate(pnid, kind, typ string, expiration time.Time) error {
	s.mu.Lock()
	ns := s.numbers[pnid]
	if ns == nil {
		s.mu.Unlock()
		return errUnknownNumber
	}
	v := accountUpdateValue{PhoneNumber: ns.cfg.DisplayPhoneNumber, Event: kind}
	switch kind {
	case AccountViolation:
		if !slices.Contains(violationTypes, typ) {
			s.mu.Unlock()
			return fmt.Errorf("wasim: violation_type %q: want one of %v", typ, violationTypes)
		}
		v.ViolationInfo = &violationInfo{ViolationType: typ}
		if typ == "USER_INITIATED_CALLS_LOW_PICKUP_RATE" {
			v.ViolationInfo.Remediation = remediationPickup
		}
	case AccountRestriction:
		reason, ok := restrictionReasons[typ]
		if !ok {
			s.mu.Unlock()
			return fmt.Errorf("wasim: restriction_type %q: want one of %v", typ, slices.Sorted(maps.Keys(restrictionReasons)))
		}
		if expiration.IsZero() && typ != buttonHidden {
			expiration = s.clock().Add(restrictionPause)
		}
		ns.restrictions = slices.DeleteFunc(ns.restrictions, func(r restriction) bool { return r.typ == typ })
		ns.restrictions = append(ns.restrictions, restriction{typ: typ, reason: reason, expiration: expiration})
		ri := restrictionInfo{RestrictionType: typ, Expiration: unixOrZero(expiration)}
		if typ == buttonHidden {
			ri.Remediation = remediationButton
		}
		v.RestrictionInfo = []restrictionInfo{ri}
	default:
		s.mu.Unlock()
		return fmt.Errorf("wasim: account_update event %q: want %s or %s", kind, AccountViolation, AccountRestriction)
	}
	s.mu.Unlock()
	s.log.Info("account update", zap.String("phone_number_id", pnid), zap.String("event", kind), zap.String("type", typ))
	return s.postWebhook(s.ctx, "account_update", s.cfg.AppSecret, marshal(s.accountEnvelope("account_update", time.Now(), v)), webhookAttempts)
}

// SendVoicemail posts the voicemail a user left after call callID (W9): a
// messages webhook for pnid with an audio message from fromWaID whose id
// is the call id and whose media (ogg, an Ogg Opus file) GET /{media_id}
// and the URL it gives serve. The user's BSUID and profile name are the
// call's or the SetUser user's when the simulator knows them (made up
// otherwise). It returns the media id once the webhook is delivered (or
// not, after Meta's retries). Meta sends it only when voicemail is enabled;
// the simulator does not check that.
func (s *Sim) SendVoicemail(pnid, callID, fromWaID string, ogg []byte) (string, error) {
	waID, ok := normalizeWaID(fromWaID)
	if !ok {
		return "", fmt.Errorf("wasim: voicemail from %q: not a phone number", fromWaID)
	}
	if len(callID) <= len("wacid.") || callID[:len("wacid.")] != "wacid." {
		return "", fmt.Errorf("wasim: voicemail call id %q is not a wacid", callID)
	}
	if _, err := oggOpusDuration(ogg); err != nil {
		return "", fmt.Errorf("wasim: voicemail audio: %w", err)
	}
	u := User{WaID: waID}
	s.mu.Lock()
	ns := s.numbers[pnid]
	if ns == nil {
		s.mu.Unlock()
		return "", errUnknownNumber
	}
	if c := s.calls[callID]; c != nil && c.opts.From == waID {
		u.BSUID, u.ProfileName = c.opts.FromUserID, c.opts.ProfileName
	} else if st := s.lookupUserLocked(waID, ""); st != nil {
		u = st.u
	}
	_ = normalizeUser(&u) // makes up what is missing
	mo := s.storeMediaLocked(pnid, useCaseVoicemail, "audio/ogg", append([]byte(nil), ogg...))
	display := ns.cfg.DisplayPhoneNumber
	s.mu.Unlock()

	msg := webhookMessage{
		From: u.WaID, FromUserID: u.BSUID, ID: callID, Timestamp: unixString(time.Now()), Type: "audio",
		Audio: &messageMedia{ID: mo.id, SHA256: base64.StdEncoding.EncodeToString(mo.sum[:]), MimeType: "audio/ogg; codecs=opus"},
	}
	v := changeValue{
		Contacts: []contact{{Profile: profile{Name: u.ProfileName}, WaID: u.WaID, UserID: u.BSUID}},
		Messages: []webhookMessage{msg},
	}
	env := s.envelopeAt("messages", v, metadata{DisplayPhoneNumber: display, PhoneNumberID: pnid})
	s.log.Info("voicemail", zap.String("phone_number_id", pnid), zap.String("call_id", callID), zap.String("from", waID), zap.String("media_id", mo.id))
	return mo.id, s.postWebhook(s.ctx, "voicemail", s.cfg.AppSecret, marshal(env), webhookAttempts)
}

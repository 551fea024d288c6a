package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Business-initiated calls (BIC): the call permission (R4, R5) and the
// connect (R6) of Meta's calling API.

// UserRef names a WhatsApp user: phone number (wa_id, digits, no '+') or business-scoped user id (BSUID); To wins if both.
//
// WaID may be given as "+14085551234" or "14085551234"; only the digits are
// sent. When both are set only WaID is sent (Meta takes `to` over
// `recipient` when both come, R6).
type UserRef struct{ WaID, BSUID string }

// String names the user for errors: the number, else the BSUID.
func (u UserRef) String() string {
	if u.WaID != "" {
		return u.WaID
	}
	return u.BSUID
}

// target is a validated UserRef: exactly one of waID (digits) and bsuid.
type target struct{ waID, bsuid string }

// E.164 numbers have at most 15 digits (ITU-T E.164 §6) and a country code
// that never starts with 0. The shortest numbers in use have 7 digits
// (+683 NNNN); 6 leaves room.
const (
	minWaIDDigits = 6
	maxWaIDDigits = 15
	maxBSUIDLen   = 128
)

// resolve checks u and picks what is sent.
func (u UserRef) resolve() (target, error) {
	if u.WaID != "" {
		d, err := waIDDigits(u.WaID)
		if err != nil {
			return target{}, err
		}
		return target{waID: d}, nil
	}
	if u.BSUID != "" {
		if err := checkBSUID(u.BSUID); err != nil {
			return target{}, err
		}
		return target{bsuid: u.BSUID}, nil
	}
	return target{}, errors.New("no user: neither a phone number nor a BSUID")
}

// waIDDigits accepts "+14085551234" or "14085551234" and returns the
// digits. Anything else (spaces, dashes, letters, a leading 0, too short or
// too long) is refused rather than guessed at.
func waIDDigits(s string) (string, error) {
	d := strings.TrimPrefix(s, "+")
	bad := func(why string) error {
		return fmt.Errorf("phone number %q %s: give the international number as digits, with or without '+' (e.g. +14085551234)", s, why)
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", bad("has a character other than digits")
		}
	}
	switch {
	case len(d) < minWaIDDigits:
		return "", bad(fmt.Sprintf("has fewer than %d digits", minWaIDDigits))
	case len(d) > maxWaIDDigits:
		return "", bad(fmt.Sprintf("has more than %d digits (E.164)", maxWaIDDigits))
	case d[0] == '0':
		return "", bad("starts with 0 (a country code never does)")
	}
	return d, nil
}

// checkBSUID accepts Meta's business-scoped user ids, "<country>.<alphanumeric>"
// (e.g. "US.13491208655302741918"): letters, digits, '.', '_' and '-'.
func checkBSUID(s string) error {
	if len(s) > maxBSUIDLen {
		return fmt.Errorf("BSUID is %d bytes, more than %d", len(s), maxBSUIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("BSUID %q has a character other than letters, digits, '.', '_' and '-'", s)
		}
	}
	return nil
}

// ConnectRequest is what Connect sends.
type ConnectRequest struct {
	To        UserRef
	SDPOffer  string // our WebRTC offer
	BizOpaque string // biz_opaque_callback_data, ≤512 chars (validate)
}

// connectBody is R6's JSON, fields in Meta's documented order.
type connectBody struct {
	MessagingProduct      string      `json:"messaging_product"`
	To                    string      `json:"to,omitempty"`
	Recipient             string      `json:"recipient,omitempty"`
	Action                string      `json:"action"`
	Session               callSession `json:"session"`
	BizOpaqueCallbackData string      `json:"biz_opaque_callback_data,omitempty"`
}

// Connect places a business-initiated call (R6: POST /{PNID}/calls action connect) and returns Meta's call id (wacid).
//
// Meta's SDP answer comes later, in a connect webhook with direction
// BUSINESS_INITIATED (W2); progress in call statuses (W3). The user must
// have granted call permission (else GraphError code 138006).
//
// A connect is never repeated once it may have reached Meta: a second one
// would ring the user twice. It is repeated only when the request provably
// did nothing: it never left whole (connection refused, DNS or TLS failure,
// a timeout before it was written) or Meta throttled it (HTTP 429, code
// 613, …). A timeout or a lost connection after it was sent, a 5xx, or an
// unreadable 2xx give an error wrapping ErrOutcomeUnknown: the call may be
// ringing, and its webhooks (carrying BizOpaque) will say so.
func (c *GraphClient) Connect(ctx context.Context, phoneNumberID string, r ConnectRequest) (callID string, err error) {
	wrap := func(err error) error { return fmt.Errorf("whatsapp connect to %s: %w", r.To, err) }
	t, err := r.To.resolve()
	if err != nil {
		return "", wrap(err)
	}
	switch {
	case strings.TrimSpace(r.SDPOffer) == "":
		return "", wrap(errors.New("empty SDP offer"))
	case utf8.RuneCountInString(r.BizOpaque) > MaxBizOpaqueLen:
		return "", wrap(fmt.Errorf("biz_opaque_callback_data is %d characters, more than %d",
			utf8.RuneCountInString(r.BizOpaque), MaxBizOpaqueLen))
	}
	if err := c.checkCommon(phoneNumberID); err != nil {
		return "", wrap(err)
	}
	payload, err := encodeJSON(connectBody{
		MessagingProduct: "whatsapp", To: t.waID, Recipient: t.bsuid, Action: "connect",
		Session:               callSession{SDPType: "offer", SDP: r.SDPOffer},
		BizOpaqueCallbackData: r.BizOpaque,
	})
	if err != nil {
		return "", wrap(err)
	}
	gr := &graphRequest{
		action: "connect", method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "calls",
		payload: payload, replayable: false, throttleRetry: true,
		decode: func(body []byte) error {
			var resp struct {
				Calls []struct {
					ID string `json:"id"`
				} `json:"calls"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				return errors.New("not JSON")
			}
			if len(resp.Calls) == 0 || blankID(resp.Calls[0].ID) {
				return errors.New("no calls[0].id")
			}
			callID = resp.Calls[0].ID
			return nil
		},
	}
	if err := c.do(ctx, gr, c.log.With(zap.String("action", "connect"), zap.String("phone_number_id", phoneNumberID))); err != nil {
		return "", wrap(err)
	}
	return callID, nil
}

// checkCommon refuses what no request can be sent without.
func (c *GraphClient) checkCommon(phoneNumberID string) error {
	switch {
	case phoneNumberID == "":
		return errors.New("no phone number id")
	case c.token == "":
		return errors.New("no access token configured")
	}
	return nil
}

// CallPermission is R5's answer: the user's call permission and what the
// business may do now.
type CallPermission struct {
	Status     string             // no_permission | temporary | permanent
	Expires    time.Time          // zero if none
	CanCall    bool               // actions[start_call].can_perform_action
	CanRequest bool               // actions[send_call_permission_request].can_perform_action
	Actions    []PermissionAction // name, can perform, limits (time_period, max_allowed, current_usage, limit_expiration_time)
}

// PermissionAction is one entry of R5's actions[].
type PermissionAction struct {
	Name       string // action_name: start_call, send_call_permission_request, …
	CanPerform bool   // can_perform_action
	Limits     []PermissionLimit
}

// PermissionLimit is one entry of an action's limits[].
type PermissionLimit struct {
	TimePeriod      string        // time_period as Meta gives it (ISO 8601, e.g. "PT24H")
	Period          time.Duration // TimePeriod read, 0 if unreadable
	MaxAllowed      int           // max_allowed
	CurrentUsage    int           // current_usage
	LimitExpiration time.Time     // limit_expiration_time, zero if none
}

// maxPermissionActions bounds the actions and limits read from one answer.
const maxPermissionActions = 32

type wirePermission struct {
	Permission *struct {
		Status         string     `json:"status"`
		ExpirationTime flexScalar `json:"expiration_time"`
	} `json:"permission"`
	Actions []struct {
		ActionName string `json:"action_name"`
		// can_perform_action on WhatsApp; can_perform in Messenger's
		// version of the same API, taken too.
		CanPerformAction *flexBool `json:"can_perform_action"`
		CanPerform       *flexBool `json:"can_perform"`
		Limits           []struct {
			TimePeriod          string     `json:"time_period"`
			MaxAllowed          flexScalar `json:"max_allowed"`
			CurrentUsage        flexScalar `json:"current_usage"`
			LimitExpirationTime flexScalar `json:"limit_expiration_time"`
		} `json:"limits"`
	} `json:"actions"`
}

// callPermissionsPerWindow and callPermissionsWindow are R5's rate limit,
// "5 requests in a one-second window" per phone number (error 613 beyond).
// The window has 100 ms more so that network jitter cannot squeeze two
// requests sent a second apart into one of Meta's windows.
const (
	callPermissionsPerWindow = 5
	callPermissionsWindow    = time.Second + 100*time.Millisecond
)

// CallPermissions is R5 (GET /{PNID}/call_permissions?user_wa_id= or ?recipient=).
//
// At most 5 are sent per phone number id in any second (Meta's limit); more
// wait for their turn within ctx. Being a read, a failed attempt is
// repeated as for the call actions, and a throttled one too.
func (c *GraphClient) CallPermissions(ctx context.Context, phoneNumberID string, user UserRef) (*CallPermission, error) {
	wrap := func(err error) error { return fmt.Errorf("whatsapp call permissions of %s: %w", user, err) }
	t, err := user.resolve()
	if err != nil {
		return nil, wrap(err)
	}
	if err := c.checkCommon(phoneNumberID); err != nil {
		return nil, wrap(err)
	}
	q := url.Values{}
	if t.waID != "" {
		q.Set("user_wa_id", t.waID)
	} else {
		q.Set("recipient", t.bsuid)
	}
	var perm *CallPermission
	gr := &graphRequest{
		action: "call_permissions", method: http.MethodGet, phoneNumberID: phoneNumberID,
		edge: "call_permissions", query: q, replayable: true, throttleRetry: true, limiter: c.permLimiter,
		decode: func(body []byte) error {
			var w wirePermission
			if err := json.Unmarshal(body, &w); err != nil {
				return errors.New("not a permission object")
			}
			if w.Permission == nil || w.Permission.Status == "" {
				return errors.New("no permission.status")
			}
			perm = w.callPermission()
			return nil
		},
	}
	if err := c.do(ctx, gr, c.log.With(zap.String("action", "call_permissions"), zap.String("phone_number_id", phoneNumberID))); err != nil {
		return nil, wrap(err)
	}
	return perm, nil
}

func (w *wirePermission) callPermission() *CallPermission {
	p := &CallPermission{
		Status:  strings.ToLower(strings.TrimSpace(w.Permission.Status)),
		Expires: w.Permission.ExpirationTime.unix(),
	}
	acts := w.Actions
	if len(acts) > maxPermissionActions {
		acts = acts[:maxPermissionActions]
	}
	for _, a := range acts {
		pa := PermissionAction{Name: a.ActionName}
		switch {
		case a.CanPerformAction != nil:
			pa.CanPerform = bool(*a.CanPerformAction)
		case a.CanPerform != nil:
			pa.CanPerform = bool(*a.CanPerform)
		}
		lims := a.Limits
		if len(lims) > maxPermissionActions {
			lims = lims[:maxPermissionActions]
		}
		for _, l := range lims {
			maxAllowed, _ := l.MaxAllowed.float()
			usage, _ := l.CurrentUsage.float()
			pa.Limits = append(pa.Limits, PermissionLimit{
				TimePeriod:      l.TimePeriod,
				Period:          isoDuration(l.TimePeriod),
				MaxAllowed:      int(maxAllowed),
				CurrentUsage:    int(usage),
				LimitExpiration: l.LimitExpirationTime.unix(),
			})
		}
		switch strings.ToLower(pa.Name) {
		case "start_call":
			p.CanCall = pa.CanPerform
		case "send_call_permission_request":
			p.CanRequest = pa.CanPerform
		}
		p.Actions = append(p.Actions, pa)
	}
	return p
}

// isoDuration reads the ISO 8601 durations Meta uses for limits
// ("PT24H", "P7D", "PT1H30M"); anything else (years, months, weeks,
// fractions) gives 0.
func isoDuration(s string) time.Duration {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) < 3 || s[0] != 'P' {
		return 0
	}
	var d time.Duration
	inTime, timeUnits := false, 0
	n, digits := 0, 0
	for i := 1; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= '0' && ch <= '9':
			if digits++; digits > 6 { // bound: no overflow of time.Duration
				return 0
			}
			n = n*10 + int(ch-'0')
			continue
		case ch == 'T' && !inTime && digits == 0:
			inTime = true
			continue
		}
		if digits == 0 {
			return 0
		}
		var unit time.Duration
		switch {
		case ch == 'D' && !inTime:
			unit = 24 * time.Hour
		case ch == 'H' && inTime:
			unit = time.Hour
		case ch == 'M' && inTime:
			unit = time.Minute
		case ch == 'S' && inTime:
			unit = time.Second
		default:
			return 0
		}
		if inTime {
			timeUnits++
		}
		d += time.Duration(n) * unit
		n, digits = 0, 0
	}
	if digits != 0 || inTime && timeUnits == 0 { // "P1", "P1DT"
		return 0
	}
	return d
}

// flexBool holds a JSON boolean, or "true"/"false" as a string.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case bool:
		*b = flexBool(x)
	case string:
		*b = flexBool(strings.EqualFold(strings.TrimSpace(x), "true"))
	default:
		*b = false
	}
	return nil
}

// messageTarget is the recipient part of a POST /{PNID}/messages body.
type messageTarget struct {
	MessagingProduct string `json:"messaging_product"`
	RecipientType    string `json:"recipient_type"`
	To               string `json:"to,omitempty"`
	Recipient        string `json:"recipient,omitempty"`
	Type             string `json:"type"`
}

type permissionRequestBody struct {
	messageTarget
	Interactive struct {
		Type   string `json:"type"`
		Action struct {
			Name string `json:"name"`
		} `json:"action"`
		Body struct {
			Text string `json:"text"`
		} `json:"body"`
	} `json:"interactive"`
}

type permissionTemplateBody struct {
	messageTarget
	Template struct {
		Name     string `json:"name"`
		Language struct {
			Code string `json:"code"`
		} `json:"language"`
	} `json:"template"`
}

// maxInteractiveBodyLen is the longest body text of an interactive message
// Meta takes (1024 characters).
const maxInteractiveBodyLen = 1024

// SendCallPermissionRequest sends R4's free-form interactive call_permission_request (inside the 24 h window).
//
// Meta limits requests to 1 per 24 h and 2 per 7 days per user (138009),
// and refuses one while a permanent permission stands (138017). Like
// Connect, it is repeated only when it provably did nothing: a message sent
// twice reaches the user twice.
func (c *GraphClient) SendCallPermissionRequest(ctx context.Context, phoneNumberID string, user UserRef, bodyText string) (messageID string, err error) {
	wrap := func(err error) error { return fmt.Errorf("whatsapp call permission request to %s: %w", user, err) }
	t, err := user.resolve()
	if err != nil {
		return "", wrap(err)
	}
	switch n := utf8.RuneCountInString(bodyText); {
	case strings.TrimSpace(bodyText) == "":
		return "", wrap(errors.New("empty body text (Meta requires one)"))
	case n > maxInteractiveBodyLen:
		return "", wrap(fmt.Errorf("body text is %d characters, more than %d", n, maxInteractiveBodyLen))
	}
	var b permissionRequestBody
	b.messageTarget = t.messageTarget("interactive")
	b.Interactive.Type = "call_permission_request"
	b.Interactive.Action.Name = "call_permission_request"
	b.Interactive.Body.Text = bodyText
	id, err := c.sendMessage(ctx, phoneNumberID, "permission_request", b)
	if err != nil {
		return "", wrap(err)
	}
	return id, nil
}

// SendCallPermissionTemplate sends an approved template carrying a call_permission_request component (outside the window).
//
// The call_permission_request component belongs to the template as
// approved (MARKETING or UTILITY category); the message names the template
// and its language only, so templates whose body has variables cannot be
// sent this way. Repeated only when it provably did nothing, like
// SendCallPermissionRequest.
func (c *GraphClient) SendCallPermissionTemplate(ctx context.Context, phoneNumberID string, user UserRef, template, language string) (messageID string, err error) {
	wrap := func(err error) error { return fmt.Errorf("whatsapp call permission template to %s: %w", user, err) }
	t, err := user.resolve()
	if err != nil {
		return "", wrap(err)
	}
	switch {
	case strings.TrimSpace(template) == "":
		return "", wrap(errors.New("no template name"))
	case strings.TrimSpace(language) == "":
		return "", wrap(errors.New("no template language (e.g. en_US)"))
	}
	var b permissionTemplateBody
	b.messageTarget = t.messageTarget("template")
	b.Template.Name = template
	b.Template.Language.Code = language
	id, err := c.sendMessage(ctx, phoneNumberID, "permission_template", b)
	if err != nil {
		return "", wrap(err)
	}
	return id, nil
}

func (t target) messageTarget(typ string) messageTarget {
	return messageTarget{MessagingProduct: "whatsapp", RecipientType: "individual", To: t.waID, Recipient: t.bsuid, Type: typ}
}

// sendMessage posts body to /{PNID}/messages and returns messages[0].id.
func (c *GraphClient) sendMessage(ctx context.Context, phoneNumberID, action string, body any) (string, error) {
	if err := c.checkCommon(phoneNumberID); err != nil {
		return "", err
	}
	payload, err := encodeJSON(body)
	if err != nil {
		return "", err
	}
	var id string
	gr := &graphRequest{
		action: action, method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "messages",
		payload: payload, replayable: false, throttleRetry: true,
		decode: func(b []byte) error {
			var resp struct {
				Messages []struct {
					ID string `json:"id"`
				} `json:"messages"`
			}
			if err := json.Unmarshal(b, &resp); err != nil {
				return errors.New("not JSON")
			}
			if len(resp.Messages) == 0 || blankID(resp.Messages[0].ID) {
				return errors.New("no messages[0].id")
			}
			id = resp.Messages[0].ID
			return nil
		},
	}
	if err := c.do(ctx, gr, c.log.With(zap.String("action", action), zap.String("phone_number_id", phoneNumberID))); err != nil {
		return "", err
	}
	return id, nil
}

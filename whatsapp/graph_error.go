package whatsapp

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// GraphError is Meta's Graph API error object
// ({"error":{"message","type","code","error_subcode","fbtrace_id"}}), with
// the HTTP status it came with. A non-2xx answer whose body is not that
// object still gives a GraphError: HTTPStatus and a snippet of the body in
// Message. The access token never appears in it.
type GraphError struct {
	HTTPStatus int
	Message    string
	Type       string
	Code       int
	Subcode    int
	FBTraceID  string

	UserTitle   string // error_user_title, if any
	UserMessage string // error_user_msg, if any
	Details     string // error_data.details, if any
	IsTransient bool   // is_transient, if Meta said so
}

// Error includes the HTTP status, code, subcode, fbtrace_id and message.
func (e *GraphError) Error() string {
	var b strings.Builder
	b.WriteString("graph api error: HTTP ")
	b.WriteString(strconv.Itoa(e.HTTPStatus))
	if e.Code != 0 {
		b.WriteString(" code=")
		b.WriteString(strconv.Itoa(e.Code))
	}
	if e.Subcode != 0 {
		b.WriteString(" subcode=")
		b.WriteString(strconv.Itoa(e.Subcode))
	}
	if e.Type != "" {
		b.WriteString(" type=")
		b.WriteString(e.Type)
	}
	if e.FBTraceID != "" {
		b.WriteString(" fbtrace_id=")
		b.WriteString(e.FBTraceID)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Details != "" && e.Details != e.Message {
		b.WriteString(" (")
		b.WriteString(e.Details)
		b.WriteString(")")
	}
	return b.String()
}

// Throttled reports whether Meta refused the request for a rate limit,
// before acting on it: HTTP 429 (RFC 6585 §4), or Graph error codes 4
// (application request limit), 613 (API rate limit, R5's "5 requests in a
// one-second window"), 80007 (WhatsApp Business Account rate limit) or
// 130429 (Cloud API throughput).
func (e *GraphError) Throttled() bool {
	if e.HTTPStatus == 429 {
		return true
	}
	switch e.Code {
	case 4, 613, 80007, 130429:
		return e.HTTPStatus >= 400 && e.HTTPStatus < 500
	}
	return false
}

type wireGraphError struct {
	Error *struct {
		Message     string          `json:"message"`
		Type        string          `json:"type"`
		Code        flexScalar      `json:"code"`
		Subcode     flexScalar      `json:"error_subcode"`
		FBTraceID   string          `json:"fbtrace_id"`
		UserTitle   string          `json:"error_user_title"`
		UserMessage string          `json:"error_user_msg"`
		IsTransient bool            `json:"is_transient"`
		ErrorData   json.RawMessage `json:"error_data"`
	} `json:"error"`
}

// parseGraphError reads Meta's error object out of body, or, when body is
// not one, describes the body. secret is scrubbed from every field (Meta
// quotes a malformed access token back in some messages).
func parseGraphError(status int, body []byte, secret string) *GraphError {
	ge := &GraphError{HTTPStatus: status}
	var w wireGraphError
	if err := json.Unmarshal(body, &w); err == nil && w.Error != nil &&
		(w.Error.Message != "" || w.Error.Code != "" || w.Error.Type != "") {
		code, _ := w.Error.Code.float()
		sub, _ := w.Error.Subcode.float()
		ge.Message = w.Error.Message
		ge.Type = w.Error.Type
		ge.Code = int(code)
		ge.Subcode = int(sub)
		ge.FBTraceID = w.Error.FBTraceID
		ge.UserTitle = w.Error.UserTitle
		ge.UserMessage = w.Error.UserMessage
		ge.IsTransient = w.Error.IsTransient
		ge.Details = errorDataDetails(w.Error.ErrorData)
	} else {
		// Redact before cutting, so no part of the secret is left.
		ge.Message = "unexpected response body: " + snippet([]byte(redact(string(body), secret)))
	}
	for _, f := range []*string{&ge.Message, &ge.Type, &ge.FBTraceID, &ge.UserTitle, &ge.UserMessage, &ge.Details} {
		*f = redact(*f, secret)
	}
	return ge
}

// errorDataDetails takes error_data.details whether error_data is an object
// or a plain string.
func errorDataDetails(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var obj struct {
		Details string `json:"details"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Details
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

const snippetMax = 256

// snippet returns the start of body as printable, valid UTF-8 text.
func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return "(empty)"
	}
	cut := false
	if len(s) > snippetMax {
		s = s[:snippetMax]
		cut = true
	}
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if cut {
		s += "…"
	}
	return s
}

// redact removes secret from s, and the value of any
// "sip_user_password" it quotes (R2's answer holds one).
func redact(s, secret string) string {
	if secret != "" && strings.Contains(s, secret) {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	if strings.Contains(s, "sip_user_password") {
		s = sipPasswordRE.ReplaceAllString(s, `${1}"[REDACTED]"`)
	}
	return s
}

// sipPasswordRE matches a JSON "sip_user_password" member up to the end of
// its value (a string, or anything else up to a delimiter), escaped or
// not; a value cut short by the end of s is matched to the end.
var sipPasswordRE = regexp.MustCompile(`((?:\\?")?sip_user_password(?:\\?")?\s*:\s*)(?:\\?"(?:[^"\\]|\\.)*(?:"|$)|[^,}\]\s]*)`)

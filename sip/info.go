package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// DTMF over SIP INFO: the legacy usage of INFO (RFC 2976, kept by RFC 6086
// §2 without an Info Package) with the bodies PBXs send:
//
//	Content-Type: application/dtmf-relay     Content-Type: application/dtmf
//
//	Signal=5                                 5
//	Duration=160
//
// Signal is a digit 0-9 * # A-D or its RFC 4733 event code (10 = *, 11 = #,
// 12-15 = A-D); Duration is in milliseconds.
const (
	contentDTMFRelay = "application/dtmf-relay"
	contentDTMF      = "application/dtmf"
)

// DefaultInfoDigitDuration is the tone length taken for a received digit
// whose INFO gives none (application/dtmf, or dtmf-relay without Duration),
// and sent by SendInfoDigit when d <= 0.
const DefaultInfoDigitDuration = 250 * time.Millisecond

// maxInfoDigitDuration bounds the durations sent and accepted.
const maxInfoDigitDuration = time.Minute

// maxPendingDigits bounds the digits kept while no OnInfoDigit is set.
const maxPendingDigits = 32

type infoDigit struct {
	digit rune
	d     time.Duration
}

// errHookFlash is a dtmf-relay Signal that is a hook flash, not a digit.
var errHookFlash = errors.New("dtmf: hook flash")

// SendInfoDigit sends one DTMF digit (0-9 * # A-D; a-d are taken as A-D) to
// the PBX in an in-dialog INFO with an application/dtmf-relay body, and waits
// for the final response, bounded by ctx, Timer F and the end of the call.
// d <= 0 sends DefaultInfoDigitDuration. A non-2xx response is a
// *FinalError; a call that ends first gives ErrCallEnded. Concurrent calls
// are sent one at a time, in the order they get their turn.
func (c *Call) SendInfoDigit(ctx context.Context, digit rune, d time.Duration) error {
	sig, ok := normDigit(digit)
	if !ok {
		return fmt.Errorf("sip: INFO: %q is not a DTMF digit (0-9 * # A-D)", digit)
	}
	if d <= 0 {
		d = DefaultInfoDigitDuration
	}
	if d > maxInfoDigitDuration {
		return fmt.Errorf("sip: INFO: duration %s is longer than %s", d, maxInfoDigitDuration)
	}
	ms := max(d.Round(time.Millisecond).Milliseconds(), 1)

	select {
	case c.infoSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("sip: INFO %s: %w", c.d.callID, ctx.Err())
	case <-c.done:
		return ErrCallEnded
	}
	defer func() { <-c.infoSem }()
	select {
	case <-c.done:
		return ErrCallEnded
	default:
	}

	req := c.d.request(sip.INFO, 0)
	req.AppendHeader(sip.NewHeader("User-Agent", c.ua.cfg.UserAgent))
	ct := sip.ContentTypeHeader(contentDTMFRelay)
	req.AppendHeader(&ct)
	req.SetBody(fmt.Appendf(nil, "Signal=%c\r\nDuration=%d\r\n", sig, ms))

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-c.done:
			cancel(ErrCallEnded)
		case <-rctx.Done():
		}
	}()
	res, err := doRequest(rctx, c.st, req)
	if err != nil {
		if errors.Is(context.Cause(rctx), ErrCallEnded) {
			return ErrCallEnded
		}
		return fmt.Errorf("sip: INFO %s: %w", c.d.callID, err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("sip: INFO %s: %w", c.d.callID, &FinalError{Code: res.StatusCode, Reason: res.Reason})
	}
	c.log.Debug("sip INFO digit sent", zap.String("digit", string(sig)), zap.Int64("duration_ms", ms))
	return nil
}

// SetOnInfoDigit sets the function given the digits the PBX sends in INFO
// requests (application/dtmf-relay or application/dtmf), with their
// duration (DefaultInfoDigitDuration when the INFO gives none). It runs on
// the SIP goroutine after the 200 is sent, one digit at a time and in order;
// it must return quickly and must not call SetOnInfoDigit itself. Digits that
// came while no function was set (at most 32) are passed to f before
// SetOnInfoDigit returns; InviteRequest.OnInfoDigit sets one from the start.
// nil stops the delivery (digits are kept again).
func (c *Call) SetOnInfoDigit(f func(digit rune, d time.Duration)) {
	c.digitMu.Lock()
	defer c.digitMu.Unlock()
	c.mu.Lock()
	c.onDigit = f
	var pending []infoDigit
	if f != nil {
		pending, c.digits = c.digits, nil
	}
	c.mu.Unlock()
	for _, p := range pending {
		f(p.digit, p.d)
	}
}

// deliverDigit hands a received digit to OnInfoDigit, or keeps it.
func (c *Call) deliverDigit(digit rune, d time.Duration) {
	c.digitMu.Lock()
	defer c.digitMu.Unlock()
	c.deliverDigitLocked(digit, d)
}

// deliverDigitLocked is deliverDigit for a caller holding digitMu.
func (c *Call) deliverDigitLocked(digit rune, d time.Duration) {
	c.mu.Lock()
	f := c.onDigit
	kept := false
	if f == nil && len(c.digits) < maxPendingDigits {
		c.digits = append(c.digits, infoDigit{digit, d})
		kept = true
	}
	c.mu.Unlock()
	switch {
	case f != nil:
		f(digit, d)
	case !kept:
		c.log.Warn("sip INFO digit dropped: no OnInfoDigit set and the queue is full", zap.String("digit", string(digit)))
	}
}

// onInfo answers an in-dialog INFO: a DTMF digit gets 200 and goes to
// OnInfoDigit; anything else is answered as readInfoDigit says.
func (c *Call) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	digit, d, res, err := readInfoDigit(req)
	if res != nil {
		if err != nil {
			c.log.Debug("sip INFO not a digit", zap.Int("code", res.StatusCode), zap.Error(err))
		}
		respond(tx, res, c.log)
		return
	}
	// Take the delivery lock before the 200 goes out: the PBX's next INFO
	// (sent once it has our 200) then cannot overtake this digit.
	c.digitMu.Lock()
	defer c.digitMu.Unlock()
	respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
	c.log.Debug("sip INFO digit", zap.String("digit", string(digit)), zap.Duration("duration", d))
	c.deliverDigitLocked(digit, d)
}

// readInfoDigit reads the digit of a DTMF INFO with its duration
// (DefaultInfoDigitDuration when none is given). For an INFO that carries
// no digit it returns the response to send instead: 200 for an empty body
// (a keepalive) or a hook flash, 415 with Accept for another content type,
// 400 for a body that is not a digit (err says why).
func readInfoDigit(req *sip.Request) (rune, time.Duration, *sip.Response, error) {
	body := req.Body()
	if len(body) == 0 {
		return 0, 0, sip.NewResponseFromRequest(req, 200, "OK", nil), nil
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = mediaType(h.Value())
	}
	var (
		digit rune
		d     time.Duration
		err   error
	)
	switch ct {
	case contentDTMFRelay:
		digit, d, err = parseDTMFRelay(body)
	case contentDTMF:
		digit, err = parseSignal(strings.TrimSpace(string(body)))
	default:
		res := sip.NewResponseFromRequest(req, 415, "Unsupported Media Type", nil)
		res.AppendHeader(sip.NewHeader("Accept", contentDTMFRelay+", "+contentDTMF))
		return 0, 0, res, fmt.Errorf("content type %q", ct)
	}
	switch {
	case errors.Is(err, errHookFlash):
		return 0, 0, sip.NewResponseFromRequest(req, 200, "OK", nil), err
	case err != nil:
		return 0, 0, sip.NewResponseFromRequest(req, 400, "Bad Request", nil), err
	}
	if d == 0 {
		d = DefaultInfoDigitDuration
	}
	return digit, d, nil, nil
}

// parseDTMFRelay reads an application/dtmf-relay body: "key=value" lines,
// keys case-insensitive. Signal is required; a Duration that is missing or
// not within 1-60000 ms gives 0 (the caller's default).
func parseDTMFRelay(body []byte) (rune, time.Duration, error) {
	var (
		sig     string
		haveSig bool
		d       time.Duration
	)
	for line := range strings.SplitSeq(string(body), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case strings.EqualFold(k, "Signal"):
			sig, haveSig = v, true
		case strings.EqualFold(k, "Duration"):
			// The bound is checked on the milliseconds, before the product
			// can overflow (found by fuzzing: 9223372036855 ms was negative).
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 && ms <= int(maxInfoDigitDuration/time.Millisecond) {
				d = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if !haveSig {
		return 0, 0, errors.New("dtmf-relay: no Signal")
	}
	r, err := parseSignal(sig)
	return r, d, err
}

// parseSignal reads one signal: a digit (0-9 * # A-D, a-d) or its RFC 4733
// event code 0-15. Event 16 and "!" are a hook flash (errHookFlash).
func parseSignal(s string) (rune, error) {
	if len(s) == 1 {
		if s == "!" {
			return 0, errHookFlash
		}
		if r, ok := normDigit(rune(s[0])); ok {
			return r, nil
		}
	}
	if len(s) == 2 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' {
		switch n := int(s[0]-'0')*10 + int(s[1]-'0'); {
		case n <= 9:
			return rune('0' + n), nil
		case n == 10:
			return '*', nil
		case n == 11:
			return '#', nil
		case n <= 15:
			return rune('A' + n - 12), nil
		case n == 16:
			return 0, errHookFlash
		}
	}
	return 0, fmt.Errorf("dtmf: signal %q is not a digit", s)
}

// normDigit accepts 0-9 * # A-D (a-d as A-D).
func normDigit(r rune) (rune, bool) {
	switch {
	case r >= '0' && r <= '9', r == '*', r == '#', r >= 'A' && r <= 'D':
		return r, true
	case r >= 'a' && r <= 'd':
		return r - 'a' + 'A', true
	}
	return 0, false
}

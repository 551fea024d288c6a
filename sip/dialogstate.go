package sip

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// DialogState is what another UA needs to end a confirmed dialog
// (RFC 3261 §12): JSON-safe, header values as text. A gateway instance
// saves it for each of its calls (Call.DialogState) where its peers can
// read it, so that one of them can send the BYE (UA.ByeDialog) if the
// instance dies.
type DialogState struct {
	CallID    string   `json:"call_id"`
	From      string   `json:"from"`             // our From header value, with our tag
	To        string   `json:"to"`               // the peer's, with its tag
	Target    string   `json:"target"`           // remote target URI (the peer's Contact)
	Routes    []string `json:"routes,omitempty"` // route set in sending order
	CSeq      uint32   `json:"cseq"`             // the last local CSeq sent when saved
	Transport string   `json:"transport"`        // UDP, TCP, TLS
	Dest      string   `json:"dest,omitempty"`   // where requests go with an empty route set ("" = target)
}

// byeDialogSeqMargin is what UA.ByeDialog adds to DialogState.CSeq: the
// UAS takes any CSeq higher than the last one (RFC 3261 §12.2.2), and the
// margin covers the in-dialog requests (INFO digits, OPTIONS keepalives,
// re-INVITEs) the owner sent after it saved the state.
const byeDialogSeqMargin = 100

// DialogState is a snapshot of the call's dialog: what UA.ByeDialog, on
// this UA or another one, needs to end it. CSeq is the last one sent so
// far; a state saved again later has a higher one.
func (c *Call) DialogState() DialogState { return c.d.state() }

func (d *dialog) state() DialogState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DialogState{
		CallID:    d.callID,
		From:      d.local.Value(),
		To:        d.remote.Value(),
		Target:    d.target.String(),
		Routes:    slices.Clone(d.routes),
		CSeq:      d.localSeq,
		Transport: strings.ToUpper(d.transport),
		Dest:      d.dest,
	}
}

// ByeDialog ends a confirmed dialog this UA did not set up, from the state
// its owner saved (Call.DialogState): typically another gateway instance's
// call once that instance is gone. It sends a BYE with CSeq st.CSeq+100
// (see byeDialogSeqMargin), our User-Agent and, when why is set, a Reason
// header, over the UA's transport, which must be st.Transport; and waits
// for the final response, bounded by ctx (and by the transaction's Timer F).
// The BYE's Via is this UA's: the peer must answer where Via says
// (RFC 3261 §18.2.2, RFC 3581), not to the address the dialog's INVITE
// came from.
//
// A 2xx gives nil. A 481 gives an error wrapping a *FinalError with Code
// 481: the peer no longer knows the dialog (already ended), which callers
// may count as done. Any other final response gives an error wrapping a
// *FinalError; a bad state, an error naming the field.
func (u *UA) ByeDialog(ctx context.Context, st DialogState, why Reason) error {
	bye, err := byeFromState(st, u.cfg.UserAgent, why)
	if err != nil {
		return fmt.Errorf("sip: bye dialog: %w", err)
	}
	u.mu.Lock()
	s, state := u.st, u.state
	u.mu.Unlock()
	if state != 1 {
		return errors.New("sip: bye dialog: UA not started or closed")
	}
	if !strings.EqualFold(bye.Transport(), s.transport) {
		return fmt.Errorf("sip: bye dialog %s: transport %s: the UA has none (it runs %s)", st.CallID, bye.Transport(), sipTransport(s.transport))
	}
	log := u.log.With(zap.String("sip_call_id", st.CallID))
	res, err := sendBye(ctx, s, bye, st.CallID, nil)
	if err != nil {
		if res != nil && res.StatusCode == 481 {
			log.Info("sip BYE for a saved dialog: the peer no longer knows it")
			return fmt.Errorf("%w (the dialog had already ended)", err)
		}
		return err
	}
	log.Info("sip BYE for a saved dialog answered", zap.Int("code", res.StatusCode))
	return nil
}

// byeFromState checks st and builds the BYE ByeDialog sends.
func byeFromState(st DialogState, userAgent string, why Reason) (*sip.Request, error) {
	d, err := st.dialog()
	if err != nil {
		return nil, err
	}
	if st.CSeq > math.MaxUint32-byeDialogSeqMargin {
		return nil, fmt.Errorf("dialog state cseq %d: no room for %d more", st.CSeq, byeDialogSeqMargin)
	}
	return byeRequest(d, st.CSeq+byeDialogSeqMargin, userAgent, why), nil
}

// dialog rebuilds the dialog st describes, parsing its header values with
// sipgo's parser. A bad value gives an error naming the field, never a
// panic.
func (st DialogState) dialog() (d *dialog, err error) {
	field := "call_id"
	defer func() {
		if r := recover(); r != nil { // the parser's fault, not the caller's
			d, err = nil, fmt.Errorf("dialog state %s: unparsable (%v)", field, r)
		}
	}()
	bad := func(e error) error { return fmt.Errorf("dialog state %s: %w", field, e) }

	if st.CallID == "" {
		return nil, bad(errors.New("empty"))
	}
	if strings.ContainsFunc(st.CallID, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, bad(errors.New("holds a space or control character"))
	}

	field = "from"
	from, err := parseFromValue(st.From)
	if err != nil {
		return nil, bad(err)
	}
	field = "to"
	to, err := parseToValue(st.To)
	if err != nil {
		return nil, bad(err)
	}

	field = "target"
	if err := checkText(st.Target); err != nil {
		return nil, bad(err)
	}
	var target sip.Uri
	if err := sip.ParseUri(st.Target, &target); err != nil {
		return nil, bad(err)
	}
	if (target.Scheme != "sip" && target.Scheme != "sips") || target.Host == "" || target.Wildcard {
		return nil, bad(fmt.Errorf("%q is no SIP URI with a host", st.Target))
	}

	var routes []string
	for i, r := range st.Routes {
		field = "routes[" + strconv.Itoa(i) + "]"
		if err := checkText(r); err != nil {
			return nil, bad(err)
		}
		hs, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte("Route: "+r))
		if err != nil {
			return nil, bad(err)
		}
		if len(hs) == 0 {
			return nil, bad(errors.New("empty"))
		}
		for _, h := range hs { // sipgo takes "<sip:" without a word
			rh, ok := h.(*sip.RouteHeader)
			if !ok || (rh.Address.Scheme != "sip" && rh.Address.Scheme != "sips") || rh.Address.Host == "" {
				return nil, bad(fmt.Errorf("%q is no SIP URI with a host", r))
			}
		}
		routes = append(routes, r) // sent as saved, as the owner would
	}

	field = "transport"
	tr := strings.ToUpper(st.Transport)
	switch tr {
	case "UDP", "TCP", "TLS":
	default:
		return nil, bad(fmt.Errorf("%q is none of UDP, TCP, TLS", st.Transport))
	}

	field = "dest"
	if st.Dest != "" {
		host, port, err := net.SplitHostPort(st.Dest)
		if err != nil {
			return nil, bad(err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, bad(fmt.Errorf("%q: bad port", st.Dest))
		}
		if host == "" || strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
			return nil, bad(fmt.Errorf("%q: bad host", st.Dest))
		}
	}

	return &dialog{
		callID:    st.CallID,
		local:     *from,
		remote:    *to,
		target:    target,
		routes:    routes,
		localSeq:  st.CSeq,
		transport: tr,
		dest:      st.Dest,
	}, nil
}

// parseFromValue parses a From header value that must carry a tag.
func parseFromValue(v string) (*sip.FromHeader, error) {
	if err := checkText(v); err != nil {
		return nil, err
	}
	h := &sip.FromHeader{}
	dn, err := sip.ParseAddressValue(v, &h.Address, &h.Params)
	if err != nil {
		return nil, err
	}
	h.DisplayName = dn
	return h, checkAddress(h.Address, h.Params)
}

// parseToValue parses a To header value that must carry a tag.
func parseToValue(v string) (*sip.ToHeader, error) {
	if err := checkText(v); err != nil {
		return nil, err
	}
	h := &sip.ToHeader{}
	dn, err := sip.ParseAddressValue(v, &h.Address, &h.Params)
	if err != nil {
		return nil, err
	}
	h.DisplayName = dn
	return h, checkAddress(h.Address, h.Params)
}

func checkAddress(u sip.Uri, params sip.HeaderParams) error {
	if u.Wildcard {
		return errors.New("wildcard URI")
	}
	if u.Scheme == "" {
		return errors.New("no URI scheme")
	}
	if tag, _ := params.Get("tag"); tag == "" {
		return errors.New("no tag (a confirmed dialog has both)")
	}
	return nil
}

// checkText refuses an empty value and control characters (CR and LF
// would let a saved value add headers to the BYE).
func checkText(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("empty")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return errors.New("holds a control character")
	}
	return nil
}

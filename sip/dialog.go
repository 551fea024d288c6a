package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// dialog is the state of one dialog (RFC 3261 §12), for either role: the
// UA's outgoing calls (UAC side, uacDialog), the calls trunks place to it and
// the echo server's (UAS side, uasDialog). Once built, requests are made the
// same way whichever side set it up.
type dialog struct {
	mu        sync.Mutex
	callID    string
	local     sip.FromHeader // our URI and tag: From of the requests we send
	remote    sip.ToHeader   // peer's URI and tag: To of the requests we send
	target    sip.Uri        // remote target: the peer's Contact (§12.1.1, §12.1.2)
	routes    []string       // route set, already in sending order
	localSeq  uint32
	remoteSeq uint32
	transport string // "UDP", "TCP" or "TLS"
	// dest is where requests go when the route set is empty ("" = the
	// target). The UA sets it to the trunk address for its outgoing calls
	// so that in-dialog requests follow the INVITE through the trunk
	// (outbound proxy style); a dialog a trunk's INVITE set up leaves it
	// empty. With a route set, requests go to its first entry (sipgo's
	// Destination reads the first Route, RFC 3261 §12.2.1.1 loose routing).
	dest    string
	contact *sip.ContactHeader
}

// uacDialog builds the dialog state from our INVITE and its 2xx (§12.1.2).
func uacDialog(inv *sip.Request, res *sip.Response, dest string, contact *sip.ContactHeader) (*dialog, error) {
	from, to, cid, cseq := inv.From(), res.To(), inv.CallID(), inv.CSeq()
	if from == nil || to == nil || cid == nil || cseq == nil {
		return nil, errors.New("sip: response lacks dialog headers")
	}
	if tag, _ := to.Params.Get("tag"); tag == "" {
		return nil, errors.New("sip: 2xx without To tag")
	}
	d := &dialog{
		callID:    cid.Value(),
		local:     *cloneFrom(from),
		remote:    *cloneTo(to),
		target:    inv.Recipient,
		localSeq:  cseq.SeqNo,
		transport: inv.Transport(),
		dest:      dest,
		contact:   contact,
	}
	if c := res.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
	// The UAC's route set is the 2xx's Record-Route in reverse order (§12.1.2).
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		d.routes = append(d.routes, rr[i].Value())
	}
	return d, nil
}

// uasDialog builds the dialog state from a received INVITE and the tag we
// answer with (§12.1.1).
func uasDialog(inv *sip.Request, localTag string, contact *sip.ContactHeader) (*dialog, error) {
	from, to, cid, cseq := inv.From(), inv.To(), inv.CallID(), inv.CSeq()
	if from == nil || to == nil || cid == nil || cseq == nil {
		return nil, errors.New("sip: INVITE lacks dialog headers")
	}
	if tag, _ := from.Params.Get("tag"); tag == "" {
		return nil, errors.New("sip: INVITE without From tag")
	}
	local := sip.FromHeader{DisplayName: to.DisplayName, Address: *to.Address.Clone(), Params: to.Params.Clone()}
	local.Params.Add("tag", localTag)
	remote := sip.ToHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()}
	d := &dialog{
		callID:    cid.Value(),
		local:     local,
		remote:    remote,
		target:    from.Address,
		localSeq:  randUint32() & 0x7fffffff,
		remoteSeq: cseq.SeqNo,
		transport: inv.Transport(),
		contact:   contact,
	}
	if c := inv.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
	// The UAS's route set is the INVITE's Record-Route in order (§12.1.1).
	for _, h := range inv.GetHeaders("Record-Route") {
		d.routes = append(d.routes, h.Value())
	}
	return d, nil
}

// localTag is our tag in the dialog.
func (d *dialog) localTag() string {
	t, _ := d.local.Params.Get("tag")
	return t
}

// remoteTag is the peer's tag in the dialog.
func (d *dialog) remoteTag() string {
	t, _ := d.remote.Params.Get("tag")
	return t
}

// request builds an in-dialog request (§12.2.1.1). seq = 0 takes the next
// local CSeq; ACK passes the INVITE's number.
func (d *dialog) request(method sip.RequestMethod, seq uint32) *sip.Request {
	d.mu.Lock()
	if seq == 0 {
		d.localSeq++
		seq = d.localSeq
	}
	target := *d.target.Clone()
	d.mu.Unlock()

	req := sip.NewRequest(method, target)
	for _, r := range d.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	from := d.local
	to := d.remote
	req.AppendHeader(cloneFrom(&from))
	req.AppendHeader(cloneTo(&to))
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if d.contact != nil && method != sip.BYE {
		req.AppendHeader(d.contact.Clone())
	}
	req.SetTransport(d.transport)
	if len(d.routes) == 0 && d.dest != "" {
		req.SetDestination(d.dest)
	}
	req.SetBody(nil)
	return req
}

// checkRemoteSeq applies §12.2.2: a request with a CSeq lower than the last
// one is out of order. ACK and CANCEL reuse their INVITE's number and are not
// checked here.
func (d *dialog) checkRemoteSeq(req *sip.Request) bool {
	cs := req.CSeq()
	if cs == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.remoteSeq != 0 && cs.SeqNo < d.remoteSeq {
		return false
	}
	d.remoteSeq = cs.SeqNo
	return true
}

// matches reports whether an in-dialog request belongs to this dialog: its
// To tag is ours and its From tag the peer's (§12.2.2).
func (d *dialog) matches(req *sip.Request) bool {
	from, to := req.From(), req.To()
	if from == nil || to == nil {
		return false
	}
	ft, _ := from.Params.Get("tag")
	tt, _ := to.Params.Get("tag")
	return tt == d.localTag() && ft == d.remoteTag()
}

// dialogKey indexes dialogs by Call-ID and our tag.
func dialogKey(callID, localTag string) string { return callID + "\x00" + localTag }

// requestKey is the dialogKey of an incoming in-dialog request ("" if it has
// no To tag, i.e. is outside any dialog).
func requestKey(req *sip.Request) string {
	cid, to := req.CallID(), req.To()
	if cid == nil || to == nil {
		return ""
	}
	tag, _ := to.Params.Get("tag")
	if tag == "" {
		return ""
	}
	return dialogKey(cid.Value(), tag)
}

// respond2xxUntilAck sends a 2xx to an INVITE and waits for its ACK (see
// awaitAck). sent (if not nil) runs once the first copy is sent, before the
// wait.
func respond2xxUntilAck(tx sip.ServerTransaction, res *sip.Response, reliable bool, acked, stop <-chan struct{}, sent func()) (*sip.Request, error) {
	if err := tx.Respond(res); err != nil {
		return nil, fmt.Errorf("sip: send %d: %w", res.StatusCode, err)
	}
	if sent != nil {
		sent()
	}
	return awaitAck(context.Background(), tx, res, reliable, acked, stop)
}

// awaitAck waits for the ACK of a 2xx already sent on tx and, on unreliable
// transports, retransmits it from T1 doubling to T2 until acked is closed or
// 64*T1 (Timer H) pass (RFC 3261 §13.3.1.4; the TU's job per RFC 6026).
// stop and ctx abort the wait. An ACK that reused the INVITE's branch comes
// through the transaction and is returned; one that came as its own request
// (acked closed) gives nil, the caller having kept it.
func awaitAck(ctx context.Context, tx sip.ServerTransaction, res *sip.Response, reliable bool, acked, stop <-chan struct{}) (*sip.Request, error) {
	limit := 64 * sip.T1 // Timer H
	if ackWaitOverride > 0 {
		limit = ackWaitOverride
	}
	giveUp := time.NewTimer(limit)
	defer giveUp.Stop()
	interval := sip.T1
	resend := time.NewTimer(interval)
	defer resend.Stop()
	if reliable {
		resend.Stop()
	}
	for {
		select {
		case <-acked:
			return nil, nil
		case ack := <-tx.Acks(): // an ACK that reused the INVITE's branch
			return ack, nil
		case <-stop:
			return nil, errors.New("sip: stopped while waiting for ACK")
		case <-ctx.Done():
			return nil, fmt.Errorf("sip: waiting for ACK: %w", ctx.Err())
		case <-giveUp.C:
			return nil, errACKTimeout
		case <-resend.C:
			if err := tx.Respond(res); err != nil {
				return nil, fmt.Errorf("sip: resend %d: %w", res.StatusCode, err)
			}
			interval = min(2*interval, sip.T2)
			resend.Reset(interval)
		}
	}
}

// ackWaitOverride, if set, replaces 64*T1 in awaitAck (tests only: set it
// before the UA starts).
var ackWaitOverride time.Duration

// errACKTimeout: no ACK came for a 2xx within 64*T1.
var errACKTimeout = errors.New("sip: no ACK for 2xx within 64*T1")

func cloneFrom(h *sip.FromHeader) *sip.FromHeader {
	return &sip.FromHeader{DisplayName: h.DisplayName, Address: *h.Address.Clone(), Params: h.Params.Clone()}
}

func cloneTo(h *sip.ToHeader) *sip.ToHeader {
	return &sip.ToHeader{DisplayName: h.DisplayName, Address: *h.Address.Clone(), Params: h.Params.Clone()}
}

// randHex returns n random bytes as hex (tags, Call-IDs, session ids).
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func randUint64() uint64 {
	return uint64(randUint32())<<32 | uint64(randUint32())
}

// quoteDisplayName makes s safe inside a quoted-string display name
// (RFC 3261 §25.1): control characters are dropped, '"' and '\' escaped.
func quoteDisplayName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			continue
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
		if b.Len() > 256 {
			break
		}
	}
	return b.String()
}

// escapeUser percent-encodes what may not appear in a SIP URI user part
// (RFC 3261 §25.1: unreserved / escaped / user-unreserved).
func escapeUser(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

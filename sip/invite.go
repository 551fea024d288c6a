package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// MaxInviteDuration caps how long Invite waits for a final response,
// whatever the caller's context says.
var MaxInviteDuration = 3 * time.Minute

// maxInviteResponses bounds the responses one INVITE may get (a PBX that
// loops on 1xx).
const maxInviteResponses = 200

// Header is one extra header for the INVITE.
type Header struct{ Name, Value string }

// InviteRequest describes one outgoing call.
type InviteRequest struct {
	Trunk       *Trunk
	To          string                        // destination URI, e.g. "sip:agents@127.0.0.1:5070"; a bare user or a URI without host goes to the trunk
	FromUser    string                        // caller number or BSUID
	DisplayName string                        // WhatsApp profile name (quoted and escaped here)
	Headers     []Header                      // extra headers, e.g. x-wa-meta-wacid
	LogRef      string                        // call id for logs
	OnProgress  func(code int, reason string) // 1xx responses; may be nil
	// Codecs, if set, is the offer's codec list, in its order of
	// preference, in place of the trunk's (names as Trunk.Codecs): the
	// gateway puts the G.711 codec WhatsApp offered first. They are also
	// what a later offer from the PBX may switch to.
	Codecs []string
	// OnInfoDigit and OnMediaChange, if set, are the call's from the moment
	// it is established (see Call.SetOnInfoDigit, Call.SetOnMediaChange), so
	// that nothing the PBX sends right after its 2xx is missed.
	OnInfoDigit   func(digit rune, d time.Duration)
	OnMediaChange func(MediaChange)
	// OnEarlyMedia, if set, is told of the first provisional response
	// whose SDP we can use (183 Session Progress), on the goroutine that
	// called Invite; from then on the PBX's RTP is the caller's to read.
	// Unset, what the PBX sends before its 2xx is dropped at the socket,
	// never played late.
	OnEarlyMedia func(*EarlyMedia)
}

// FinalError is a non-2xx final response to the INVITE.
type FinalError struct {
	Code   int
	Reason string
	// Why is the response's Reason header (RFC 3326), e.g. Q.850 cause 17
	// for a 486; zero if none.
	Why Reason
}

func (e *FinalError) Error() string { return fmt.Sprintf("sip: %d %s", e.Code, e.Reason) }

// Invite sends an INVITE through the trunk with an SDP offer of the trunk's
// codecs (or the request's) plus telephone-event/8000, answers one 401/407 challenge with digest
// credentials, reports provisional responses, ACKs the 2xx and returns the
// established call. A non-2xx final response gives *FinalError. If ctx ends
// before a final response, a CANCEL is sent (RFC 3261 §9.1) and the error
// wraps ctx.Err().
func (u *UA) Invite(ctx context.Context, r InviteRequest) (*Call, error) {
	if r.Trunk == nil {
		return nil, errors.New("sip: invite: no trunk")
	}
	if err := r.Trunk.Validate(); err != nil {
		return nil, fmt.Errorf("sip: invite: %w", err)
	}
	u.mu.Lock()
	st, state := u.st, u.state
	u.mu.Unlock()
	if state != 1 {
		return nil, errors.New("sip: invite: UA not started or closed")
	}
	log := u.log.With(zap.String("call_id", r.LogRef), zap.String("trunk", r.Trunk.Name))

	recipient, err := inviteURI(r.To, r.Trunk)
	if err != nil {
		return nil, fmt.Errorf("sip: invite: %w", err)
	}
	for _, h := range r.Headers {
		if err := checkHeader(h); err != nil {
			return nil, fmt.Errorf("sip: invite: %w", err)
		}
	}

	rtp, err := ListenRTP(u.rtpIP, u.cfg.RTPPortMin, u.cfg.RTPPortMax)
	if err != nil {
		return nil, fmt.Errorf("sip: invite: %w", err)
	}
	rtp.onStranger = &u.strangerRTP
	rtp.track(&u.rtpOpen)
	rtp.discardEarly() // until the answer, or early media we use
	keepRTP := false
	defer func() {
		if !keepRTP {
			rtp.Close()
		}
	}()

	offered := r.Trunk.codecs()
	if len(r.Codecs) > 0 {
		if offered, err = codecsNamed(r.Codecs); err != nil {
			return nil, fmt.Errorf("sip: invite: %w", err)
		}
	}
	sdpID := randUint64() >> 1
	offer := BuildSDP(SDPParams{
		SessionID: sdpID, Version: 1, Host: st.host, Port: rtp.Port(),
		Codecs: offered, DTMFPayloadType: DefaultDTMFPayloadType,
	})

	req := u.buildInvite(st, r, recipient, offer)
	callID := req.CallID().Value()
	log = log.With(zap.String("sip_call_id", callID))
	u.trace.ref(callID, r.LogRef)
	defer func() {
		if !keepRTP { // no call: the trace forgets it (else Call.end does)
			u.trace.unref(callID)
		}
	}()

	overall, cancelOverall := context.WithTimeout(ctx, MaxInviteDuration)
	defer cancelOverall()
	tx, err := st.client.TransactionRequest(overall, req)
	if err != nil {
		return nil, fmt.Errorf("sip: invite %s via %s: send: %w", recipient.String(), r.Trunk.Address, err)
	}
	log.Debug("sip INVITE sent", zap.String("to", recipient.String()))

	authTried := false
	provisional := false
	var early *EarlyMedia
	for i := 0; i < maxInviteResponses; i++ {
		var res *sip.Response
		select {
		case res = <-tx.Responses():
		case <-tx.Done():
			err := tx.Err()
			if err == nil {
				err = errors.New("transaction ended")
			}
			return nil, fmt.Errorf("sip: invite %s via %s: no final response: %w", recipient.String(), r.Trunk.Address, err)
		case <-overall.Done():
			u.abandonInvite(st, tx, req, provisional, cancelReason(context.Cause(ctx)), log)
			cause := ctx.Err()
			if cause == nil {
				cause = fmt.Errorf("no final response within %s: %w", MaxInviteDuration, context.DeadlineExceeded)
			} else if why := context.Cause(ctx); why != cause {
				cause = fmt.Errorf("%w (%w)", cause, why) // both: errors.Is(err, context.Canceled) and the CancelCause
			}
			return nil, fmt.Errorf("sip: invite %s: cancelled: %w", recipient.String(), cause)
		case <-u.ctx.Done():
			u.abandonInvite(st, tx, req, provisional, shutdownReason, log)
			return nil, errors.New("sip: invite: UA closed")
		}

		switch {
		case res.IsProvisional():
			provisional = true
			if r.OnProgress != nil {
				r.OnProgress(res.StatusCode, res.Reason)
			}
			if early == nil && r.OnEarlyMedia != nil && hasSDP(res) {
				// The first usable early answer is the one taken; later
				// ones (another fork, RFC 3960 §3) are not followed.
				m, err := earlyMedia(res, rtp, offered)
				if err != nil {
					log.Info("sip early media not usable", zap.Int("code", res.StatusCode), zap.Error(err))
					continue
				}
				n := rtp.stopDiscard()
				early = m
				log.Info("sip early media", zap.Int("code", res.StatusCode), zap.String("codec", m.codec.Name),
					zap.Stringer("rtp_remote", m.RemoteRTPAddr()), zap.Uint64("dropped_before", n))
				r.OnEarlyMedia(m)
			}
		case res.IsSuccess():
			if early == nil {
				if n := rtp.stopDiscard(); n > 0 {
					log.Info("sip media before the answer dropped", zap.Uint64("packets", n))
				}
			}
			c, err := u.accept(st, tx, req, res, rtp, offered, sdpID, r, log)
			if err != nil {
				return nil, err
			}
			if early != nil {
				early.call.Store(c)
			}
			keepRTP = true
			return c, nil
		case isChallenge(res) && r.Trunk.hasCredentials() && !authTried:
			// One answer to the challenge (RFC 3261 §22.2): a second
			// challenge means the credentials are wrong.
			authTried = true
			provisional = false
			tx.Terminate()
			tx, err = answerChallenge(overall, st, req, res, r.Trunk)
			if err != nil {
				return nil, fmt.Errorf("sip: invite %s: digest auth: %w", recipient.String(), err)
			}
			log.Debug("sip INVITE re-sent with credentials", zap.Int("challenge", res.StatusCode))
		default:
			// The transaction ACKs this response itself and stays until
			// Timer D to ACK its retransmissions (RFC 3261 §17.1.1.2).
			return nil, &FinalError{Code: res.StatusCode, Reason: res.Reason, Why: peerReason(res)}
		}
	}
	u.abandonInvite(st, tx, req, provisional, Reason{}, log)
	return nil, fmt.Errorf("sip: invite %s: more than %d responses", recipient.String(), maxInviteResponses)
}

// buildInvite writes the INVITE (RFC 3261 §8.1.1). Via is added by sipgo.
func (u *UA) buildInvite(st *stack, r InviteRequest, recipient sip.Uri, offer []byte) *sip.Request {
	req := sip.NewRequest(sip.INVITE, recipient)
	user := r.FromUser
	if user == "" {
		user = "anonymous"
	}
	from := &sip.FromHeader{
		DisplayName: quoteDisplayName(r.DisplayName),
		Address:     sip.Uri{Scheme: "sip", User: escapeUser(user), Host: r.Trunk.fromDomain()},
		Params:      sip.NewParams(),
	}
	from.Params.Add("tag", randHex(8))
	to := &sip.ToHeader{Address: sip.Uri{Scheme: recipient.Scheme, User: recipient.User, Host: recipient.Host, Port: recipient.Port}}
	cid := sip.CallIDHeader(randHex(16))
	mf := sip.MaxForwardsHeader(70)
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.AppendHeader(&mf)
	req.AppendHeader(st.contact.Clone())
	req.AppendHeader(sip.NewHeader("User-Agent", u.cfg.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowHeader))
	for _, h := range r.Headers {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(sipTransport(r.Trunk.transport()))
	// The trunk address is the next hop whatever the Request-URI says
	// (an outbound proxy without a Route header).
	req.SetDestination(r.Trunk.Address)
	return req
}

// accept turns a 2xx into a call: dialog state, ACK (RFC 3261 §13.2.2.4),
// media. An answer we cannot use is still ACKed, then ended with BYE.
func (u *UA) accept(st *stack, tx sip.ClientTransaction, req *sip.Request, res *sip.Response, rtp *RTPConn, offered []Codec, sdpID uint64, r InviteRequest, log *zap.Logger) (*Call, error) {
	d, err := uacDialog(req, res, r.Trunk.Address, st.contact.Clone())
	if err != nil {
		tx.Terminate()
		return nil, fmt.Errorf("sip: invite: 2xx: %w", err)
	}
	c := u.newCall(st, d, rtp, offered, sdpID, u.dialogPeers(r.Trunk, res.Source()), log)
	c.inviteTx = tx
	c.onDigit, c.onMedia = r.OnInfoDigit, r.OnMediaChange
	info, perr := ParseSDP(res.Body())
	var (
		codec Codec
		dir   string
	)
	if perr == nil {
		var ok bool
		if codec, ok = NegotiateCodec(offered, info.Codecs); !ok {
			perr = errors.New("sdp: answer holds none of the offered codecs")
		}
	}
	if perr == nil {
		c.codec = codec
		c.dtmfPT = info.DTMFPayloadType
		dir = remoteDirection(info)
		c.remoteDir = dir
		c.remoteSDP = info.Addr
		c.sendOK.Store(peerReceives(dir))
		rtp.SetPayloadTypes(streamPTs(codec, info.DTMFPayloadType)...)
		rtp.SetRemote(info.Addr)
	}
	if !u.addCall(c) {
		c.sendAck()
		tx.Terminate()
		return nil, errors.New("sip: invite: UA closed")
	}
	c.sendAck()
	if perr != nil {
		hctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
		_ = c.hangup(hctx, "bad_answer", Reason{Protocol: "SIP", Cause: 488, Text: "Not Acceptable Here"})
		cancel()
		return nil, fmt.Errorf("sip: invite: unusable answer from PBX: %w", perr)
	}
	if iv := u.cfg.KeepaliveInterval; iv > 0 {
		c.startKeepalive(iv)
	}
	// The call is live: a re-INVITE may already be changing it, so log what
	// the answer said, not the call's fields.
	log.Info("sip call established", zap.String("codec", codec.Name), zap.Uint8("pt", codec.PayloadType),
		zap.Uint8("dtmf_pt", info.DTMFPayloadType), zap.String("pbx_direction", dir), zap.Stringer("rtp_remote", info.Addr))
	return c, nil
}

// abandonInvite gives up an INVITE still without final response: CANCEL once
// a provisional response has come (RFC 3261 §9.1 forbids it before), then
// absorb the 487, or ACK and BYE a 2xx that crossed the CANCEL. It runs in the
// background, bounded by Timer B, so the caller returns at once.
func (u *UA) abandonInvite(st *stack, tx sip.ClientTransaction, req *sip.Request, provisional bool, why Reason, log *zap.Logger) {
	started := u.goBackground(func() {
		defer tx.Terminate()
		limit := time.NewTimer(sip.Timer_B)
		defer limit.Stop()
		var ctx context.Context = u.ctx
		var cancelTx sip.ClientTransaction
		var cancelRes <-chan *sip.Response
		sendCancel := func() {
			cancelTx = u.sendCancel(ctx, st, req, why, log)
			if cancelTx != nil {
				cancelRes = cancelTx.Responses()
			}
		}
		defer func() {
			if cancelTx != nil {
				cancelTx.Terminate()
			}
		}()
		if provisional {
			sendCancel()
		}
		for i := 0; i < maxInviteResponses; i++ {
			select {
			case res := <-tx.Responses():
				switch {
				case res.IsProvisional():
					if cancelTx == nil {
						sendCancel()
					}
					continue
				case res.IsSuccess():
					// The PBX answered as we cancelled: confirm and end it.
					log.Info("sip 2xx crossed our CANCEL; sending ACK and BYE")
					u.ackAndBye(st, req, res, log)
				}
				return // a final response: sipgo ACKs a non-2xx itself
			case res := <-cancelRes:
				if res != nil && !res.IsProvisional() {
					cancelRes = nil
				}
			case <-tx.Done():
				return
			case <-limit.C:
				log.Debug("sip no final response after CANCEL")
				return
			case <-ctx.Done():
				return
			}
		}
	})
	if !started {
		tx.Terminate()
	}
}

// sendCancel sends a CANCEL matching the INVITE: same Request-URI, Call-ID,
// From, To, CSeq number and top Via (RFC 3261 §9.1), with why as its Reason
// header unless it is zero (RFC 3326).
func (u *UA) sendCancel(ctx context.Context, st *stack, inv *sip.Request, why Reason, log *zap.Logger) sip.ClientTransaction {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	if v := inv.Via(); v != nil {
		c.AppendHeader(v.Clone())
	}
	for _, name := range []string{"Route"} {
		for _, h := range inv.GetHeaders(name) {
			c.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
		}
	}
	c.AppendHeader(cloneFrom(inv.From()))
	c.AppendHeader(cloneTo(inv.To()))
	cid := sip.CallIDHeader(inv.CallID().Value())
	c.AppendHeader(&cid)
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(sip.NewHeader("User-Agent", u.cfg.UserAgent))
	if v := why.String(); v != "" {
		c.AppendHeader(sip.NewHeader("Reason", v))
	}
	c.SetBody(nil)
	c.SetTransport(inv.Transport())
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	tx, err := st.client.TransactionRequest(ctx, c)
	if err != nil {
		log.Warn("sip CANCEL failed", zap.Error(err))
		return nil
	}
	log.Debug("sip CANCEL sent", zap.String("reason", why.String()))
	return tx
}

// ackAndBye confirms a 2xx nobody wants any more and ends the dialog.
func (u *UA) ackAndBye(st *stack, inv *sip.Request, res *sip.Response, log *zap.Logger) {
	d, err := uacDialog(inv, res, inv.Destination(), st.contact.Clone())
	if err != nil {
		log.Warn("sip cannot end late 2xx", zap.Error(err))
		return
	}
	ack := d.request(sip.ACK, inv.CSeq().SeqNo)
	if err := st.client.WriteRequest(ack); err != nil {
		log.Warn("sip ACK failed", zap.Error(err))
	}
	ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
	defer cancel()
	if _, err := doRequest(ctx, st, d.request(sip.BYE, 0)); err != nil {
		log.Warn("sip BYE after CANCEL race failed", zap.Error(err))
	}
}

// isChallenge says whether res asks for digest credentials: 401 from the
// PBX (WWW-Authenticate) or 407 from a proxy (Proxy-Authenticate).
func isChallenge(res *sip.Response) bool {
	return res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired
}

// answerChallenge re-sends req with the trunk's digest credentials in answer
// to the challenge res (RFC 3261 §22.2): a new transaction with a new Via
// branch and the CSeq one higher, the same Call-ID and From tag. Callers
// answer one challenge per request; a second one means the credentials are
// wrong. req is changed in place (Authorization or Proxy-Authorization,
// CSeq, Via). The password is never in the error.
func answerChallenge(ctx context.Context, st *stack, req *sip.Request, res *sip.Response, t *Trunk) (sip.ClientTransaction, error) {
	return st.client.TransactionDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: t.Username, Password: t.Password})
}

// doRequest sends a non-INVITE request and waits for its final response,
// bounded by ctx and Timer F.
func doRequest(ctx context.Context, st *stack, req *sip.Request) (*sip.Response, error) {
	tx, err := st.client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("sip: %s: send: %w", req.Method, err)
	}
	return awaitFinal(ctx, tx, req)
}

// awaitFinal waits for the final response of the non-INVITE transaction tx
// (of req), bounded by ctx and Timer F, and then terminates it.
func awaitFinal(ctx context.Context, tx sip.ClientTransaction, req *sip.Request) (*sip.Response, error) {
	defer tx.Terminate()
	limit := time.NewTimer(sip.Timer_F)
	defer limit.Stop()
	for i := 0; i < 100; i++ {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			err := tx.Err()
			if err == nil {
				err = errors.New("transaction ended")
			}
			return nil, fmt.Errorf("sip: %s: %w", req.Method, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("sip: %s: %w", req.Method, ctx.Err())
		case <-limit.C:
			return nil, fmt.Errorf("sip: %s: no final response within Timer F", req.Method)
		}
	}
	return nil, fmt.Errorf("sip: %s: too many provisional responses", req.Method)
}

// inviteURI turns InviteRequest.To into the Request-URI. A bare user
// ("agents") or a URI without host goes to the trunk's address.
func inviteURI(to string, t *Trunk) (sip.Uri, error) {
	to = strings.TrimSpace(to)
	to = strings.TrimSuffix(strings.TrimPrefix(to, "<"), ">")
	if to == "" {
		return sip.Uri{}, errors.New("destination: empty")
	}
	if strings.ContainsAny(to, " \t\r\n<>\"") {
		return sip.Uri{}, fmt.Errorf("destination %q: not a SIP URI", to)
	}
	scheme, rest := "sip", to
	if i := strings.IndexByte(to, ':'); i > 0 && (strings.EqualFold(to[:i], "sip") || strings.EqualFold(to[:i], "sips")) {
		scheme, rest = strings.ToLower(to[:i]), to[i+1:]
	}
	if rest == "" {
		return sip.Uri{}, fmt.Errorf("destination %q: no user", to)
	}
	if !strings.Contains(rest, "@") {
		// "agents" or "sip:agents": a user on the trunk's PBX.
		user, params, _ := strings.Cut(rest, ";")
		to = scheme + ":" + escapeUser(user) + "@" + t.Address
		if params != "" {
			to += ";" + params
		}
	}
	var u sip.Uri
	if err := sip.ParseUri(to, &u); err != nil {
		return sip.Uri{}, fmt.Errorf("destination %q: %w", to, err)
	}
	if u.Host == "" {
		host, port, err := net.SplitHostPort(t.Address)
		if err != nil {
			return sip.Uri{}, fmt.Errorf("trunk address %q: %w", t.Address, err)
		}
		u.Host = host
		u.Port, _ = strconv.Atoi(port)
	}
	if u.Scheme == "" {
		u.Scheme = "sip"
	}
	return u, nil
}

// checkHeader refuses header names that are not tokens, values that could
// inject lines, and headers the UA writes itself.
func checkHeader(h Header) error {
	if !isToken(h.Name) {
		return fmt.Errorf("header name %q: not a token", h.Name)
	}
	if strings.ContainsAny(h.Value, "\r\n\x00") {
		return fmt.Errorf("header %s: value holds a line break", h.Name)
	}
	switch strings.ToLower(h.Name) {
	case "via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-length", "content-type", "route", "record-route", "authorization", "proxy-authorization", "v", "f", "t", "i", "m", "l", "c":
		return fmt.Errorf("header %s: set by the UA itself", h.Name)
	}
	return nil
}

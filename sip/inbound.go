package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Inbound calls: a PBX agent dials a WhatsApp user through the gateway
// (Dial(PJSIP/+14085551234@wagateway)). The UA is then the UAS of the
// INVITE; once answered the call is a Call like the ones it places.

// DefaultMaxPendingInvites is the default of UAConfig.MaxPendingInvites.
const DefaultMaxPendingInvites = 200

// MaxRingDuration bounds how long an inbound INVITE waits for Answer, Reject
// or Close: then the PBX gets 480 with Q.850 cause 19 (no answer).
var MaxRingDuration = 3 * time.Minute

const (
	// retryAfterBusy is the Retry-After (seconds) of our 503 to an INVITE
	// over MaxPendingInvites (RFC 3261 §20.33).
	retryAfterBusy = "5"
	// provisionalRefresh: a UAS that has not answered repeats its
	// provisional response every minute so that proxies do not cancel the
	// INVITE (RFC 3261 §13.3.1.1).
	provisionalRefresh = time.Minute
	// maxWarningText bounds the text of a Warning header we send.
	maxWarningText = 160
	// maxUserLen bounds the Request-URI user taken.
	maxUserLen = 256
)

// ErrCancelled is returned by Answer when the PBX cancelled the INVITE
// (CANCEL, or BYE on the early dialog) first.
var ErrCancelled = errors.New("sip: the PBX cancelled the call")

// EndNoAck is the EndReason of an answered inbound call whose 200 the PBX
// never acknowledged (RFC 3261 §13.3.1.4: the UAS ends it with BYE).
const EndNoAck = "no_ack"

type inboundState int

const (
	inboundPending   inboundState = iota // no final response yet
	inboundAnswering                     // Answer is running
	inboundAnswered                      // Answer returned the call
	inboundEnded                         // refused, cancelled, closed, or the answer failed
)

// InboundCall is an INVITE a trunk sent to the gateway, not yet answered or
// refused: the UAS side of the call (RFC 3261 §13.3). The PBX's SDP offer
// has been taken when OnInvite gets it: the codec is chosen and the RTP
// socket bound, sending to the offer's address (so ReadPacket and
// WritePacket work at once; see WritePacket). The gateway then calls
// Ringing (and Progress) while it reaches the WhatsApp user, and ends it
// with Answer, Reject or Close; MaxRingDuration bounds the wait.
//
// An INVITE without SDP (RFC 3261 §13.2.1) is taken too: then Codec is the
// zero Codec and RemoteRTPAddr nil until answered, our 200 carries the
// offer (the trunk's codecs and telephone-event) and the ACK the answer,
// which Answer waits for; the answered Call has the codec.
type InboundCall struct {
	ua       *UA
	st       *stack
	trunk    *Trunk
	req      *sip.Request
	tx       sip.ServerTransaction
	d        *dialog
	key      string
	cseq     uint32
	log      *zap.Logger
	rtp      *RTPConn
	user     string
	fromUser string
	peers    []source

	offered   []Codec    // the trunk's codecs
	offer     *MediaInfo // the PBX's offer; nil when the INVITE had none
	codec     Codec
	dtmfPT    uint8
	dir       string // the PBX's direction (its view), hold by c=0.0.0.0 folded in
	answerSDP []byte // our answer to the offer, in the 183 and the 200
	sdpID     uint64

	call      atomic.Pointer[Call] // once the 200 is sent
	peerWhy   atomic.Pointer[Reason]
	pbxCancel chan struct{} // closed by the PBX's CANCEL (transaction callback)
	cancelOne sync.Once
	settled   chan struct{} // closed once the INVITE's handler may return
	cancelled chan struct{} // Cancelled

	mu        sync.Mutex
	state     inboundState
	isSettled bool
	isEnded   bool
	closeReq  bool          // Close came while Answer ran
	byPBX     bool          // ended by the PBX's CANCEL or early BYE
	lastProv  *sip.Response // the latest 1xx, repeated every minute
}

// Trunk is the trunk the INVITE came from.
func (c *InboundCall) Trunk() *Trunk { return c.trunk }

// User is the Request-URI's user, unescaped (RFC 3261 §19.1.2): the number
// or BSUID the agent dialled, e.g. "+14085551234". With user=phone (or a
// tel: URI) the telephone-subscriber's parameters are cut off.
func (c *InboundCall) User() string { return c.user }

// Header is the first value of a header of the INVITE, e.g.
// "X-WA-Phone-Number-ID"; "" if it has none. The name is case-insensitive.
func (c *InboundCall) Header(name string) string {
	if h := c.req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// CallID is the INVITE's Call-ID, the dialog's.
func (c *InboundCall) CallID() string { return c.d.callID }

// FromUser is the user of the INVITE's From URI (the agent or the PBX's
// caller id), unescaped.
func (c *InboundCall) FromUser() string { return c.fromUser }

// Codec is the codec chosen from the PBX's offer: its first codec that the
// trunk has (matched by name and clock rate), with the PBX's payload type.
// Zero for an INVITE without SDP.
func (c *InboundCall) Codec() Codec { return c.codec }

// DTMFPayloadType is the telephone-event/8000 payload type of the PBX's
// offer, 0 if it has none (then our answer has none either).
func (c *InboundCall) DTMFPayloadType() uint8 { return c.dtmfPT }

// RemoteRTPAddr is where RTP goes: the offer's address until the PBX's
// first packet, then its source (symmetric RTP, see RTPConn). nil for an
// INVITE without SDP until answered, or an offer on hold (c=0.0.0.0).
func (c *InboundCall) RemoteRTPAddr() *net.UDPAddr { return c.rtp.Remote() }

// LocalRTPAddr is our RTP socket's address.
func (c *InboundCall) LocalRTPAddr() *net.UDPAddr { return c.rtp.LocalAddr() }

// ReadPacket reads the next RTP packet from the PBX, before the answer
// (early media) and after it, on the same socket as the answered Call's
// ReadPacket. It returns an error once the call ended or was closed.
func (c *InboundCall) ReadPacket(b []byte) (int, error) { return c.rtp.ReadPacket(b) }

// WritePacket sends one RTP packet to the PBX. Before the answer it is
// early media toward the PBX (a ringback, an announcement): sent only if
// the offer's direction lets the PBX receive (RFC 3264 §6.1); after it, as
// Call.WritePacket (nothing while the PBX holds the call).
func (c *InboundCall) WritePacket(b []byte) error {
	if call := c.call.Load(); call != nil {
		return call.WritePacket(b)
	}
	if c.offer == nil || !peerReceives(c.dir) {
		return nil
	}
	return c.rtp.WritePacket(b)
}

// Cancelled is closed once the call can no longer be answered: the PBX
// cancelled it (CANCEL, answered 200 with 487 to the INVITE by the
// transaction layer, RFC 3261 §9.2; or a BYE on the early dialog, §15.1.2),
// or it ended otherwise before the answer (Reject, Close, MaxRingDuration,
// the UA closing, the transport failing, an Answer that failed). The RTP
// socket is released by then.
func (c *InboundCall) Cancelled() <-chan struct{} { return c.cancelled }

// PeerReason is the Reason header (RFC 3326) of the PBX's CANCEL or early
// BYE, e.g. Q.850 cause 16 when the agent hung up; zero if none.
func (c *InboundCall) PeerReason() Reason {
	if r := c.peerWhy.Load(); r != nil {
		return *r
	}
	return Reason{}
}

// Ringing sends 180 Ringing (no SDP: the PBX plays its own ringback). It
// may be called again (each sends one). It fails once the call has a final
// response, or is being answered.
func (c *InboundCall) Ringing(ctx context.Context) error {
	return c.provisional(ctx, 180, "Ringing", nil)
}

// Progress sends 183 Session Progress with our SDP answer (the one the 200
// will carry), so that the PBX plays what WritePacket sends before the
// answer (early media, RFC 3960 §3). It fails for an INVITE without SDP: we
// cannot offer in an unreliable provisional response.
func (c *InboundCall) Progress(ctx context.Context) error {
	if c.offer == nil {
		return fmt.Errorf("sip: 183 to INVITE %s: no offer to answer early", c.d.callID)
	}
	return c.provisional(ctx, 183, "Session Progress", c.answerSDP)
}

func (c *InboundCall) provisional(ctx context.Context, code int, phrase string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sip: %d to INVITE %s: %w", code, c.d.callID, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stateErrLocked(strconv.Itoa(code)); err != nil {
		return err
	}
	res := c.response(code, phrase, body)
	if err := c.tx.Respond(res); err != nil {
		return fmt.Errorf("sip: %d to INVITE %s: %w", code, c.d.callID, err)
	}
	c.lastProv = res
	return nil
}

// stateErrLocked is the error for an operation that needs the call pending.
func (c *InboundCall) stateErrLocked(op string) error {
	switch c.state {
	case inboundPending:
		return nil
	case inboundAnswering, inboundAnswered:
		return fmt.Errorf("sip: %s to INVITE %s: already answered", op, c.d.callID)
	}
	if c.byPBX {
		return fmt.Errorf("sip: %s to INVITE %s: %w", op, c.d.callID, ErrCancelled)
	}
	return fmt.Errorf("sip: %s to INVITE %s: %w", op, c.d.callID, ErrCallEnded)
}

// Reject ends the INVITE with a final response code (300-699) and phrase
// ("" = the usual one), a Reason header saying why (RFC 3326; zero: none),
// e.g. {Q.850, 17, "user busy"} with 486, and, if warning is not empty, a
// Warning header (RFC 3261 §20.43, code 399) with that text for the agent.
// The transaction retransmits it until the PBX's ACK. The RTP socket is
// released.
func (c *InboundCall) Reject(code int, phrase string, why Reason, warning string) error {
	if code < 300 || code > 699 {
		return fmt.Errorf("sip: reject INVITE %s: %d is not a final error code (300-699)", c.d.callID, code)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refuseLocked(code, phrase, why, warning)
}

// refuseLocked sends a final non-2xx response if the call is pending and
// ends it; the caller holds mu.
func (c *InboundCall) refuseLocked(code int, phrase string, why Reason, warning string) error {
	if err := c.stateErrLocked(strconv.Itoa(code)); err != nil {
		return err
	}
	res := c.response(code, reasonPhrase(code, phrase), nil)
	if v := why.String(); v != "" {
		res.AppendHeader(sip.NewHeader("Reason", v))
	}
	if warning != "" {
		res.AppendHeader(sip.NewHeader("Warning", warningValue(399, c.st.host, warning)))
	}
	err := c.tx.Respond(res)
	c.endLocked()
	if err != nil {
		return fmt.Errorf("sip: %d to INVITE %s: %w", code, c.d.callID, err)
	}
	c.log.Info("sip inbound call refused", zap.Int("code", code), zap.String("reason", why.String()))
	return nil
}

// Close releases the RTP socket. A call still pending gets 480 Temporarily
// Unavailable (the gateway could not complete it; 500 would say it
// failed). During Answer, Answer fails (the PBX gets BYE once it ACKed).
// After Answer it is the answered Call's Close: the dialog is forgotten
// without BYE (Call.Hangup sends one). It is idempotent.
func (c *InboundCall) Close() error {
	c.mu.Lock()
	switch c.state {
	case inboundPending:
		err := c.refuseLocked(480, "Temporarily Unavailable", Reason{}, "")
		c.mu.Unlock()
		return err
	case inboundAnswering:
		c.closeReq = true
		c.mu.Unlock()
		return nil
	case inboundAnswered:
		call := c.call.Load()
		c.mu.Unlock()
		return call.Close()
	}
	c.mu.Unlock()
	return nil
}

// endLocked ends a call that will not be (or was not) answered: the handler
// may return, Cancelled closes, the socket is released. mu is held.
func (c *InboundCall) endLocked() {
	c.state = inboundEnded
	c.settleLocked()
	if !c.isEnded {
		c.isEnded = true
		close(c.cancelled)
		_ = c.rtp.Close()
	}
}

// settleLocked lets the INVITE's handler return: the transaction has its
// final response (or is gone). mu is held.
func (c *InboundCall) settleLocked() {
	if !c.isSettled {
		c.isSettled = true
		close(c.settled)
	}
}

// Answer sends 200 OK with our SDP answer (the chosen codec, plus
// telephone-event if the PBX offered it, the direction mirrored), or our
// offer for an INVITE without SDP, retransmits it until the PBX's ACK
// (RFC 3261 §13.3.1.4) and returns the established call, the same Call as
// UA.Invite's. If no ACK comes within 64*T1 (Timer H) or ctx ends first,
// the call is ended with BYE and Answer fails; if the PBX cancelled first it
// fails with ErrCancelled. OnInfoDigit and OnMediaChange keep what came
// before they are set (Call.SetOnInfoDigit, Call.SetOnMediaChange).
func (c *InboundCall) Answer(ctx context.Context) (*Call, error) {
	u, id := c.ua, c.d.callID
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sip: answer %s: %w", id, err)
	}
	c.mu.Lock()
	if err := c.stateErrLocked("answer"); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.state = inboundAnswering
	call := u.newCall(c.st, c.d, c.rtp, c.offered, c.sdpID, c.peers, c.log)
	var (
		body  []byte
		offer []Codec
	)
	if c.offer != nil {
		call.codec, call.dtmfPT, call.remoteDir = c.codec, c.dtmfPT, c.dir
		if !c.offer.Addr.IP.IsUnspecified() {
			call.remoteSDP = c.offer.Addr
		}
		call.sendOK.Store(peerReceives(c.dir))
		body = c.answerSDP
	} else {
		// RFC 3261 §13.2.1: no offer in the INVITE, ours goes in the 2xx.
		offer = c.offered
		body = BuildSDP(SDPParams{
			SessionID: c.sdpID, Version: 1, Host: c.st.host, Port: c.rtp.Port(),
			Codecs: offer, DTMFPayloadType: DefaultDTMFPayloadType,
		})
	}
	acked := make(chan struct{})
	call.reAck, call.reAckSeq = acked, c.cseq
	res := c.response(200, "OK", body)
	if !u.addCall(call) {
		c.state = inboundPending
		_ = c.refuseLocked(503, "Service Unavailable", shutdownReason, "")
		c.mu.Unlock()
		return nil, fmt.Errorf("sip: answer %s: UA closed", id)
	}
	if err := c.tx.Respond(res); err != nil {
		// A CANCEL processed first made the transaction answer 487 and
		// drop our 200 (RFC 3261 §9.2), or the transport failed.
		c.endLocked()
		c.byPBX = errors.Is(err, sip.ErrTransactionCanceled)
		c.mu.Unlock()
		call.end("cancelled")
		if errors.Is(err, sip.ErrTransactionCanceled) {
			return nil, fmt.Errorf("sip: answer %s: %w", id, ErrCancelled)
		}
		return nil, fmt.Errorf("sip: answer %s: send 200: %w", id, err)
	}
	c.call.Store(call)
	c.settleLocked()
	c.mu.Unlock()

	ack, err := awaitAck(ctx, c.tx, res, c.st.transport != "udp", acked, call.done)
	call.mu.Lock()
	if call.reAck == acked { // not closed by onAck: the ACK came through the transaction, or none
		call.reAck = nil
	} else if ack == nil {
		ack = call.lastAck
	}
	call.mu.Unlock()

	fail := func(endReason string, why Reason, e error) (*Call, error) {
		c.mu.Lock()
		c.endLocked()
		c.mu.Unlock()
		hctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
		defer cancel()
		if herr := call.hangup(hctx, endReason, why); herr != nil {
			c.log.Debug("sip BYE after a failed answer", zap.Error(herr))
		}
		return nil, e
	}
	if err != nil {
		select {
		case <-call.done: // the PBX's BYE, or the UA closing, ended it first
			c.mu.Lock()
			c.endLocked()
			c.mu.Unlock()
			return nil, fmt.Errorf("sip: answer %s: %w (%s)", id, ErrCallEnded, call.EndReason())
		default:
		}
		if ctx.Err() != nil {
			return fail("local_bye", cancelReason(context.Cause(ctx)), fmt.Errorf("sip: answer %s: %w", id, err))
		}
		c.log.Info("sip no ACK for our 200; ending the call")
		return fail(EndNoAck, Reason{Protocol: "SIP", Cause: 408, Text: "no ACK"}, fmt.Errorf("sip: answer %s: %w", id, err))
	}
	c.mu.Lock()
	closeReq := c.closeReq
	if !closeReq {
		c.state = inboundAnswered
	}
	c.mu.Unlock()
	if closeReq {
		return fail("local_bye", Reason{}, fmt.Errorf("sip: answer %s: closed while answering: %w", id, ErrCallEnded))
	}
	if offer != nil {
		// The PBX's answer to our offer is in its ACK (RFC 3261 §13.2.1).
		var body []byte
		if ack != nil {
			body = ack.Body()
		}
		info, perr := ParseSDP(body)
		var codec Codec
		if perr == nil {
			var ok bool
			if codec, ok = NegotiateCodec(offer, info.Codecs); !ok {
				perr = errors.New("sdp: answer holds none of the offered codecs")
			}
		}
		if perr != nil {
			c.log.Info("sip unusable answer in the ACK; ending the call", zap.Error(perr))
			return fail("bad_answer", Reason{Protocol: "SIP", Cause: 488, Text: "Not Acceptable Here"},
				fmt.Errorf("sip: answer %s: the PBX's answer in its ACK: %w", id, perr))
		}
		call.mediaMu.Lock()
		call.applyRemote(info, codec)
		call.mediaMu.Unlock()
	}
	if iv := u.cfg.KeepaliveInterval; iv > 0 {
		call.startKeepalive(iv)
	}
	call.mu.Lock()
	codec, dtmf, dir := call.codec, call.dtmfPT, call.remoteDir
	call.mu.Unlock()
	c.log.Info("sip inbound call established", zap.String("codec", codec.Name), zap.Uint8("pt", codec.PayloadType),
		zap.Uint8("dtmf_pt", dtmf), zap.String("pbx_direction", dir), zap.Stringer("rtp_remote", call.RemoteRTPAddr()))
	return call, nil
}

// response is a response to the INVITE in our dialog: our To tag (the same
// on every response, RFC 3261 §8.2.6.2), Record-Route copied for 1xx and 2xx
// (by sipgo, §12.1.1), Contact on those (§12.1.1), and SDP if body is set.
func (c *InboundCall) response(code int, phrase string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(c.req, code, phrase, nil)
	if to := res.To(); to != nil {
		to.Params.Add("tag", c.d.localTag())
	}
	if code < 300 {
		res.AppendHeader(c.st.contact.Clone())
	}
	if code >= 200 && code < 300 {
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
	}
	if body != nil {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
		res.SetBody(body)
	}
	return res
}

// onCancel runs in the INVITE transaction as it takes the PBX's CANCEL (it
// then sends 487 itself): it must not take mu, which is held around
// tx.Respond.
func (c *InboundCall) onCancel(r *sip.Request) {
	if why := peerReason(r); !why.IsZero() {
		c.peerWhy.Store(&why)
	}
	c.cancelOne.Do(func() { close(c.pbxCancel) })
}

// onEarlyBye takes a BYE on the early dialog (after our 1xx with a tag):
// 200 to the BYE, 487 to the INVITE (RFC 3261 §15.1.2).
func (c *InboundCall) onEarlyBye(req *sip.Request, tx sip.ServerTransaction) {
	a, ok := sourceAddr(req.Source())
	if !ok || !sourcesContain(c.peers, a) {
		c.ua.drops.notDialogPeer.Add(1)
		c.ua.dropLog.log(c.log, "sip in-dialog request from another address than the dialog's peer dropped", a.Addr(), &c.ua.drops.notDialogPeer)
		tx.Terminate()
		return
	}
	respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
	if why := peerReason(req); !why.IsZero() {
		c.peerWhy.Store(&why)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == inboundPending {
		c.log.Info("sip inbound call ended by the PBX's BYE before the answer")
		_ = c.refuseLocked(487, "Request Terminated", Reason{}, "")
		c.byPBX = true
	}
}

// serve waits, on the INVITE's handler goroutine, until the transaction
// has its final response: the gateway's (Answer, Reject, Close), or ours
// when the PBX cancels, the transport fails, MaxRingDuration passes or the
// UA closes. The last provisional response is repeated every minute.
func (c *InboundCall) serve() {
	ring := time.NewTimer(MaxRingDuration)
	defer ring.Stop()
	refresh := time.NewTicker(provisionalRefresh)
	defer refresh.Stop()
	pbxCancel, txDone, closing := c.pbxCancel, c.tx.Done(), c.ua.ctx.Done()
	for {
		select {
		case <-c.settled:
			return
		case <-pbxCancel:
			pbxCancel = nil
			c.mu.Lock()
			if c.state == inboundPending {
				c.log.Info("sip inbound call cancelled by the PBX", zap.String("reason", c.PeerReason().String()))
				c.endLocked() // the transaction sent 487 (RFC 3261 §9.2)
				c.byPBX = true
			}
			c.mu.Unlock()
		case <-txDone:
			txDone = nil
			c.mu.Lock()
			if c.state == inboundPending {
				c.log.Info("sip inbound INVITE transaction ended before the answer", zap.NamedError("cause", c.tx.Err()))
				c.endLocked()
			}
			c.mu.Unlock()
		case <-closing:
			closing = nil
			c.mu.Lock()
			if c.refuseLocked(503, "Service Unavailable", shutdownReason, "") == nil {
				// The UA closes its transports once this returns: a
				// retransmission of the 503 after that would make sipgo open
				// a new socket nobody closes. The PBX got the 503 once.
				c.tx.Terminate()
			}
			c.mu.Unlock()
		case <-ring.C:
			c.mu.Lock()
			if c.state == inboundPending {
				c.log.Info("sip inbound call not answered in time", zap.Duration("after", MaxRingDuration))
				_ = c.refuseLocked(480, "Temporarily Unavailable", Reason{Protocol: "Q.850", Cause: 19, Text: "No answer"}, "")
			}
			c.mu.Unlock()
		case <-refresh.C:
			c.mu.Lock()
			if c.state == inboundPending && c.lastProv != nil {
				respond(c.tx, c.lastProv, c.log)
			}
			c.mu.Unlock()
		}
	}
}

// onInvite serves a new INVITE (outside any dialog). It runs on the
// request's own goroutine and, for a call handed to OnInvite, returns only
// once the INVITE has its final response (sipgo ends a transaction left
// without one when the handler returns).
func (u *UA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if u.cfg.OnInvite == nil {
		// Inbound calls are off. One 403 per INVITE received, not
		// retransmitted until an ACK (RFC 3261 §17.2.1 Timer G): nothing
		// for a forged source to have reflected.
		respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil), u.log)
		tx.Terminate()
		return
	}
	t := u.trunkFor(req.Source())
	if t == nil {
		// Only trunks place calls: with no trunks set the source filter is
		// off, and a source it lets through may belong to none.
		respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil), u.log)
		tx.Terminate()
		return
	}
	log := u.log.With(zap.String("trunk", t.Name), zap.String("sip_call_id", callIDOf(req)), zap.String("direction", "inbound"))
	if t.hasCredentials() {
		now := time.Now()
		switch out, why := u.auth.check(req, t, now); out {
		case authChallenge, authStale:
			// RFC 3261 §22.4 (RFC 7616 §3.3 for stale=true).
			respond(tx, u.auth.challenge(req, t.Name, out == authStale, now), log)
			return
		case authFailed:
			u.drops.authFailed.Add(1)
			src, _ := sourceAddr(req.Source())
			u.authLog.log(log.With(zap.String("why", why)), "sip INVITE with wrong digest credentials refused", src.Addr(), &u.drops.authFailed)
			respond(tx, sip.NewResponseFromRequest(req, 403, "Forbidden", nil), log)
			tx.Terminate()
			return
		}
	}
	u.mu.Lock()
	st := u.st
	u.mu.Unlock()
	if st == nil { // a request between the listener's start and Start's return
		respond(tx, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil), log)
		return
	}
	c, res := u.newInbound(st, req, tx, t, log)
	if res != nil {
		respond(tx, res, log)
		return
	}
	switch code := u.addPending(c); code {
	case 0:
	case 503:
		u.drops.overLimit.Add(1)
		src, _ := sourceAddr(req.Source())
		u.busyLog.log(log, "sip INVITE over MaxPendingInvites refused with 503", src.Addr(), &u.drops.overLimit)
		res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", retryAfterBusy))
		respond(tx, res, log)
		return
	case 482:
		// The same request again by another path (RFC 3261 §8.2.2.2).
		respond(tx, sip.NewResponseFromRequest(req, 482, "Loop Detected", nil), log)
		return
	default: // closing
		respond(tx, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil), log)
		return
	}
	defer u.wg.Done()
	defer u.removePending(c)

	rtp, err := ListenRTP(u.rtpIP, u.cfg.RTPPortMin, u.cfg.RTPPortMax)
	if err != nil {
		log.Warn("sip inbound call refused: no RTP port", zap.Error(err))
		respond(tx, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil), log)
		return
	}
	rtp.onStranger = &u.strangerRTP
	rtp.track(&u.rtpOpen)
	c.rtp = rtp
	if c.offer != nil {
		rtp.SetPayloadTypes(streamPTs(c.codec, c.dtmfPT)...)
		if !c.offer.Addr.IP.IsUnspecified() {
			rtp.SetRemote(c.offer.Addr)
		}
		c.answerSDP = BuildSDP(SDPParams{
			SessionID: c.sdpID, Version: 1, Host: c.st.host, Port: rtp.Port(),
			Codecs: []Codec{c.codec}, DTMFPayloadType: c.dtmfPT, Direction: AnswerDirection(c.dir),
		})
	}
	if !tx.OnCancel(c.onCancel) {
		// Cancelled already: the transaction answered 487.
		c.mu.Lock()
		c.endLocked()
		c.byPBX = true
		c.mu.Unlock()
		return
	}
	log.Info("sip inbound call", zap.String("user", c.user), zap.String("from", c.fromUser),
		zap.String("codec", c.codec.Name), zap.Uint8("dtmf_pt", c.dtmfPT), zap.Stringer("rtp_remote", rtp.Remote()))
	go u.cfg.OnInvite(c)
	c.serve()
}

// newInbound checks a new INVITE from trunk t and takes its offer; a
// response instead says why it cannot be served. No socket is bound yet.
func (u *UA) newInbound(st *stack, req *sip.Request, tx sip.ServerTransaction, t *Trunk, log *zap.Logger) (*InboundCall, *sip.Response) {
	from, to, cid, cseq := req.From(), req.To(), req.CallID(), req.CSeq()
	fromTag := ""
	if from != nil {
		fromTag, _ = from.Params.Get("tag")
	}
	if to == nil || fromTag == "" || cid == nil || cseq == nil || req.Contact() == nil {
		// From tag: RFC 3261 §8.1.1.3; Contact in an INVITE: §8.1.1.8.
		return nil, sip.NewResponseFromRequest(req, 400, "Bad Request", nil)
	}
	if tags := unsupportedRequire(req); tags != "" {
		// We support no extension a request may require (§8.2.2.3).
		res := sip.NewResponseFromRequest(req, 420, "Bad Extension", nil)
		res.AppendHeader(sip.NewHeader("Unsupported", tags))
		return nil, res
	}
	user, code := requestUser(req.Recipient)
	switch code {
	case 416:
		return nil, sip.NewResponseFromRequest(req, 416, "Unsupported URI Scheme", nil) // §8.2.2.1
	case 400:
		return nil, sip.NewResponseFromRequest(req, 400, "Bad Request", nil)
	}
	if user == "" {
		return nil, sip.NewResponseFromRequest(req, 404, "Not Found", nil) // nobody to call
	}
	fromUser, _ := unescapeUser(from.Address.User)

	c := &InboundCall{
		ua: u, st: st, trunk: t, req: req, tx: tx, cseq: cseq.SeqNo, user: user, fromUser: fromUser,
		offered: t.codecs(), sdpID: randUint64() >> 1,
		pbxCancel: make(chan struct{}), settled: make(chan struct{}), cancelled: make(chan struct{}),
	}
	if body := req.Body(); len(body) > 0 {
		if !isSDPRequest(req) {
			res := sip.NewResponseFromRequest(req, 415, "Unsupported Media Type", nil)
			res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
			return nil, res
		}
		info, err := ParseSDP(body)
		if err != nil {
			log.Info("sip inbound INVITE refused: unusable SDP offer", zap.Error(err))
			res := sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil)
			res.AppendHeader(sip.NewHeader("Warning", warningValue(399, st.host, "unusable SDP offer")))
			return nil, res
		}
		codec, ok := NegotiateCodec(c.offered, info.Codecs)
		if !ok {
			supported := codecList(c.offered)
			log.Info("sip inbound INVITE refused: no common codec", zap.String("offered", codecList(info.Codecs)), zap.String("supported", supported))
			res := sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil)
			// RFC 3261 §20.43: 305 Incompatible media format.
			res.AppendHeader(sip.NewHeader("Warning", warningValue(305, st.host, "no common codec; supported: "+supported+" telephone-event/8000")))
			return nil, res
		}
		c.offer, c.codec, c.dir = info, codec, remoteDirection(info)
		if info.DTMFClockRate == 8000 {
			c.dtmfPT = info.DTMFPayloadType
		}
	}
	d, err := uasDialog(req, randHex(8), st.contact.Clone())
	if err != nil {
		return nil, sip.NewResponseFromRequest(req, 400, "Bad Request", nil)
	}
	c.d, c.key = d, dialogKey(d.callID, d.localTag())
	c.log = log
	c.peers = u.dialogPeers(t, req.Source())
	return c, nil
}

// addPending registers a new inbound call: 0, or 503 over
// MaxPendingInvites, 482 for a merged request (the Call-ID, From tag and
// CSeq of one pending), -1 if the UA is closing. On 0 Close waits for the
// caller's u.wg.Done.
func (u *UA) addPending(c *InboundCall) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != 1 {
		return -1
	}
	for _, p := range u.pending {
		if p.d.callID == c.d.callID && p.d.remoteTag() == c.d.remoteTag() && p.cseq == c.cseq {
			return 482
		}
	}
	if len(u.pending) >= u.cfg.MaxPendingInvites {
		return 503
	}
	u.pending[c.key] = c
	u.wg.Add(1)
	return 0
}

func (u *UA) removePending(c *InboundCall) {
	u.mu.Lock()
	if u.pending[c.key] == c {
		delete(u.pending, c.key)
	}
	u.mu.Unlock()
}

// lookupPending finds the pending inbound call an in-dialog request (on the
// early dialog our 1xx set up) belongs to.
func (u *UA) lookupPending(req *sip.Request) *InboundCall {
	key := requestKey(req)
	if key == "" {
		return nil
	}
	u.mu.Lock()
	c := u.pending[key]
	u.mu.Unlock()
	if c == nil || !c.d.matches(req) {
		return nil
	}
	return c
}

// requestUser is the user a Request-URI names, unescaped: a SIP URI's user
// (with user=phone, without the telephone-subscriber's parameters, RFC 3261
// §19.1.1), a tel: URI's number (RFC 3966). code is 416 for another scheme,
// 400 for a user that does not unescape to printable text.
func requestUser(u sip.Uri) (string, int) {
	var raw string
	switch strings.ToLower(u.Scheme) {
	case "sip", "sips":
		raw = u.User
		if v, _ := u.UriParams.Get("user"); strings.EqualFold(v, "phone") {
			raw, _, _ = strings.Cut(raw, ";")
		}
	case "tel":
		raw, _, _ = strings.Cut(u.Raw(), ";")
	default:
		return "", 416
	}
	s, ok := unescapeUser(raw)
	if !ok {
		return "", 400
	}
	return s, 0
}

// unescapeUser decodes %HH escapes (RFC 3261 §25.1) and refuses control
// characters, invalid escapes and users over maxUserLen bytes.
func unescapeUser(raw string) (string, bool) {
	s, err := url.PathUnescape(raw)
	if err != nil || len(s) > maxUserLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "", false
		}
	}
	return s, true
}

// unsupportedRequire lists the option tags of the request's Require
// headers: we support none (RFC 3261 §8.2.2.3), "" if it has none.
func unsupportedRequire(req *sip.Request) string {
	var tags []string
	for _, h := range req.GetHeaders("Require") {
		for t := range strings.SplitSeq(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" && isToken(t) && len(tags) < 8 {
				tags = append(tags, t)
			}
		}
	}
	return strings.Join(tags, ", ")
}

// warningValue is a Warning header value (RFC 3261 §20.43): warn-code,
// warn-agent and the text as a quoted-string, without quotes, backslashes
// or control characters, at most maxWarningText bytes.
func warningValue(code int, agent, text string) string {
	t := strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(text, ""))
	if len(t) > maxWarningText {
		t = strings.ToValidUTF8(t[:maxWarningText], "")
	}
	if agent == "" {
		agent = "wagateway"
	}
	return strconv.Itoa(code) + " " + agent + ` "` + t + `"`
}

// codecList names codecs as name/rate, e.g. "PCMU/8000 PCMA/8000".
func codecList(cs []Codec) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
	}
	return strings.Join(names, " ")
}

// reasonPhrase is phrase, or the usual one for code when phrase is empty
// (line breaks dropped: it goes in the status line).
func reasonPhrase(code int, phrase string) string {
	phrase = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, phrase)
	if phrase != "" {
		return phrase
	}
	switch code {
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 484:
		return "Address Incomplete"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	}
	switch code / 100 {
	case 3:
		return "Redirection"
	case 4:
		return "Request Failure"
	case 5:
		return "Server Failure"
	}
	return "Global Failure"
}

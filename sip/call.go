package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// ErrCallEnded is returned by requests on a dialog that has ended.
var ErrCallEnded = errors.New("sip: call ended")

// Call is an established call, the gateway's (UA.Invite) or a trunk's
// (InboundCall.Answer): its dialog and its RTP socket. Both behave the same
// once established: BYE either way, re-INVITE/UPDATE, INFO digits, keepalive.
type Call struct {
	ua       *UA
	st       *stack
	d        *dialog
	key      string
	log      *zap.Logger
	rtp      *RTPConn
	offered  []Codec // the trunk's codecs: what a new offer from the PBX may switch to
	inviteTx sip.ClientTransaction
	sdpID    uint64
	peers    []source // where in-dialog requests may come from

	// sendOK is false while the PBX's SDP says it does not receive
	// (sendonly, inactive, c=0.0.0.0): WritePacket then drops packets.
	sendOK atomic.Bool
	// mediaMu serialises offer/answer exchanges with their notification,
	// so that OnMediaChange sees changes in the order they were answered.
	mediaMu sync.Mutex
	// digitMu serialises digit delivery (OnInfoDigit sees digits in order).
	digitMu sync.Mutex
	// infoSem lets one INFO of ours be in flight at a time, so the PBX
	// gets digits in order.
	infoSem chan struct{}

	mu        sync.Mutex
	codec     Codec
	dtmfPT    uint8
	remoteDir string       // the PBX's direction (its view), hold by c=0.0.0.0 folded in
	remoteSDP *net.UDPAddr // the RTP address of the PBX's latest SDP
	sdpVer    uint64
	onDigit   func(digit rune, d time.Duration)
	digits    []infoDigit // received while no OnInfoDigit was set
	onMedia   func(MediaChange)
	media     *MediaChange  // latest change made while no OnMediaChange was set
	ack       *sip.Request  // our ACK to the 2xx, resent on 2xx retransmissions
	reAck     chan struct{} // closed by the ACK of a re-INVITE we answered
	reAckSeq  uint32
	reOffer   []Codec      // codecs of the offer we put in a 2xx to an offerless re-INVITE
	lastAck   *sip.Request // the ACK that closed reAck (an inbound call's answer reads it)
	endReason string
	peerWhy   Reason // the Reason header of the PBX's BYE
	done      chan struct{}
	ended     bool
	keepalive *time.Timer // the next in-dialog OPTIONS probe (keepalive.go); nil when none
	closeOnce sync.Once
}

// newCall is a call on an established dialog d, either side's: rtp carries
// its media, offered are the trunk's codecs, sdpID our SDP's session id (its
// version starts at 1), peers where in-dialog requests may come from. The
// caller sets the media state and registers it (addCall).
func (u *UA) newCall(st *stack, d *dialog, rtp *RTPConn, offered []Codec, sdpID uint64, peers []source, log *zap.Logger) *Call {
	return &Call{
		ua: u, st: st, d: d, key: dialogKey(d.callID, d.localTag()), log: log,
		rtp: rtp, offered: offered, sdpID: sdpID, sdpVer: 1, done: make(chan struct{}),
		infoSem: make(chan struct{}, 1), peers: peers,
	}
}

// CallID is the dialog's Call-ID.
func (c *Call) CallID() string { return c.d.callID }

// Codec is the codec the PBX chose: the first of its answer we offered, with
// the PBX's payload type (the one to send with). A later offer from the PBX
// (re-INVITE, UPDATE) may change it; OnMediaChange tells when.
func (c *Call) Codec() Codec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codec
}

// DTMFPayloadType is the PBX's telephone-event payload type (clock 8000
// preferred), 0 if its SDP has none. It is read from the PBX's SDP and may
// differ from the one we offered (DefaultDTMFPayloadType).
func (c *Call) DTMFPayloadType() uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dtmfPT
}

// RemoteRTPAddr is where RTP goes now: the answer's address until the first
// packet accepted from the PBX, then that packet's source (symmetric RTP).
func (c *Call) RemoteRTPAddr() *net.UDPAddr { return c.rtp.Remote() }

// StrangerPackets is the number of datagrams the call's RTP socket dropped
// because they came from a source other than the PBX's negotiated one
// (see RTPConn).
func (c *Call) StrangerPackets() uint64 { return c.rtp.StrangerPackets() }

// LocalRTPAddr is our RTP socket's address.
func (c *Call) LocalRTPAddr() *net.UDPAddr { return c.rtp.LocalAddr() }

// ReadPacket reads the next RTP packet from the PBX (whole packet) into b.
// It returns an error once the call is closed.
func (c *Call) ReadPacket(b []byte) (int, error) { return c.rtp.ReadPacket(b) }

// WritePacket sends one RTP packet to the PBX. While the PBX holds the call
// (its SDP is sendonly or inactive, or has c=0.0.0.0) packets are dropped
// without error: we answered recvonly or inactive and must not send
// (RFC 3264 §6.1). The socket stays open and ReadPacket keeps working.
func (c *Call) WritePacket(b []byte) error {
	if !c.sendOK.Load() {
		return nil
	}
	return c.rtp.WritePacket(b)
}

// Done is closed when the dialog ends: BYE from the PBX, Hangup or Close.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndReason tells why the dialog ended: "remote_bye", "local_bye",
// "closed", "shutdown", "bad_answer" or "pbx_unreachable" (in-dialog
// OPTIONS unanswered, see UAConfig.KeepaliveInterval); "" while it is up.
func (c *Call) EndReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endReason
}

// PeerReason is the Reason header (RFC 3326) of the PBX's BYE, zero if it
// sent none or the call did not end by its BYE. Q.850 is preferred when it
// sent several.
func (c *Call) PeerReason() Reason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerWhy
}

// Hangup sends BYE (unless the dialog already ended), then releases the RTP
// socket. The dialog counts as ended whatever the BYE's outcome
// (RFC 3261 §15.1.1).
func (c *Call) Hangup(ctx context.Context) error {
	return c.hangup(ctx, "local_bye", Reason{})
}

// HangupWithReason is Hangup with a Reason header in the BYE saying why
// (RFC 3326), e.g. {Protocol: "Q.850", Cause: 16, Text: "Normal call clearing"}.
func (c *Call) HangupWithReason(ctx context.Context, why Reason) error {
	return c.hangup(ctx, "local_bye", why)
}

// Close releases the RTP socket and forgets the dialog without telling the
// PBX (call Hangup first for that). It unblocks ReadPacket and is idempotent.
func (c *Call) Close() error {
	c.end("closed")
	var err error
	c.closeOnce.Do(func() { err = c.rtp.Close() })
	return err
}

func (c *Call) hangup(ctx context.Context, reason string, why Reason) error {
	defer c.Close()
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		return nil
	}
	res, err := sendBye(ctx, c.st, byeRequest(c.d, 0, c.ua.cfg.UserAgent, why), c.d.callID, func() { c.end(reason) })
	if err != nil {
		return err
	}
	c.log.Debug("sip BYE answered", zap.Int("code", res.StatusCode))
	return nil
}

// byeRequest builds the BYE of dialog d (seq = 0: the next local CSeq), with
// our User-Agent and, when set, a Reason header (RFC 3326). Call.hangup and
// UA.ByeDialog build theirs with it.
func byeRequest(d *dialog, seq uint32, userAgent string, why Reason) *sip.Request {
	bye := d.request(sip.BYE, seq)
	bye.AppendHeader(sip.NewHeader("User-Agent", userAgent))
	if v := why.String(); v != "" {
		bye.AppendHeader(sip.NewHeader("Reason", v))
	}
	return bye
}

// sendBye sends bye (of dialog callID) through st's client and waits for
// its final response, bounded by ctx: the 2xx, or an error (a non-2xx final
// response gives the response too, and an error wrapping a *FinalError).
// sent, if not nil, runs once the transaction layer has taken the BYE or
// refused it, before the wait. Call.hangup and UA.ByeDialog share it.
func sendBye(ctx context.Context, st *stack, bye *sip.Request, callID string, sent func()) (*sip.Response, error) {
	tx, err := st.client.TransactionRequest(ctx, bye)
	if sent != nil {
		sent()
	}
	if err != nil {
		return nil, fmt.Errorf("sip: BYE %s: send: %w", callID, err)
	}
	defer tx.Terminate()
	for i := 0; i < 100; i++ {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if !res.IsSuccess() {
				return res, fmt.Errorf("sip: BYE %s: %w", callID, &FinalError{Code: res.StatusCode, Reason: res.Reason})
			}
			return res, nil
		case <-tx.Done():
			err := tx.Err()
			if err == nil {
				err = errors.New("transaction ended")
			}
			return nil, fmt.Errorf("sip: BYE %s: %w", callID, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("sip: BYE %s: %w", callID, ctx.Err())
		}
	}
	return nil, fmt.Errorf("sip: BYE %s: too many provisional responses", callID)
}

// end marks the dialog ended once: the UA forgets it, then Done closes (so
// that whoever sees Done also sees ActiveCalls without it).
func (c *Call) end(reason string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.endReason = reason
	if c.keepalive != nil {
		c.keepalive.Stop()
	}
	c.mu.Unlock()
	c.ua.removeCall(c)
	c.ua.trace.unrefLater(c.d.callID)
	close(c.done) // only the caller that set ended gets here
	if c.inviteTx != nil {
		c.inviteTx.Terminate()
	}
	c.log.Info("sip call ended", zap.String("reason", reason))
}

// sendAck ACKs the 2xx and arranges for 2xx retransmissions to be ACKed again
// (RFC 3261 §13.2.2.4: the UAC core, not the transaction, does this).
func (c *Call) sendAck() {
	ack := c.d.request(sip.ACK, c.d.localSeq)
	if err := c.st.client.WriteRequest(ack); err != nil {
		c.log.Warn("sip ACK failed", zap.Error(err))
	}
	c.mu.Lock()
	c.ack = ack.Clone()
	c.mu.Unlock()
	c.inviteTx.OnRetransmission(func(r *sip.Response) {
		if !r.IsSuccess() {
			return
		}
		c.mu.Lock()
		ack := c.ack
		c.mu.Unlock()
		if ack != nil {
			_ = c.st.client.WriteRequest(ack.Clone())
		}
	})
}

// onAck takes the ACK of a 2xx we sent to a re-INVITE. If that re-INVITE
// had no SDP, our 2xx carried the offer and the ACK carries the answer
// (RFC 3261 §14.2).
func (c *Call) onAck(req *sip.Request) {
	cs := req.CSeq()
	c.mu.Lock()
	if c.reAck == nil || cs == nil || cs.SeqNo != c.reAckSeq {
		c.mu.Unlock()
		return
	}
	close(c.reAck)
	c.reAck = nil
	c.lastAck = req
	offer := c.reOffer
	c.reOffer = nil
	c.mu.Unlock()
	if offer != nil {
		c.applyAckAnswer(req.Body(), offer)
	}
}

// onRequest serves an in-dialog request from the PBX (RFC 3261 §12.2.2).
func (c *Call) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	if req.Method != sip.CANCEL && !c.d.checkRemoteSeq(req) {
		respond(tx, sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil), c.log)
		return
	}
	switch req.Method {
	case sip.BYE:
		respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
		why := peerReason(req)
		c.mu.Lock()
		if !c.ended {
			c.peerWhy = why
		}
		c.mu.Unlock()
		c.end("remote_bye")
	case sip.OPTIONS:
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
		respond(tx, res, c.log)
	case sip.INVITE:
		c.onReinvite(req, tx)
	case sip.UPDATE:
		c.onUpdate(req, tx)
	case sip.INFO:
		c.onInfo(req, tx)
	case sip.NOTIFY:
		// Refer/dialog NOTIFYs are acknowledged and ignored.
		respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
	default:
		res := sip.NewResponseFromRequest(req, 501, "Not Implemented", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
		respond(tx, res, c.log)
	}
}

func (c *Call) sdpResponse(req *sip.Request, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(c.st.contact.Clone())
	res.AppendHeader(sip.NewHeader("Allow", allowHeader))
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)
	res.SetBody(body)
	return res
}

// isSDP reports whether a body is SDP (it starts with v=).
func isSDP(b []byte) bool {
	return strings.HasPrefix(strings.TrimLeft(string(b[:min(len(b), 8)]), " \r\n"), "v=")
}

func sameUDPAddr(a, b *net.UDPAddr) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Port == b.Port && a.IP.Equal(b.IP)
}

package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Call is an established outgoing call: its dialog and its RTP socket.
type Call struct {
	ua       *UA
	st       *stack
	d        *dialog
	key      string
	log      *zap.Logger
	rtp      *RTPConn
	codec    Codec
	dtmfPT   uint8
	inviteTx sip.ClientTransaction
	sdpID    uint64

	mu        sync.Mutex
	sdpVer    uint64
	ack       *sip.Request  // our ACK to the 2xx, resent on 2xx retransmissions
	reAck     chan struct{} // closed by the ACK of a re-INVITE we answered
	reAckSeq  uint32
	endReason string
	done      chan struct{}
	ended     bool
	closeOnce sync.Once
}

// CallID is the dialog's Call-ID.
func (c *Call) CallID() string { return c.d.callID }

// Codec is the codec the PBX answered: the first of its answer we offered,
// with the PBX's payload type.
func (c *Call) Codec() Codec { return c.codec }

// DTMFPayloadType is the telephone-event payload type of the answer, 0 if none.
func (c *Call) DTMFPayloadType() uint8 { return c.dtmfPT }

// RemoteRTPAddr is where RTP goes now: the answer's address until the first
// packet from the PBX, then that packet's source (symmetric RTP).
func (c *Call) RemoteRTPAddr() *net.UDPAddr { return c.rtp.Remote() }

// LocalRTPAddr is our RTP socket's address.
func (c *Call) LocalRTPAddr() *net.UDPAddr { return c.rtp.LocalAddr() }

// ReadPacket reads the next RTP packet from the PBX (whole packet) into b.
// It returns an error once the call is closed.
func (c *Call) ReadPacket(b []byte) (int, error) { return c.rtp.ReadPacket(b) }

// WritePacket sends one RTP packet to the PBX.
func (c *Call) WritePacket(b []byte) error { return c.rtp.WritePacket(b) }

// Done is closed when the dialog ends: BYE from the PBX, Hangup or Close.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndReason tells why the dialog ended: "remote_bye", "local_bye",
// "closed", "shutdown" or "bad_answer"; "" while it is up.
func (c *Call) EndReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endReason
}

// Hangup sends BYE (unless the dialog already ended), then releases the RTP
// socket. The dialog counts as ended whatever the BYE's outcome
// (RFC 3261 §15.1.1).
func (c *Call) Hangup(ctx context.Context) error {
	return c.hangup(ctx, "local_bye")
}

// Close releases the RTP socket and forgets the dialog without telling the
// PBX (call Hangup first for that). It unblocks ReadPacket and is idempotent.
func (c *Call) Close() error {
	c.end("closed")
	var err error
	c.closeOnce.Do(func() { err = c.rtp.Close() })
	return err
}

func (c *Call) hangup(ctx context.Context, reason string) error {
	defer c.Close()
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		return nil
	}
	bye := c.d.request(sip.BYE, 0)
	bye.AppendHeader(sip.NewHeader("User-Agent", c.ua.cfg.UserAgent))
	tx, err := c.st.client.TransactionRequest(ctx, bye)
	c.end(reason)
	if err != nil {
		return fmt.Errorf("sip: BYE %s: send: %w", c.d.callID, err)
	}
	defer tx.Terminate()
	for i := 0; i < 100; i++ {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			if !res.IsSuccess() {
				return fmt.Errorf("sip: BYE %s: %w", c.d.callID, &FinalError{Code: res.StatusCode, Reason: res.Reason})
			}
			c.log.Debug("sip BYE answered", zap.Int("code", res.StatusCode))
			return nil
		case <-tx.Done():
			err := tx.Err()
			if err == nil {
				err = errors.New("transaction ended")
			}
			return fmt.Errorf("sip: BYE %s: %w", c.d.callID, err)
		case <-ctx.Done():
			return fmt.Errorf("sip: BYE %s: %w", c.d.callID, ctx.Err())
		}
	}
	return fmt.Errorf("sip: BYE %s: too many provisional responses", c.d.callID)
}

// end marks the dialog ended once: Done closes, the UA forgets it.
func (c *Call) end(reason string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.endReason = reason
	close(c.done)
	c.mu.Unlock()
	c.ua.removeCall(c)
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

// onAck takes the ACK of a 2xx we sent to a re-INVITE.
func (c *Call) onAck(req *sip.Request) {
	cs := req.CSeq()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reAck != nil && cs != nil && cs.SeqNo == c.reAckSeq {
		close(c.reAck)
		c.reAck = nil
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
		c.end("remote_bye")
	case sip.OPTIONS:
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
		respond(tx, res, c.log)
	case sip.INVITE:
		c.onReinvite(req, tx)
	case sip.UPDATE:
		c.onUpdate(req, tx)
	case sip.INFO, sip.NOTIFY:
		// SIP INFO DTMF and refer/dialog NOTIFYs are acknowledged and ignored.
		respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
	default:
		res := sip.NewResponseFromRequest(req, 501, "Not Implemented", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
		respond(tx, res, c.log)
	}
}

// answerSDP applies a new offer from the PBX (if any) and returns our SDP for
// the response: the negotiated codec and DTMF, version bumped (RFC 3264 §8).
// ok is false if the offer no longer holds our codec.
func (c *Call) answerSDP(body []byte) (sdp []byte, ok bool) {
	dir := "sendrecv"
	if len(body) > 0 && isSDP(body) {
		info, err := ParseSDP(body)
		if err != nil {
			return nil, false
		}
		if _, found := NegotiateCodec([]Codec{c.codec}, info.Codecs); !found {
			return nil, false
		}
		dir = AnswerDirection(info.Direction)
		if !info.Addr.IP.IsUnspecified() && !sameUDPAddr(info.Addr, c.rtp.Remote()) {
			c.rtp.SetRemote(info.Addr)
		}
	}
	c.mu.Lock()
	c.sdpVer++
	ver := c.sdpVer
	c.mu.Unlock()
	return BuildSDP(SDPParams{
		SessionID: c.sdpID, Version: ver, Host: c.st.host, Port: c.rtp.Port(),
		Codecs: []Codec{c.codec}, DTMFPayloadType: c.dtmfPT, Direction: dir,
	}), true
}

// onReinvite answers a re-INVITE with our SDP (hold handling is a later
// step), then waits for its ACK, retransmitting the 2xx over UDP.
func (c *Call) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	body, ok := c.answerSDP(req.Body())
	if !ok {
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil), c.log)
		return
	}
	res := c.sdpResponse(req, body)
	acked := make(chan struct{})
	c.mu.Lock()
	c.reAck, c.reAckSeq = acked, req.CSeq().SeqNo
	c.mu.Unlock()
	if err := respond2xxUntilAck(tx, res, c.st.transport != "udp", acked, c.done); err != nil {
		c.log.Debug("sip re-INVITE", zap.Error(err))
	}
}

func (c *Call) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	if len(req.Body()) == 0 {
		respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), c.log)
		return
	}
	body, ok := c.answerSDP(req.Body())
	if !ok {
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil), c.log)
		return
	}
	respond(tx, c.sdpResponse(req, body), c.log)
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

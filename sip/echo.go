package sip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// EchoConfig configures an EchoServer.
type EchoConfig struct {
	ListenAddr  string // default "127.0.0.1:0"
	Transport   string // "udp" (default), "tcp" or "tls"
	TLSCertFile string // for tls
	TLSKeyFile  string
	RTPAddress  string // default: host of ListenAddr
	RTPPortMin  int    // even RTP ports from this range; both 0 = any free port
	RTPPortMax  int
	Logger      *zap.Logger
	AnswerDelay time.Duration // ringing time between 180 and 200
	HangupAfter time.Duration // > 0: the echo sends BYE this long after answering
}

// EchoServer is a SIP endpoint (a UAS) that answers every INVITE with
// 180 then 200, choosing the first codec of the offer among PCMU, PCMA, G722
// and opus (plus telephone-event if offered), and sends every RTP packet it
// receives back to its sender with its own SSRC and continuous sequence
// numbers. It serves the demo and load tests: per packet it does not allocate.
type EchoServer struct {
	cfg   EchoConfig
	log   *zap.Logger
	rtpIP net.IP

	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	state int // 0 new, 1 started, 2 closed
	st    *stack
	calls map[string]*echoCall
	wg    sync.WaitGroup
}

type echoCall struct {
	d        *dialog
	key      string
	rtp      *RTPConn
	codec    Codec
	dtmfPT   uint8
	sdpID    uint64
	mu       sync.Mutex
	sdpVer   uint64
	acked    chan struct{} // closed by the ACK of our latest 2xx; nil once closed
	host     string
	stop     chan struct{}
	stopOnce sync.Once
	hangup   *time.Timer
}

// NewEchoServer checks the config; nothing is bound until Start.
func NewEchoServer(cfg EchoConfig) (*EchoServer, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	host, _, err := splitListen(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("echo: %w", err)
	}
	if cfg.RTPAddress == "" {
		cfg.RTPAddress = host
	}
	ip := net.ParseIP(cfg.RTPAddress)
	if ip == nil {
		return nil, fmt.Errorf("echo: rtp address %q is not an IP address", cfg.RTPAddress)
	}
	if cfg.RTPPortMin != 0 || cfg.RTPPortMax != 0 {
		if cfg.RTPPortMin < 1 || cfg.RTPPortMax > 65535 || cfg.RTPPortMax <= cfg.RTPPortMin {
			return nil, fmt.Errorf("echo: bad rtp port range %d-%d", cfg.RTPPortMin, cfg.RTPPortMax)
		}
	}
	if cfg.Transport, err = normTransport(cfg.Transport); err != nil {
		return nil, fmt.Errorf("echo: transport: %w", err)
	}
	if cfg.Transport == "tls" && (cfg.TLSCertFile == "" || cfg.TLSKeyFile == "") {
		return nil, errors.New("echo: transport tls needs TLSCertFile and TLSKeyFile")
	}
	if cfg.AnswerDelay < 0 || cfg.HangupAfter < 0 {
		return nil, errors.New("echo: negative AnswerDelay or HangupAfter")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &EchoServer{cfg: cfg, log: cfg.Logger, rtpIP: ip, ctx: ctx, cancel: cancel, calls: map[string]*echoCall{}}, nil
}

// Start binds the UDP listener and returns once bound.
func (e *EchoServer) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return errors.New("echo: already started or closed")
	}
	st, err := newStack(ctx, stackConfig{
		listenAddr: e.cfg.ListenAddr, transport: e.cfg.Transport, certFile: e.cfg.TLSCertFile, keyFile: e.cfg.TLSKeyFile,
		userAgent: "wagateway-echo", log: e.log,
	}, func(srv *sipgo.Server) {
		srv.OnInvite(e.onInvite)
		srv.OnAck(e.onAck)
		srv.OnBye(e.onBye)
		srv.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) {
			// A CANCEL matching a pending INVITE is answered by sipgo's
			// transaction layer (200, then 487); any other is stray.
			respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil), e.log)
		})
		srv.OnInfo(e.onInfo)
		srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
			respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), e.log)
		})
	})
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	e.st = st
	e.state = 1
	return nil
}

// Addr is the bound host:port.
func (e *EchoServer) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st == nil {
		return ""
	}
	return e.st.addr
}

// ActiveCalls is the number of calls ringing or answered and not yet ended.
func (e *EchoServer) ActiveCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.calls)
}

// Close ends every call (BYE, best effort within a second), stops listening
// and waits for its goroutines. It is idempotent.
func (e *EchoServer) Close() error {
	e.mu.Lock()
	if e.state == 2 {
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	calls := make([]*echoCall, 0, len(e.calls))
	for _, c := range e.calls {
		calls = append(calls, c)
	}
	st := e.st
	e.mu.Unlock()

	if st != nil && len(calls) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var wg sync.WaitGroup
		for _, c := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.bye(ctx, c)
			}()
		}
		wg.Wait()
		cancel()
	}
	e.cancel()
	e.wg.Wait()
	if st != nil {
		st.close()
	}
	return nil
}

// track registers a goroutine Close waits for; false once closing.
func (e *EchoServer) track() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 1 {
		return false
	}
	e.wg.Add(1)
	return true
}

func (e *EchoServer) lookup(req *sip.Request) *echoCall {
	key := requestKey(req)
	if key == "" {
		return nil
	}
	e.mu.Lock()
	c := e.calls[key]
	e.mu.Unlock()
	if c == nil || !c.d.matches(req) {
		return nil
	}
	return c
}

func (e *EchoServer) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if !e.track() {
		respond(tx, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil), e.log)
		return
	}
	defer e.wg.Done()
	if requestKey(req) != "" {
		e.onReinvite(req, tx)
		return
	}
	log := e.log.With(zap.String("sip_call_id", callIDOf(req)))
	info, err := ParseSDP(req.Body())
	if err != nil {
		log.Debug("echo: bad offer", zap.Error(err))
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil), e.log)
		return
	}
	codec, ok := NegotiateCodec(SupportedCodecs(), info.Codecs)
	if !ok {
		respond(tx, sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil), e.log)
		return
	}
	rtp, err := ListenRTP(e.rtpIP, e.cfg.RTPPortMin, e.cfg.RTPPortMax)
	if err != nil {
		log.Warn("echo: no RTP port", zap.Error(err))
		respond(tx, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil), e.log)
		return
	}
	rtp.SetPayloadTypes(streamPTs(codec, info.DTMFPayloadType)...)
	rtp.SetRemote(info.Addr)
	tag := randHex(8)
	d, err := uasDialog(req, tag, e.st.contact.Clone())
	if err != nil {
		rtp.Close()
		respond(tx, sip.NewResponseFromRequest(req, 400, "Bad Request", nil), e.log)
		return
	}
	host := e.rtpIP.String()
	if e.rtpIP.IsUnspecified() {
		host = e.st.host
	}
	acked := make(chan struct{})
	c := &echoCall{
		d: d, key: dialogKey(d.callID, tag), rtp: rtp, codec: codec, dtmfPT: info.DTMFPayloadType,
		sdpID: randUint64() >> 1, acked: acked, host: host, stop: make(chan struct{}),
	}
	e.mu.Lock()
	e.calls[c.key] = c
	e.mu.Unlock()

	ringing := e.response(req, c, 180, "Ringing", nil)
	respond(tx, ringing, e.log)

	cancelled := make(chan struct{})
	var cancelOnce sync.Once
	tx.OnCancel(func(*sip.Request) { cancelOnce.Do(func() { close(cancelled) }) })
	delay := time.NewTimer(e.cfg.AnswerDelay)
	defer delay.Stop()
	select {
	case <-delay.C:
	case <-cancelled:
		log.Debug("echo: INVITE cancelled")
		e.end(c)
		return
	case <-tx.Done():
		e.end(c)
		return
	case <-e.ctx.Done():
		respond(tx, sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil), e.log)
		e.end(c)
		return
	}

	if !e.track() {
		e.end(c)
		return
	}
	go func() {
		defer e.wg.Done()
		echoLoop(c)
	}()
	ok200 := e.response(req, c, 200, "OK", c.sdp(info.Direction))
	if _, err := respond2xxUntilAck(tx, ok200, e.st.transport != "udp", acked, c.stop, nil); err != nil {
		log.Debug("echo: answer not confirmed", zap.Error(err))
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		e.bye(ctx, c)
		cancel()
		return
	}
	log.Debug("echo: call answered", zap.String("codec", codec.Name))
	if e.cfg.HangupAfter > 0 {
		c.mu.Lock()
		c.hangup = time.AfterFunc(e.cfg.HangupAfter, func() {
			if !e.track() {
				return
			}
			defer e.wg.Done()
			ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
			defer cancel()
			e.bye(ctx, c)
		})
		c.mu.Unlock()
	}
}

// onReinvite answers an in-dialog INVITE with the same media, version bumped.
func (e *EchoServer) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	c := e.lookup(req)
	if c == nil {
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil), e.log)
		return
	}
	dir := "sendrecv"
	if info, err := ParseSDP(req.Body()); err == nil {
		dir = info.Direction
		if !info.Addr.IP.IsUnspecified() {
			c.rtp.SetRemote(info.Addr)
		}
	}
	res := e.response(req, c, 200, "OK", c.sdp(dir))
	acked := make(chan struct{})
	c.mu.Lock()
	c.acked = acked
	c.mu.Unlock()
	if _, err := respond2xxUntilAck(tx, res, e.st.transport != "udp", acked, c.stop, nil); err != nil {
		e.log.Debug("echo: re-INVITE not confirmed", zap.Error(err))
	}
}

func (e *EchoServer) onAck(req *sip.Request, _ sip.ServerTransaction) {
	if c := e.lookup(req); c != nil {
		c.mu.Lock()
		if c.acked != nil {
			close(c.acked)
			c.acked = nil
		}
		c.mu.Unlock()
	}
}

// onInfo takes DTMF INFO in a call's dialog: 200 for a digit (which the
// echo has no use for), otherwise as readInfoDigit says.
func (e *EchoServer) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	if e.lookup(req) == nil {
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil), e.log)
		return
	}
	digit, _, res, _ := readInfoDigit(req)
	if res == nil {
		e.log.Debug("echo: INFO digit", zap.String("digit", string(digit)))
		res = sip.NewResponseFromRequest(req, 200, "OK", nil)
	}
	respond(tx, res, e.log)
}

func (e *EchoServer) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := e.lookup(req)
	if c == nil {
		respond(tx, sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil), e.log)
		return
	}
	respond(tx, sip.NewResponseFromRequest(req, 200, "OK", nil), e.log)
	e.end(c)
}

// bye ends a call from our side.
func (e *EchoServer) bye(ctx context.Context, c *echoCall) {
	if !e.end(c) {
		return
	}
	if _, err := doRequest(ctx, e.st, c.d.request(sip.BYE, 0)); err != nil {
		e.log.Debug("echo: BYE", zap.Error(err))
	}
}

// end stops a call's media and forgets it; false if it had already ended.
func (e *EchoServer) end(c *echoCall) bool {
	e.mu.Lock()
	_, live := e.calls[c.key]
	delete(e.calls, c.key)
	e.mu.Unlock()
	c.stopOnce.Do(func() {
		close(c.stop)
		c.mu.Lock()
		if c.hangup != nil {
			c.hangup.Stop()
		}
		c.mu.Unlock()
		_ = c.rtp.Close()
	})
	return live
}

// response builds a response in the call's dialog (our To tag, Contact).
func (e *EchoServer) response(req *sip.Request, c *echoCall, code int, reason string, sdp []byte) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil {
		to.Params.Add("tag", c.d.localTag())
	}
	res.AppendHeader(e.st.contact.Clone())
	if sdp != nil {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
		res.SetBody(sdp)
	}
	return res
}

// sdp is the echo's answer: the chosen codec and DTMF, version bumped.
func (c *echoCall) sdp(offeredDir string) []byte {
	c.mu.Lock()
	c.sdpVer++
	v := c.sdpVer
	c.mu.Unlock()
	return BuildSDP(SDPParams{
		SessionID: c.sdpID, Version: v, Host: c.host, Port: c.rtp.Port(),
		Codecs: []Codec{c.codec}, DTMFPayloadType: c.dtmfPT, Direction: AnswerDirection(offeredDir),
	})
}

// echoLoop sends every RTP packet back to its source, rewritten with our
// SSRC, a continuous sequence number and the sender's timing shifted to our
// timestamp base. One buffer per call; nothing is allocated per packet.
func echoLoop(c *echoCall) {
	buf := make([]byte, 1500)
	ssrc := randUint32()
	seq := uint16(randUint32())
	tsBase := randUint32()
	var tsOffset uint32
	first := true
	for {
		n, src, err := c.rtp.ReadPacketFrom(buf)
		if err != nil {
			return // socket closed: the call ended
		}
		p := buf[:n]
		ts := binary.BigEndian.Uint32(p[4:8])
		if first {
			tsOffset = tsBase - ts
			first = false
		}
		binary.BigEndian.PutUint16(p[2:4], seq)
		binary.BigEndian.PutUint32(p[4:8], ts+tsOffset)
		binary.BigEndian.PutUint32(p[8:12], ssrc)
		seq++
		_ = c.rtp.WritePacketTo(p, src)
	}
}

func callIDOf(req *sip.Request) string {
	if cid := req.CallID(); cid != nil {
		return cid.Value()
	}
	return ""
}

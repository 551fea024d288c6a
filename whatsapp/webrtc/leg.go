package webrtc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp/webrtc/dtlssrtp"
)

// ErrLegClosed is returned by reads and writes on a closed Leg.
var ErrLegClosed = errors.New("webrtc: leg closed")

// ErrCallerClosed is the failure of a leg whose WhatsApp side (the caller,
// or the user a business-initiated call reached) closed the DTLS
// connection (close_notify): how a normal hang-up looks from the media
// side, often just before Meta's terminate webhook.
var ErrCallerClosed = errors.New("webrtc: the caller closed the DTLS connection")

const (
	maxDatagram          = 1500
	dtlsHandshakeTimeout = 15 * time.Second

	// legRing is the bytes of packets from WhatsApp that may wait for the
	// bridge (byteRing): 16 KiB of entries at any time, plus the end a
	// wrap may skip (shorter than one entry of ringHdr+maxDatagram). A
	// WhatsApp packet is 20 ms of Opus (SILK-WB, 40-120 bytes) with a
	// 12-byte RTP header, 12 bytes of header extensions (audio level,
	// abs-send-time, transport-cc) and a 10-byte SRTP tag: 74-154 bytes,
	// 76-156 in the ring. So the leg rides out a stall of its reader (the
	// bridge, or the whole machine) of at least 2 s (105 packets of 156
	// bytes; 3.2 s of 100-byte packets, 4.4 s of the load run's 72-byte
	// ones), and still 200 ms of MTU-size packets (10 of 1500 bytes),
	// where 8 fixed slots of 1500 bytes (12 KiB) held 160 ms whatever the
	// size: with the gateway stopped 1 s every 3 s, 8 slots lost 23 % of
	// the callers' packets, the ring none (docs/performance.md, Stalls).
	// 17.5 KiB a leg, next to about 300 KiB of RSS a transcoded call.
	legRing = 16<<10 + ringHdr + maxDatagram
)

// Leg is one call's WebRTC media leg toward WhatsApp: the answer to the
// caller's offer (Answer), or our offer and its answer (Offer, SetAnswer),
// ICE on the shared port (ice.go), DTLS-SRTP (client when we answer; as
// the answer's a=setup says when we offer), the Opus or G.711 (+
// telephone-event) stream in and one SSRC out. Both kinds behave alike once started.
//
// Per packet: the socket's reader copies an SRTP packet into the leg's
// queue and tells the bridge's media worker (SetOnPacket), or wakes a
// reader goroutine, which decrypts it (TryReadPacket, ReadPacket);
// WritePacket encrypts and sends on the caller's goroutine (the bridge's
// pacer). No allocation, no other goroutine, no lock another call takes.
type Leg struct {
	media *Media
	ice   *iceAgent
	// remote is the peer's SDP: the offer answered, or (an offered leg)
	// the answer once SetAnswer took it.
	remote atomic.Pointer[remoteDesc]
	answer string     // our answer; "" on an offered leg
	local  *localDesc // our offer; nil on an answering leg
	offer  string     // our offer's text; "" on an answering leg
	ssrc   uint32
	log    *zap.Logger
	// dtlsClient is our DTLS role (RFC 5763 §5), set before start.
	dtlsClient bool

	connected chan struct{}
	failed    chan struct{}
	closed    chan struct{}
	// isClosed is set as closed closes: the media path checks it with one
	// atomic load, where a select on closed cost 2 % of the CPU at 1000
	// calls.
	isClosed  atomic.Bool
	connOnce  sync.Once
	failOnce  sync.Once
	closeOnce sync.Once
	failErr   atomic.Pointer[error]
	life      sync.Mutex // orders starting goroutines against Close
	ending    bool
	answered  bool // SetAnswer was called (under life)
	wg        sync.WaitGroup

	// Set once the pair is selected (before ready), read by the writers.
	pair  atomic.Pointer[icePair]
	pipe  atomic.Pointer[dtlssrtp.Pipe]
	dconn atomic.Pointer[dtls.Conn]
	// ready is set once SRTP is keyed: tx and rx are in place.
	ready atomic.Bool
	tx    *srtp.Context // the writer's
	rx    *srtp.Context // the reader's

	// The queue from the socket's reader (producer, under prodMu) to
	// ReadPacket (consumer): a single-producer single-consumer ring of
	// whole SRTP packets, in ringBuf.
	ring    byteRing
	ringBuf [legRing]byte
	prodMu  sync.Mutex
	wake    chan struct{}
	// onPacket, when set (SetOnPacket), is called after each push instead
	// of waking ReadPacket: a media worker reads the ring.
	onPacket atomic.Pointer[func()]

	// The reader's own.
	rhdr rtp.Header
	// The writer's own.
	whdr    rtp.Header
	out     [maxDatagram + 64]byte
	rtcp    rtcpSender
	rtcpHdr rtcp.Header

	sent, dropped, early, badSRTP, overflow atomic.Uint64
}

// Answer answers the caller's offer: Opus/48000 + telephone-event/8000 with
// the offer's payload types (OpusPayloadType, DTMFPayloadType), DTLS client
// (a=setup:active), a full ICE agent with our host candidates inside the
// answer (the Cloud API does not trickle). ICE starts at once; Connected
// closes once DTLS-SRTP is up.
func (m *Media) Answer(ctx context.Context, offerSDP string, log *zap.Logger) (*Leg, error) {
	return m.AnswerWith(ctx, offerSDP, CodecOpus, log)
}

// AnswerWith is Answer with the audio codec named: CodecOpus, or CodecPCMU
// or CodecPCMA when the offer has it (Meta offers them when the number's
// audio.additional_codecs lists them). The answer then lists that codec
// alone beside telephone-event, on the offer's payload type (Codec).
func (m *Media) AnswerWith(ctx context.Context, offerSDP, codec string, log *zap.Logger) (*Leg, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("webrtc: answer: %w", err)
	}
	o, err := parseOffer(offerSDP)
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	c, ok := pick(o.audio, codec)
	if !ok {
		return nil, fmt.Errorf("webrtc: answer with %s: the offer has no such codec (it has %v)", codec, o.audio)
	}
	o.chosen = c
	l := m.newLeg(log)
	if err := l.setRemote(o, false); err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	l.dtlsClient = true // our a=setup:active (RFC 5763 §5)
	l.answer = m.buildAnswer(o, l.ice.localUfrag, l.ice.localPwd, l.ssrc)
	l.start()
	return l, nil
}

// newLeg makes a leg with its own ICE credentials and SSRC, not yet
// reachable nor started.
func (m *Media) newLeg(log *zap.Logger) *Leg {
	if log == nil {
		log = m.log
	}
	l := &Leg{
		media:     m,
		ssrc:      randomSSRC(),
		log:       log,
		connected: make(chan struct{}),
		failed:    make(chan struct{}),
		closed:    make(chan struct{}),
		wake:      make(chan struct{}, 1),
	}
	l.ring.init(l.ringBuf[:])
	l.ice = newICEAgent(l, m.mux, m.timing, m.tieBreaker, log)
	l.ice.onSelected = l.startDTLS
	l.ice.onSwitched = l.movePair
	l.rtcp.init(l.ssrc)
	return l
}

// setRemote takes the peer's description r (weOffer: r answers our offer)
// for ICE and the payload types.
func (l *Leg) setRemote(r *remoteDesc, weOffer bool) error {
	l.ice.setRemote(r, startsControlling(weOffer, r), l.media.sockets)
	if len(l.ice.pairs) == 0 {
		what := "offer"
		if weOffer {
			what = "answer"
		}
		return fmt.Errorf("the %s has no candidate of an address family we listen on", what)
	}
	l.remote.Store(r)
	return nil
}

// start makes the leg reachable by its ufrag and runs ICE (the caller
// holds life, or the leg is not yet shared).
func (l *Leg) start() {
	l.media.mux.addLeg(l)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := l.ice.run(l.closed); err != nil {
			l.fail(err)
		}
	}()
}

// AnswerSDP is the SDP answer sent in both pre_accept and accept (Meta rejects
// an accept whose SDP differs). It is "" on an offered leg (Offer), whose
// SDP is OfferSDP.
func (l *Leg) AnswerSDP() string { return l.answer }

// SSRC is the one SSRC of every packet toward WhatsApp.
func (l *Leg) SSRC() uint32 { return l.ssrc }

// Codec is the audio codec the leg runs, with its payload type: the
// offer's, which our answer keeps (RFC 3264 §6.1), or on an offered leg
// the one the answer picked (ours first until the answer is set). Packets
// are read and must be written with it, as negotiated; the leg renumbers
// nothing.
func (l *Leg) Codec() Codec {
	if r := l.remote.Load(); r != nil {
		return r.chosen
	}
	return l.local.codecs[0] // an offered leg before its answer
}

// OpusPayloadType is the payload type for opus/48000/2 when the leg runs
// Opus (Codec), 0 when it runs G.711.
func (l *Leg) OpusPayloadType() uint8 {
	if c := l.Codec(); c.Name == CodecOpus {
		return c.PayloadType
	}
	return 0
}

// DTMFPayloadType is the payload type for telephone-event/8000 (RFC
// 4733), found like OpusPayloadType; 0 when the offer, or the answer to
// ours, has none.
func (l *Leg) DTMFPayloadType() uint8 {
	if r := l.remote.Load(); r != nil {
		return r.dtmfPT
	}
	return l.local.dtmfPT
}

// Connected is closed once ICE and DTLS are up.
func (l *Leg) Connected() <-chan struct{} { return l.connected }

// Failed is closed when ICE, DTLS or consent fails, or the leg closes.
func (l *Leg) Failed() <-chan struct{} { return l.failed }

// Err says why the leg failed (nil while it has not).
func (l *Leg) Err() error {
	if e := l.failErr.Load(); e != nil {
		return *e
	}
	return nil
}

func (l *Leg) fail(err error) {
	l.failOnce.Do(func() {
		l.failErr.Store(&err)
		switch {
		case errors.Is(err, ErrLegClosed):
		case errors.Is(err, ErrCallerClosed):
			l.log.Info("webrtc: the caller closed the connection", zap.Error(err)) // a hang-up, as a rule
		default:
			l.log.Warn("webrtc: leg failed", zap.Error(err))
		}
		close(l.failed)
	})
}

// startDTLS runs the DTLS handshake on the selected pair, in our role
// (dtlsClient), and keys SRTP (RFC 5764); the peer's certificate must
// match its SDP's fingerprint.
func (l *Leg) startDTLS(p icePair) {
	l.life.Lock()
	defer l.life.Unlock()
	if l.ending {
		return
	}
	l.pair.Store(&p)
	local := net.UDPAddrFromAddrPort(p.sock.local)
	remote := net.UDPAddrFromAddrPort(p.remote)
	pipe := dtlssrtp.NewPipe(local, remote, func(b []byte) error {
		cur := l.pair.Load()
		return cur.sock.writeTo(b, cur.remote)
	})
	l.pipe.Store(pipe)
	p.sock.bind(p.remote, l)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := l.handshake(pipe); err != nil {
			l.fail(err)
		}
	}()
}

// movePair sends and takes media on another pair from now on.
func (l *Leg) movePair(p icePair) {
	l.life.Lock()
	defer l.life.Unlock()
	if l.ending {
		return
	}
	old := l.pair.Swap(&p)
	p.sock.bind(p.remote, l)
	if old != nil && *old != p {
		old.sock.unbind(old.remote, l)
	}
}

func (l *Leg) handshake(pipe *dtlssrtp.Pipe) error {
	fingerprint := l.remote.Load().fingerprint
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{l.media.cert.TLS},
		SRTPProtectionProfiles: dtlssrtp.Profiles,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		// The certificate is self-signed: it is checked against the peer's
		// SDP fingerprint instead (RFC 8122 §5).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return dtlssrtp.CheckFingerprint(raw, fingerprint)
		},
	}
	var dc *dtls.Conn
	var err error
	if l.dtlsClient {
		dc, err = dtls.Client(pipe, pipe.RemoteAddr(), cfg)
	} else {
		// The answerer chose a=setup:active (RFC 5763 §5): we are the
		// server, and ask the client for its certificate, checked against
		// its fingerprint (both ends authenticate: RFC 5763 §5, RFC 8122
		// §5).
		cfg.ClientAuth = dtls.RequireAnyClientCert
		dc, err = dtls.Server(pipe, pipe.RemoteAddr(), cfg)
	}
	if err != nil {
		return fmt.Errorf("webrtc: dtls: %w", err)
	}
	l.dconn.Store(dc)
	select {
	case <-l.closed: // Close may have missed dc
		_ = dc.Close()
		return ErrLegClosed
	default:
	}
	tx, rx, err := dtlssrtp.Keys(dc, l.dtlsClient, dtlsHandshakeTimeout, l.closed)
	if err != nil {
		return fmt.Errorf("webrtc: %w", err)
	}
	l.tx, l.rx = tx, rx
	l.ready.Store(true)
	l.connOnce.Do(func() { close(l.connected) })
	l.log.Debug("webrtc: connected")
	// No application data comes over DTLS; reading it is how a close_notify
	// (the caller leaving) is heard at once, not only when consent runs out.
	l.wg.Add(1) // the handshake goroutine's count keeps it above zero
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 256)
		for {
			if _, err := dc.Read(buf); err != nil {
				select {
				case <-l.closed:
				default:
					l.fail(fmt.Errorf("%w: %w", ErrCallerClosed, err))
				}
				return
			}
		}
	}()
	return nil
}

// deliver takes one non-STUN datagram from the selected pair (the
// socket's reader goroutine).
func (l *Leg) deliver(p []byte) {
	switch b := p[0]; {
	case b >= 20 && b < 64: // DTLS (RFC 7983)
		if pipe := l.pipe.Load(); pipe != nil {
			pipe.Deliver(p)
		}
	case b >= 128 && b < 192: // RTP or RTCP
		if len(p) < 12 {
			return
		}
		if pt := p[1]; pt >= 192 && pt <= 223 { // RTCP (RFC 5761 §4): not read
			return
		}
		if !l.ready.Load() {
			l.early.Add(1)
			return
		}
		// One producer at a time: the selected pair's socket reader, and
		// for an instant two when a controlling browser moves the call to
		// a pair on another socket. The lock is this call's alone.
		l.prodMu.Lock()
		ok := l.ring.push(p)
		l.prodMu.Unlock()
		if !ok {
			l.overflow.Add(1) // the bridge is seconds behind (legRing): drop the newest
			return
		}
		if f := l.onPacket.Load(); f != nil {
			(*f)()
			return
		}
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// ReadPacket returns the next decrypted RTP packet from WhatsApp, with the
// payload type the peer sent (the negotiated ones: Codec, DTMFPayloadType). It waits for DTLS; it fails once the leg is closed. One
// reader at a time.
func (l *Leg) ReadPacket(b []byte) (int, error) {
	select {
	case <-l.connected:
	case <-l.closed:
		return 0, ErrLegClosed
	}
	for {
		pkt, ok := l.ring.front()
		if !ok {
			select {
			case <-l.wake:
				continue
			case <-l.closed:
				return 0, ErrLegClosed
			}
		}
		out, err := l.rx.DecryptRTP(b[:0], pkt, &l.rhdr)
		l.ring.pop()
		if err != nil || len(out) > len(b) {
			l.badSRTP.Add(1) // forged, replayed or cut: dropped
			continue
		}
		l.rtcp.received(l.rhdr.SSRC, l.rhdr.SequenceNumber)
		return len(out), nil
	}
}

// TryReadPacket is ReadPacket that never waits: it returns 0 and no error
// when no packet is queued (or DTLS is not up yet). One reader at a time.
func (l *Leg) TryReadPacket(b []byte) (int, error) {
	for {
		pkt, ok := l.ring.front()
		if !ok {
			if l.isClosed.Load() {
				return 0, ErrLegClosed
			}
			return 0, nil
		}
		// Packets are queued only once SRTP is keyed (deliver), so rx is set.
		out, err := l.rx.DecryptRTP(b[:0], pkt, &l.rhdr)
		l.ring.pop()
		if err != nil || len(out) > len(b) {
			l.badSRTP.Add(1) // forged, replayed or cut: dropped
			continue         // bounded: the ring holds at most legRing bytes
		}
		l.rtcp.received(l.rhdr.SSRC, l.rhdr.SequenceNumber)
		return len(out), nil
	}
}

// SetOnPacket has the leg call f after queuing each packet from WhatsApp
// (on the shared socket's reader goroutine; f must return at once) instead
// of waking a ReadPacket: the media worker that reads the leg with
// TryReadPacket learns so that it has packets. nil goes back to waking.
func (l *Leg) SetOnPacket(f func()) {
	if f == nil {
		l.onPacket.Store(nil)
		return
	}
	l.onPacket.Store(&f)
}

// WritePacket sends one RTP packet (header as built by the bridge, with this
// leg's SSRC and the negotiated payload types) toward WhatsApp, unchanged but
// for SRTP. Before DTLS is up the packet is dropped. One writer at a time.
func (l *Leg) WritePacket(b []byte) error {
	if l.isClosed.Load() {
		return ErrLegClosed
	}
	if !l.ready.Load() {
		l.dropped.Add(1)
		return nil
	}
	if _, err := l.whdr.Unmarshal(b); err != nil {
		return fmt.Errorf("webrtc: write: bad rtp packet: %w", err)
	}
	p := l.pair.Load()
	enc, err := l.tx.EncryptRTP(l.out[:0], b, &l.whdr)
	if err != nil {
		return fmt.Errorf("webrtc: write: srtp: %w", err)
	}
	if err := p.sock.writeTo(enc, p.remote); err != nil {
		l.dropped.Add(1)
		return nil // a full socket buffer loses a packet, not the call
	}
	l.sent.Add(1)
	if l.rtcp.sent(&l.whdr, len(b)-l.whdr.MarshalSize()) {
		l.sendRTCP(p)
	}
	return nil
}

// sendRTCP sends a sender report (RFC 3550 §6.4.1) on the writer's
// goroutine: WebRTC endpoints must send RTCP (RFC 8834 §5.1).
func (l *Leg) sendRTCP(p *icePair) {
	plain := l.rtcp.report(time.Now())
	enc, err := l.tx.EncryptRTCP(l.out[:0], plain, &l.rtcpHdr)
	if err != nil {
		return
	}
	_ = p.sock.writeTo(enc, p.remote)
}

// Sent and Dropped count packets sent toward WhatsApp and packets dropped
// before the transport was up (or by a full socket buffer).
func (l *Leg) Sent() uint64    { return l.sent.Load() }
func (l *Leg) Dropped() uint64 { return l.dropped.Load() }

// Close tears the leg down (DTLS close_notify to the caller); reads and
// writes fail after it.
func (l *Leg) Close() error {
	l.closeOnce.Do(func() {
		l.life.Lock()
		l.ending = true
		l.life.Unlock()
		l.isClosed.Store(true)
		close(l.closed)
		l.fail(ErrLegClosed)
		l.ice.stop()
		l.media.mux.removeLeg(l)
		if dc := l.dconn.Load(); dc != nil {
			_ = dc.Close()
		}
		if pipe := l.pipe.Load(); pipe != nil {
			_ = pipe.Close()
		}
		l.wg.Wait()
		if p := l.pair.Load(); p != nil {
			p.sock.unbind(p.remote, l)
		}
		if n := l.badSRTP.Load() + l.overflow.Load() + l.early.Load(); n > 0 {
			l.log.Debug("webrtc: packets not delivered", zap.Uint64("bad_srtp", l.badSRTP.Load()),
				zap.Uint64("overflow", l.overflow.Load()), zap.Uint64("before_dtls", l.early.Load()))
		}
	})
	return nil
}

func randomSSRC() uint32 { return rand.Uint32() | 1 } // never 0

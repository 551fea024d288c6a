package wasim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"

	"github.com/wagateway/wagateway/whatsapp/webrtc/dtlssrtp"
)

// The lite media leg is the WhatsApp user's side of a call in the form load
// runs need: cheap enough that hundreds of them cost the generator far less
// than the gateway under test. It does exactly what Meta's side does on the
// wire and nothing more:
//
//   - ICE-lite: one host candidate, and a STUN Binding success for every
//     check the business sends with our credentials (it never sends checks
//     itself); the first valid check fixes the business's address, and the
//     pair never changes;
//   - DTLS server (the business answers a=setup:active), ECDSA certificate,
//     the client's certificate checked against the answer's fingerprint;
//   - SRTP with the keys DTLS exports, on the same UDP socket (rtcp-mux);
//     the business's RTCP is read and ignored.
//
// There is no pion PeerConnection, no interceptor, no jitter buffer and no
// per-packet allocation: one socket per call, read either by a goroutine
// of its own or, on Linux, by one poller for every leg of a run (epoll,
// lite_poll_linux.go), which wakes at most once a millisecond whatever the
// number of calls; the sending is done by the load run's shared sender
// (load.go). Packets are timestamped by the kernel on arrival
// (SO_TIMESTAMPNS where available), so neither the poller's pause nor the
// generator's own scheduling delays count as the gateway's.

const (
	liteHandshakeTimeout = 15 * time.Second
	liteAnswerWait       = 10 * time.Second // how long the DTLS check waits for the answer's fingerprint
	liteMaxPacket        = 1500
)

// newLiteCert makes the DTLS certificate every lite leg of a run presents,
// once (Meta's is per call; the business cannot tell the difference).
func newLiteCert() (*dtlssrtp.Certificate, error) { return dtlssrtp.NewCertificate("wasim") }

// rtpHandler takes one decrypted RTP packet (header parsed, payload in
// place) and its arrival time in Unix nanoseconds. It runs on the leg's
// reader goroutine; payload is reused once it returns.
type rtpHandler func(h *rtp.Header, payload []byte, arrival int64)

// liteSock is a leg's UDP socket: a net.UDPConn read by the leg's own
// goroutine, or a raw socket read by a litePoller.
type liteSock interface {
	writeTo(b []byte, dst netip.AddrPort) error
	close() error
}

// udpSock is the portable liteSock.
type udpSock struct{ c *net.UDPConn }

func (u udpSock) writeTo(b []byte, dst netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, dst)
	return err
}

func (u udpSock) close() error { return u.c.Close() }

// liteLeg is one call's lite media leg.
type liteLeg struct {
	sock       liteSock
	poller     *litePoller // nil: the leg reads its socket itself
	local      netip.AddrPort
	ufrag, pwd string
	ssrc       uint32
	cert       *dtlssrtp.Certificate
	kernelTS   bool
	onRTP      rtpHandler

	// g711 is the G.711 codecs the offer lists beside Opus (the number's
	// audio.additional_codecs); set before offer.
	g711      []string
	answered  chan struct{} // closed by setAnswer
	answerMu  sync.Mutex
	answerErr error
	remoteFP  []byte // sha-256 of the business's certificate, from the answer
	// audioPT is the payload type + 1 of the audio codec the answer picked
	// (0 before the answer): Opus 111, or a G.711 codec offered.
	audioPT atomic.Uint32

	remote  atomic.Pointer[netip.AddrPort] // fixed by the first valid ICE check
	pipe    atomic.Pointer[dtlssrtp.Pipe]
	dtlsGo  sync.Once
	ready   chan struct{} // closed once SRTP keys are in place
	failed  chan struct{} // closed if ICE/DTLS fails
	failMu  sync.Mutex
	failErr error
	tx      *srtp.Context                // the sender's, after ready
	rxCtx   atomic.Pointer[srtp.Context] // the reader's
	dconn   atomic.Pointer[dtls.Conn]

	// Counters, written by the reader.
	stunChecks, rtcpIn, earlyRTP, badSRTP atomic.Uint64

	// The reader's own (the leg's goroutine, or the poller).
	rx    *srtp.Context
	hdr   rtp.Header
	msg   stun.Message
	plain []byte

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// newLiteLeg binds the leg's UDP socket on ip and starts reading it: with
// poller, by the poller; without, by a goroutine of its own.
func newLiteLeg(ip net.IP, cert *dtlssrtp.Certificate, onRTP rtpHandler, poller *litePoller) (*liteLeg, error) {
	l := &liteLeg{
		ufrag:    randomAlnum(12) + "/" + randomAlnum(1), // Meta's ufrags hold a '/'
		pwd:      randomAlnum(24),
		ssrc:     mrand.Uint32() | 1,
		cert:     cert,
		onRTP:    onRTP,
		poller:   poller,
		answered: make(chan struct{}),
		ready:    make(chan struct{}),
		failed:   make(chan struct{}),
		closed:   make(chan struct{}),
		plain:    make([]byte, liteMaxPacket),
	}
	if poller != nil && ip.To4() != nil {
		// add sets l.sock and l.local before the poller can see the leg.
		if err := poller.add(ip, l); err != nil {
			return nil, fmt.Errorf("wasim: lite leg: %w", err)
		}
		return l, nil
	}
	l.poller = nil
	network := "udp4"
	if ip.To4() == nil {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		return nil, fmt.Errorf("wasim: lite leg: %w", err)
	}
	_ = conn.SetReadBuffer(256 << 10)
	la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	l.sock = udpSock{conn}
	l.local = netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
	l.kernelTS = enableRxTimestamps(conn)
	l.wg.Add(1)
	go l.readLoop(conn)
	return l, nil
}

// offer is the SDP offer in the shape of Meta's (Meta, WhatsApp Cloud API
// Calling, the connect webhook's example offer): ICE-lite, one host candidate, actpass, Opus/111
// (and l.g711 on 0, 8) and telephone-event/126, rtcp-mux, BUNDLE, one SSRC.
func (l *liteLeg) offer() string {
	formats, rtpmaps := offerFormats(l.g711)
	ip := l.local.Addr()
	fam := "IP4"
	if ip.Is6() {
		fam = "IP6"
	}
	port := strconv.Itoa(int(l.local.Port()))
	cname := "WhatsAppAudioStream" + strconv.FormatUint(uint64(l.ssrc%1000), 10)
	lines := []string{
		"v=0",
		"o=- " + strconv.FormatUint(mrand.Uint64N(1e15)+1e15, 10) + " 2 IN " + fam + " " + ip.String(),
		"s=-",
		"t=0 0",
		"a=group:BUNDLE audio",
		"a=msid-semantic: WMS WhatsAppTrack1",
		"a=ice-lite",
		"m=audio " + port + " UDP/TLS/RTP/SAVPF " + formats,
		"c=IN " + fam + " " + ip.String(),
		"a=rtcp:9 IN IP4 0.0.0.0",
		"a=candidate:1 1 udp 2113937151 " + ip.String() + " " + port + " typ host ufrag " + l.ufrag + " generation 0",
		"a=ice-ufrag:" + l.ufrag,
		"a=ice-pwd:" + l.pwd,
		"a=fingerprint:" + l.cert.Fingerprint,
		"a=setup:actpass",
		"a=mid:audio",
		"a=sendrecv",
		"a=rtcp-mux",
	}
	lines = append(lines, rtpmaps...)
	lines = append(lines,
		"a=ssrc:"+strconv.FormatUint(uint64(l.ssrc), 10)+" cname:"+cname,
		"a=ssrc:"+strconv.FormatUint(uint64(l.ssrc), 10)+" msid:WhatsAppMedia WhatsAppTrack1")
	return strings.Join(lines, "\r\n") + "\r\n"
}

// setAnswer takes the business's answer (from pre_accept, or accept
// without one): the certificate fingerprint DTLS must present. The rest of
// the answer is checked by the simulator's Graph rules (checkAnswer).
func (l *liteLeg) setAnswer(sdp string) {
	l.answerMu.Lock()
	defer l.answerMu.Unlock()
	select {
	case <-l.answered:
		return
	default:
	}
	fp, err := answerFingerprint(sdp)
	l.remoteFP, l.answerErr = fp, err
	if _, pt, err := answerAudio(sdp); err == nil {
		l.audioPT.Store(uint32(pt) + 1)
	}
	close(l.answered)
}

// audio is the codec the answer picked ("opus", "PCMU", "PCMA") and its
// payload type; Opus 111 before the answer.
func (l *liteLeg) audio() (name string, pt uint8) {
	v := l.audioPT.Load()
	if v == 0 {
		return "opus", opusPT
	}
	pt = uint8(v - 1)
	if g := g711Named(pt); g != "" {
		return g, pt
	}
	return "opus", pt
}

// answerFingerprint finds the one a=fingerprint of an answer.
func answerFingerprint(sdp string) ([]byte, error) {
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=fingerprint:"); ok {
			return dtlssrtp.ParseFingerprint(v)
		}
	}
	return nil, errors.New("answer has no a=fingerprint")
}

// Ready is closed once SRTP is keyed; Failed if ICE or DTLS failed.
func (l *liteLeg) Ready() <-chan struct{}  { return l.ready }
func (l *liteLeg) Failed() <-chan struct{} { return l.failed }

func (l *liteLeg) isReady() bool {
	select {
	case <-l.ready:
		return true
	default:
		return false
	}
}

func (l *liteLeg) err() error {
	l.failMu.Lock()
	defer l.failMu.Unlock()
	return l.failErr
}

func (l *liteLeg) fail(err error) {
	l.failMu.Lock()
	defer l.failMu.Unlock()
	if l.failErr != nil {
		return
	}
	l.failErr = err
	close(l.failed)
}

// readLoop reads the leg's own socket until Close.
func (l *liteLeg) readLoop(conn *net.UDPConn) {
	defer l.wg.Done()
	buf := make([]byte, liteMaxPacket)
	oob := make([]byte, rxOOBLen)
	for {
		n, oobn, _, src, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return // closed
		}
		at, ok := rxTimestamp(oob[:oobn])
		if !ok {
			at = time.Now().UnixNano()
		}
		l.handleDatagram(buf[:n], src, at)
	}
}

// handleDatagram takes one datagram that arrived at `at` (Unix ns): STUN
// checks are answered, DTLS records go to the handshake, SRTP is decrypted
// and handed to onRTP. One reader at a time.
func (l *liteLeg) handleDatagram(p []byte, src netip.AddrPort, at int64) {
	if len(p) == 0 {
		return
	}
	switch b := p[0]; {
	case b < 4: // STUN (RFC 7983)
		l.handleSTUN(&l.msg, p, src)
	case b >= 20 && b < 64: // DTLS
		l.startDTLS()
		if pipe := l.pipe.Load(); pipe != nil {
			pipe.Deliver(p)
		}
	case b >= 128 && b < 192: // RTP or RTCP
		if len(p) < 12 {
			return
		}
		if pt := p[1]; pt >= 192 && pt <= 223 { // RTCP (RFC 5761 §4)
			l.rtcpIn.Add(1)
			return
		}
		if l.rx == nil {
			if !l.isReady() {
				l.earlyRTP.Add(1)
				return
			}
			l.rx = l.rxCtx.Load()
		}
		out, err := l.rx.DecryptRTP(l.plain[:0], p, &l.hdr)
		if err != nil {
			l.badSRTP.Add(1)
			return
		}
		if l.onRTP != nil {
			l.onRTP(&l.hdr, out[l.hdr.MarshalSize():], at)
		}
	}
}

// handleSTUN answers a Binding request made with our credentials: an
// ICE-lite agent only responds. The first valid check fixes the address
// media goes to.
func (l *liteLeg) handleSTUN(m *stun.Message, p []byte, src netip.AddrPort) {
	m.Raw = append(m.Raw[:0], p...)
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return
	}
	if local, _, ok := strings.Cut(user.String(), ":"); !ok || local != l.ufrag {
		return
	}
	integrity := stun.NewShortTermIntegrity(l.pwd)
	if integrity.Check(m) != nil || stun.Fingerprint.Check(m) != nil {
		return
	}
	l.stunChecks.Add(1)
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if l.remote.Load() == nil {
		l.remote.CompareAndSwap(nil, &src)
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
		integrity, stun.Fingerprint)
	if err != nil {
		return
	}
	_ = l.sock.writeTo(resp.Raw, src)
}

// startDTLS starts the DTLS server handshake once, on the first DTLS
// record (the reader's goroutine): the pipe is in place before the record
// is delivered.
func (l *liteLeg) startDTLS() {
	l.dtlsGo.Do(func() {
		remote := l.remote.Load()
		if remote == nil {
			l.fail(errors.New("dtls before any valid ICE check"))
			return
		}
		dst := *remote
		pipe := dtlssrtp.NewPipe(net.UDPAddrFromAddrPort(l.local), net.UDPAddrFromAddrPort(dst),
			func(b []byte) error { return l.sock.writeTo(b, dst) })
		l.pipe.Store(pipe)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			if err := l.handshake(pipe); err != nil {
				l.fail(err)
			}
		}()
	})
}

func (l *liteLeg) handshake(pipe *dtlssrtp.Pipe) error {
	dc, err := dtls.Server(pipe, pipe.RemoteAddr(), &dtls.Config{
		Certificates:           []tls.Certificate{l.cert.TLS},
		SRTPProtectionProfiles: dtlssrtp.Profiles,
		ClientAuth:             dtls.RequireAnyClientCert,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		VerifyPeerCertificate:  l.verifyPeer,
	})
	if err != nil {
		_ = pipe.Close()
		return fmt.Errorf("dtls: %w", err)
	}
	l.dconn.Store(dc)
	tx, rx, err := dtlssrtp.Keys(dc, false, liteHandshakeTimeout, l.closed)
	if err != nil {
		return err
	}
	l.tx = tx
	l.rxCtx.Store(rx)
	close(l.ready)
	return nil
}

// verifyPeer checks the business's DTLS certificate against the answer's
// fingerprint, waiting for the answer if DTLS came first.
func (l *liteLeg) verifyPeer(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("no client certificate")
	}
	t := time.NewTimer(liteAnswerWait)
	defer t.Stop()
	select {
	case <-l.answered:
	case <-t.C:
		return errors.New("no SDP answer to check the certificate against")
	case <-l.closed:
		return net.ErrClosed
	}
	l.answerMu.Lock()
	fp, aerr := l.remoteFP, l.answerErr
	l.answerMu.Unlock()
	if aerr != nil {
		return aerr
	}
	return dtlssrtp.CheckFingerprint(raw, fp)
}

// writeRTP encrypts one plaintext RTP packet (header included) into out
// and sends it to the business. It is called by one goroutine at a time
// (the run's sender), only once Ready is closed.
func (l *liteLeg) writeRTP(plain []byte, hdr *rtp.Header, out []byte) error {
	dst := l.remote.Load()
	if dst == nil {
		return errors.New("no ICE check yet")
	}
	enc, err := l.tx.EncryptRTP(out[:0], plain, hdr)
	if err != nil {
		return err
	}
	return l.sock.writeTo(enc, *dst)
}

// Close ends the leg: DTLS close_notify, socket, goroutines.
func (l *liteLeg) Close() {
	l.closeOnce.Do(func() {
		close(l.closed)
		if dc := l.dconn.Load(); dc != nil {
			_ = dc.Close()
		}
		if pipe := l.pipe.Load(); pipe != nil {
			_ = pipe.Close()
		}
		if l.poller != nil {
			l.poller.remove(l) // the poller no longer touches the leg after this
		}
		_ = l.sock.close()
		l.wg.Wait()
	})
}

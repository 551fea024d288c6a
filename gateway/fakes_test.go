package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// Fakes of the legs the call machine drives (seams.go). Each records what
// the machine did to it, and lets a test hold an action (a gate) so that
// another event lands while it is in flight.

var errFakeClosed = errors.New("fake leg closed")

// talker makes the RTP a fake leg sends: a packet every 20 ms until the
// leg is closed, or nothing when muted.
type talker struct {
	mute    atomic.Bool
	pt      uint8
	tsStep  uint32
	payload []byte
	seq     uint16
	ts      uint32
}

// read is one ReadPacket: the next packet 20 ms after the last, or the
// leg's end.
func (tk *talker) read(b []byte, closed <-chan struct{}) (int, error) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-closed:
			return 0, errFakeClosed
		case <-t.C:
		}
		if tk.mute.Load() {
			t.Reset(20 * time.Millisecond)
			continue
		}
		tk.seq++
		tk.ts += tk.tsStep
		b[0], b[1] = 0x80, tk.pt
		b[2], b[3] = byte(tk.seq>>8), byte(tk.seq)
		b[4], b[5], b[6], b[7] = byte(tk.ts>>24), byte(tk.ts>>16), byte(tk.ts>>8), byte(tk.ts)
		b[8], b[9], b[10], b[11] = 0, 0, 0x12, 0x34
		return 12 + copy(b[12:], tk.payload), nil
	}
}

// opusSilence is a 20 ms Opus frame of silence (RFC 6716: CELT, fullband).
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// fakeLeg is a WebRTC leg: it sends Opus silence, or PCMU silence when it
// answered with PCMU (unless muted), and counts what the bridge writes to
// it.
type fakeLeg struct {
	talker    talker
	codec     webrtc.Codec
	connected chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	failed    chan struct{}
	failOnce  sync.Once
	err       atomic.Pointer[error]
	written   atomic.Int64
}

func newFakeLeg(up bool) *fakeLeg {
	l := &fakeLeg{connected: make(chan struct{}), closed: make(chan struct{}), failed: make(chan struct{}),
		talker: talker{pt: 111, tsStep: 960, payload: opusSilence}, codec: webrtc.Codec{Name: webrtc.CodecOpus, PayloadType: 111, ClockRate: 48000}}
	if up {
		close(l.connected)
	}
	return l
}

func (l *fakeLeg) Connected() <-chan struct{} { return l.connected }

func (l *fakeLeg) ReadPacket(b []byte) (int, error) { return l.talker.read(b, l.closed) }
func (l *fakeLeg) WritePacket([]byte) error {
	select {
	case <-l.closed:
		return errFakeClosed
	default:
		l.written.Add(1)
		return nil
	}
}
func (l *fakeLeg) AnswerSDP() string   { return "v=0 answer" }
func (l *fakeLeg) SSRC() uint32        { return 0x1234 }
func (l *fakeLeg) Codec() webrtc.Codec { return l.codec }
func (l *fakeLeg) OpusPayloadType() uint8 { // Meta's offer
	if l.codec.IsG711() {
		return 0
	}
	return 111
}
func (l *fakeLeg) DTMFPayloadType() uint8  { return 126 }
func (l *fakeLeg) Failed() <-chan struct{} { return l.failed }
func (l *fakeLeg) Err() error {
	if e := l.err.Load(); e != nil {
		return *e
	}
	return nil
}
func (l *fakeLeg) Close() error { l.closeOnce.Do(func() { close(l.closed) }); return nil }
func (l *fakeLeg) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// fail is the leg losing its media (ICE consent, DTLS).
func (l *fakeLeg) fail(err error) {
	l.err.Store(&err)
	l.failOnce.Do(func() { close(l.failed) })
}

// gate holds an action until released or its context ends.
type gate chan struct{}

func (g gate) wait(ctx context.Context) error {
	if g == nil {
		return nil
	}
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fakeAnswerer makes fakeLegs, running the codec asked for (G.711 on its
// static number).
type fakeAnswerer struct {
	down bool // the legs it makes never connect (ICE fails to find a pair)
	err  error
	hold gate // holds the answer; it is made anyway once released
	made chan *fakeLeg
}

func (a *fakeAnswerer) Answer(ctx context.Context, _, codec string, _ *zap.Logger) (waLeg, error) {
	if a.hold != nil {
		<-a.hold // a slow answer that finishes whatever the call does
	}
	if a.err != nil {
		return nil, a.err
	}
	l := newFakeLeg(!a.down)
	l.g711(codec)
	a.made <- l
	return l, nil
}

// g711 makes the leg run PCMU or PCMA (on 0, 8), sending that law's
// silence; any other codec leaves it on Opus.
func (l *fakeLeg) g711(codec string) {
	switch codec {
	case webrtc.CodecPCMU:
		l.codec = webrtc.Codec{Name: codec, PayloadType: 0, ClockRate: 8000}
		l.talker = talker{pt: 0, tsStep: 160, payload: bytes.Repeat([]byte{0xff}, 160)}
	case webrtc.CodecPCMA:
		l.codec = webrtc.Codec{Name: codec, PayloadType: 8, ClockRate: 8000}
		l.talker = talker{pt: 8, tsStep: 160, payload: bytes.Repeat([]byte{0xd5}, 160)}
	}
}

// graphBehaviour is how the fake Graph API answers one action.
type graphBehaviour struct {
	failFirst int // the first this many requests fail (then err, block, hold apply)
	err       error
	block     bool // never answers: the action's timeout ends it
	hold      gate
}

// fakeGraph records the actions in order.
type fakeGraph struct {
	mu      sync.Mutex
	actions []string
	behave  map[string]graphBehaviour
	count   map[string]int
	started chan string
	// connectID is the call id Connect returns.
	connectID string
}

func newFakeGraph() *fakeGraph {
	return &fakeGraph{behave: map[string]graphBehaviour{}, count: map[string]int{}, started: make(chan string, 64), connectID: "wacid.bic1"}
}

func (f *fakeGraph) do(ctx context.Context, action string) error {
	f.mu.Lock()
	f.actions = append(f.actions, action)
	b := f.behave[action]
	f.count[action]++
	n := f.count[action]
	f.mu.Unlock()
	select {
	case f.started <- action:
	default: // nobody waits for this one
	}
	if n <= b.failFirst {
		return errors.New("graph: HTTP 503 (try " + fmt.Sprint(n) + ")")
	}
	if err := b.hold.wait(ctx); err != nil {
		return err
	}
	if b.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.err
}

func (f *fakeGraph) PreAccept(ctx context.Context, _, _, _ string) error {
	return f.do(ctx, "pre_accept")
}
func (f *fakeGraph) Accept(ctx context.Context, _, _, _, _ string) error { return f.do(ctx, "accept") }
func (f *fakeGraph) Reject(ctx context.Context, _, _ string) error       { return f.do(ctx, "reject") }
func (f *fakeGraph) Terminate(ctx context.Context, _, _ string) error    { return f.do(ctx, "terminate") }
func (f *fakeGraph) Connect(ctx context.Context, _ string, _ whatsapp.ConnectRequest) (string, error) {
	if err := f.do(ctx, "connect"); err != nil {
		return "", err
	}
	return f.connectID, nil
}

func (f *fakeGraph) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}

// dialMode is how the fake PBX answers the INVITE.
type dialMode int

const (
	dialAnswer       dialMode = iota // 200 OK at once (or when hold is released)
	dialReject                       // a final error response (code)
	dialRing                         // rings until the INVITE is cancelled or times out
	dialAnswerOnStop                 // rings; answers 200 just as the INVITE is cancelled
	dialFail                         // a transport error, no response
	dialEarly                        // 183 with SDP at once, then as dialAnswer (or code > 0: that final error)
)

type fakeDialer struct {
	mode     dialMode
	code     int
	codec    sip.Codec
	noDTMF   bool // the PBX's answer has no telephone-event
	hold     gate
	invited  chan sip.InviteRequest
	pbx      chan *fakePBX
	canceled atomic.Bool
	// earlyOffered: the machine asked to hear of early media; early is
	// the early media handed over (dialEarly).
	earlyOffered atomic.Bool
	early        chan *fakePBX
	cause        atomic.Value // context.Cause of a cancelled INVITE (its CANCEL's Reason)
}

func (d *fakeDialer) Invite(ctx context.Context, r sip.InviteRequest, onEarly func(pbxMedia)) (pbxCall, error) {
	d.invited <- r
	d.earlyOffered.Store(onEarly != nil)
	defer func() {
		if cause := context.Cause(ctx); cause != nil {
			d.cause.Store(cause)
		}
	}()
	answer := func() (pbxCall, error) {
		p := newFakePBX(d.codec)
		p.noDTMF = d.noDTMF
		d.pbx <- p
		return p, nil
	}
	switch d.mode {
	case dialEarly:
		m := newFakePBX(d.codec)
		m.noDTMF = d.noDTMF
		if onEarly != nil {
			onEarly(m)
		}
		d.early <- m
		if err := d.hold.wait(ctx); err != nil {
			_ = m.Close()
			d.canceled.Store(true)
			return nil, fmt.Errorf("sip: INVITE cancelled: %w", err)
		}
		if d.code > 0 {
			_ = m.Close()
			return nil, &sip.FinalError{Code: d.code, Reason: "Busy Here", Why: sip.Reason{Protocol: "Q.850", Cause: 17}}
		}
		d.pbx <- m // the answered call keeps the early media's socket
		return m, nil
	case dialReject:
		return nil, &sip.FinalError{Code: d.code, Reason: "Busy Here"}
	case dialFail:
		return nil, errors.New("sip: transport: connection refused")
	case dialRing:
		<-ctx.Done()
		d.canceled.Store(errors.Is(ctx.Err(), context.Canceled))
		return nil, fmt.Errorf("sip: INVITE ended: %w", ctx.Err())
	case dialAnswerOnStop:
		<-ctx.Done()
		d.canceled.Store(true)
		return answer()
	}
	if err := d.hold.wait(ctx); err != nil {
		d.canceled.Store(true)
		return nil, fmt.Errorf("sip: INVITE cancelled: %w", err)
	}
	return answer()
}

// fakePBX is an answered dialog: it sends PCMU silence (unless muted).
type fakePBX struct {
	talker    talker
	codec     sip.Codec
	done      chan struct{}
	doneOnce  sync.Once
	closed    chan struct{}
	closeOnce sync.Once
	reason    atomic.Value
	byes      atomic.Int32
	byeWhy    atomic.Value // the Reason header of our BYE
	peerWhy   atomic.Value // the Reason header of the PBX's BYE
	noDTMF    bool
	mu        sync.Mutex
	onMedia   func(sip.MediaChange)
}

func newFakePBX(codec sip.Codec) *fakePBX {
	if codec.Name == "" {
		codec = sip.Codec{Name: "PCMU", PayloadType: 0, ClockRate: 8000}
	}
	return &fakePBX{codec: codec, done: make(chan struct{}), closed: make(chan struct{}),
		talker: talker{pt: codec.PayloadType, tsStep: 160, payload: bytes.Repeat([]byte{0xff}, 160)}}
}

func (p *fakePBX) end(reason string) {
	p.doneOnce.Do(func() { p.reason.Store(reason); close(p.done) })
}
func (p *fakePBX) ReadPacket(b []byte) (int, error) { return p.talker.read(b, p.closed) }
func (p *fakePBX) WritePacket([]byte) error         { return nil }
func (p *fakePBX) CallID() string                   { return "sip-call-1" }
func (p *fakePBX) Codec() sip.Codec                 { return p.codec }
func (p *fakePBX) DTMFPayloadType() uint8 {
	if p.noDTMF {
		return 0
	}
	return 101
}
func (p *fakePBX) PeerReason() sip.Reason {
	r, _ := p.peerWhy.Load().(sip.Reason)
	return r
}
func (p *fakePBX) RemoteRTPAddr() *net.UDPAddr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (p *fakePBX) Done() <-chan struct{} { return p.done }
func (p *fakePBX) EndReason() string {
	if r, ok := p.reason.Load().(string); ok {
		return r
	}
	return ""
}
func (p *fakePBX) Hangup(context.Context) error { p.byes.Add(1); p.end("local_bye"); return nil }
func (p *fakePBX) HangupWithReason(ctx context.Context, why sip.Reason) error {
	p.byeWhy.Store(why.String())
	return p.Hangup(ctx)
}
func (p *fakePBX) byeReason() string {
	s, _ := p.byeWhy.Load().(string)
	return s
}
func (p *fakePBX) Close() error {
	p.end("closed")
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}
func (p *fakePBX) SendInfoDigit(context.Context, rune, time.Duration) error { return nil }
func (p *fakePBX) SetOnInfoDigit(func(rune, time.Duration))                 {}
func (p *fakePBX) DialogState() sip.DialogState {
	return sip.DialogState{CallID: p.CallID(), From: "<sip:gw@127.0.0.1>;tag=a", To: "<sip:pbx@127.0.0.1>;tag=b",
		Target: "sip:pbx@127.0.0.1:5060", CSeq: 1, Transport: "UDP"}
}

func (p *fakePBX) SetOnMediaChange(f func(sip.MediaChange)) {
	p.mu.Lock()
	p.onMedia = f
	p.mu.Unlock()
}

// reinvite is the PBX changing the media (a hold: direction sendonly).
func (p *fakePBX) reinvite(direction string) {
	p.mu.Lock()
	f := p.onMedia
	p.mu.Unlock()
	f(sip.MediaChange{Direction: direction, Codec: p.codec})
}

// bye is the PBX hanging up.
func (p *fakePBX) bye() { p.end("remote_bye") }

// byeWith is the PBX hanging up with a Reason header.
func (p *fakePBX) byeWith(why sip.Reason) {
	p.peerWhy.Store(why)
	p.end("remote_bye")
}

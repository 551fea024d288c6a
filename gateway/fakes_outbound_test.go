package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
)

// Fakes for business-initiated calls: the agent's INVITE, a WebRTC leg
// that offers, and the Graph API's permission and connect requests.

// fakeAgent is an agent's INVITE: a PBX whose media is a fakePBX.
type fakeAgent struct {
	*fakePBX
	user, from string
	trunk      *sip.Trunk
	headers    map[string]string
	cancelled  chan struct{}
	cancelOnce sync.Once
	rang       atomic.Int32
	answered   chan *fakePBX
	answerErr  error
	mu         sync.Mutex
	rejected   *rejection
}

type rejection struct {
	code    int
	why     sip.Reason
	warning string
}

func newFakeAgent(user string) *fakeAgent {
	return &fakeAgent{fakePBX: newFakePBX(sip.Codec{}), user: user, from: "2001",
		trunk: &sip.Trunk{Name: "pbx", Address: "127.0.0.1:5060"}, headers: map[string]string{},
		cancelled: make(chan struct{}), answered: make(chan *fakePBX, 1)}
}

func (a *fakeAgent) CallID() string             { return "agent-call-1" }
func (a *fakeAgent) Trunk() *sip.Trunk          { return a.trunk }
func (a *fakeAgent) User() string               { return a.user }
func (a *fakeAgent) FromUser() string           { return a.from }
func (a *fakeAgent) Header(name string) string  { return a.headers[name] }
func (a *fakeAgent) Cancelled() <-chan struct{} { return a.cancelled }
func (a *fakeAgent) cancel()                    { a.cancelOnce.Do(func() { close(a.cancelled) }) }
func (a *fakeAgent) Ringing(context.Context) error {
	a.rang.Add(1)
	return nil
}
func (a *fakeAgent) Answer(context.Context) (pbxCall, error) {
	if a.answerErr != nil {
		return nil, a.answerErr
	}
	a.answered <- a.fakePBX
	return a.fakePBX, nil
}
func (a *fakeAgent) Reject(code int, _ string, why sip.Reason, warning string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rejected != nil {
		return errors.New("already rejected")
	}
	a.rejected = &rejection{code: code, why: why, warning: warning}
	return nil
}
func (a *fakeAgent) rejection() *rejection {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rejected
}

// fakeOfferLeg is a fakeLeg that offers; it connects once answered
// (unless down).
type fakeOfferLeg struct {
	*fakeLeg
	down      bool
	answerMu  sync.Mutex
	answerSDP string
}

func (l *fakeOfferLeg) OfferSDP() string { return "v=0 offer" }
func (l *fakeOfferLeg) SetAnswer(sdp string) error {
	l.answerMu.Lock()
	defer l.answerMu.Unlock()
	if l.answerSDP != "" {
		return errors.New("answered twice")
	}
	if sdp == "bad" {
		return errors.New("webrtc: answer has no fingerprint")
	}
	l.answerSDP = sdp
	if g711, ok := strings.CutPrefix(sdp, "g711:"); ok { // Meta's answer picked it
		l.g711(g711)
	}
	if !l.down {
		close(l.connected)
	}
	return nil
}

type fakeOfferer struct {
	down bool
	made chan *fakeOfferLeg
	g711 atomic.Value // the G.711 codec the last offer put first ("" for none)
}

func (o *fakeOfferer) Offer(_ context.Context, g711 string, _ *zap.Logger) (waOfferLeg, error) {
	o.g711.Store(g711)
	l := &fakeOfferLeg{fakeLeg: newFakeLeg(false), down: o.down}
	o.made <- l
	return l, nil
}

// fakePermissions is the Graph API's permission side: the user's state,
// and whether requests go through.
type fakePermissions struct {
	mu       sync.Mutex
	perm     whatsapp.CallPermission
	permErr  error
	reqErr   error // SendCallPermissionRequest's
	reads    int
	requests []string // "interactive:<body>" or "template:<name>"
}

func (p *fakePermissions) CallPermissions(context.Context, string, whatsapp.UserRef) (*whatsapp.CallPermission, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	if p.permErr != nil {
		return nil, p.permErr
	}
	perm := p.perm
	return &perm, nil
}
func (p *fakePermissions) SendCallPermissionRequest(_ context.Context, _ string, _ whatsapp.UserRef, body string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reqErr != nil {
		return "", p.reqErr
	}
	p.requests = append(p.requests, "interactive:"+body)
	return "wamid.1", nil
}
func (p *fakePermissions) SendCallPermissionTemplate(_ context.Context, _ string, _ whatsapp.UserRef, name, _ string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, "template:"+name)
	return "wamid.2", nil
}
func (p *fakePermissions) sent() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

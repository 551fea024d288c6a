// Package wasim simulates Meta's side of WhatsApp Cloud API calling so the
// gateway can be tested, demonstrated and developed without a Meta account.
//
// The simulator plays the WhatsApp user and Meta's infrastructure at once: it
// posts signed `calls` webhooks (connect, terminate) to the gateway, serves
// the Graph API calls endpoint the gateway answers on (pre_accept, accept,
// reject, terminate), and runs the WhatsApp media leg as Meta does (ICE-lite,
// host candidates only, DTLS server, Opus on PT 111, telephone-event on PT
// 126). It enforces Meta's rules and reports every broken one as a violation.
//
// It also plays the other direction, business-initiated calls (bic.go):
// simulated users (SetUser) with call permissions the business queries
// (call_permissions) and asks for (a call_permission_request message, answered
// by a signed `messages` webhook), and who ring, answer or decline the calls
// the business places with the connect action, Meta's limits enforced.
//
// And it keeps each business number's calling settings (settings.go): POST
// and GET settings checked as Meta checks them, the voicemail announcement
// upload and Meta's media API (graphmedia.go), and the account events tests
// trigger (account.go): account_settings_update, account_update with the
// restrictions GET settings lists, and voicemails left as audio messages.
//
// It writes Meta's JSON itself, independently of the gateway's own types, so
// that it tests the gateway's parser rather than agreeing with it.
package wasim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Config sets up a simulator.
type Config struct {
	// GraphListen is where the simulated Graph API listens, e.g. "127.0.0.1:0".
	GraphListen string
	// WebhookURL is the gateway's webhook URL the simulator posts to.
	WebhookURL string
	// AppSecret signs the webhooks: X-Hub-Signature-256: sha256=hex(HMAC-SHA256(raw body)).
	AppSecret string
	// AccessToken is the bearer token the Graph endpoint requires.
	AccessToken string
	// PhoneNumberID is the business number's id, e.g. "1000000001".
	PhoneNumberID string
	// DisplayPhoneNumber is the business number as Meta shows it in
	// metadata.display_phone_number and calls[].to (default "15550000001").
	DisplayPhoneNumber string
	// WABAID is entry[].id, the WhatsApp Business Account id (default "1000000000000001").
	WABAID string
	// VerifyToken, when set, makes Start perform Meta's subscription handshake
	// (GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…) first.
	VerifyToken string
	// MediaIP is the only address host candidates are gathered on ("127.0.0.1").
	MediaIP string
	// AcceptTimeout: no accept by then → terminate webhook, "not answered" (default 60 s).
	AcceptTimeout time.Duration
	// NoMediaTimeout: after accept, no business→user packet for that long →
	// terminate webhook with error 138021 (default 20 s).
	NoMediaTimeout time.Duration
	// GraphOutage makes the Graph API fail: action → how many of its first
	// well-formed requests (over all calls) are answered HTTP 503 before one
	// is taken, as during a Graph outage.
	GraphOutage map[string]int

	// RingTimeout: a business-initiated call the user has not answered by
	// then ends, not answered (default 60 s).
	RingTimeout time.Duration
	// PermissionChecksPerSecond bounds GET call_permissions per business
	// number (default 5: Meta's reference, "5 requests in a 1 second
	// window"; beyond it error 613, HTTP 429).
	PermissionChecksPerSecond int
	// MaxConnectedCallsPerDay bounds the business-initiated calls a user
	// answers in 24 h (default 100, Meta's; beyond it connect fails 138012).
	MaxConnectedCallsPerDay int
	// CallPermissionTemplates names the message templates that carry a
	// call_permission_request component (a template sent with such a
	// component in its components is one too).
	CallPermissionTemplates []string

	// AppID is the app's id, as GET settings shows it in
	// calling.sip.servers[].app_id (default "1000000000000002").
	AppID string
	// SettingsWebhooks makes a settings update (POST settings) that changes
	// what Meta observes (calling status, call_icon_visibility,
	// callback_permission_status, sip.status, srtp_key_exchange_protocol)
	// post an account_settings_update webhook, as Meta does for an app
	// subscribed to that field ("You'll be notified even for your own
	// updates"). Off by default: the field needs its own subscription.
	SettingsWebhooks bool

	// WebhookCopies delivers each webhook that many times (default 1), as Meta may; WebhookShuffle sends the copies
	// concurrently, each after a random 0–50 ms delay, so copies of one webhook and webhooks sent close together arrive in mixed order.
	WebhookCopies  int
	WebhookShuffle bool

	Logger *zap.Logger
}

// Sim is one simulated Meta: a Graph API server, a webhook sender and the
// media legs of the calls it places.
type Sim struct {
	cfg     Config
	log     *zap.Logger
	mediaIP net.IP
	httpc   *http.Client

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // call lifecycles and the Graph server

	mu         sync.Mutex
	calls      map[string]*Call
	loops      map[loopKey]*audioLoop
	violations []string
	outages    map[string]int          // GraphOutage requests already failed, by action
	users      map[string]*userState   // business-initiated calls' users, by wa_id and by BSUID
	permChecks []time.Time             // recent GET call_permissions, for the rate limit
	clock      func() time.Time        // permission, limit, holiday and media URL time (tests move it)
	numbers    map[string]*numberState // business numbers' settings, by phone number id
	media      map[string]*mediaObject // uploaded and voicemail media, by media id
	settingsRq []SettingsRequest       // requests to the settings and media upload endpoints, in order
	mediaKey   []byte                  // signs media download URLs
	byeGrace   atomic.Int64            // defaultByeGrace (tests shorten it)
	srv        *http.Server
	ln         net.Listener
	started    bool
	closing    bool
	closed     chan struct{}

	// copies are the webhook copies still being posted after their
	// webhook was delivered (WebhookShuffle). Once copiesClosed (Close is
	// waiting for them), no more are started in the background.
	copies       sync.WaitGroup
	copiesClosed bool
}

// Defaults for the Config fields left zero.
const (
	defaultAcceptTimeout  = 60 * time.Second
	defaultNoMediaTimeout = 20 * time.Second
	defaultDisplayNumber  = "15550000001"
	defaultWABAID         = "1000000000000001"
	defaultRingTimeout    = 60 * time.Second
	defaultPermChecksRate = 5
	defaultMaxConnected   = 100
	defaultAppID          = "1000000000000002"
)

// New checks cfg and makes a simulator; Start makes it listen.
func New(cfg Config) (*Sim, error) {
	if cfg.GraphListen == "" {
		cfg.GraphListen = "127.0.0.1:0"
	}
	if cfg.MediaIP == "" {
		cfg.MediaIP = "127.0.0.1"
	}
	if cfg.DisplayPhoneNumber == "" {
		cfg.DisplayPhoneNumber = defaultDisplayNumber
	}
	if cfg.WABAID == "" {
		cfg.WABAID = defaultWABAID
	}
	if cfg.AcceptTimeout <= 0 {
		cfg.AcceptTimeout = defaultAcceptTimeout
	}
	if cfg.NoMediaTimeout <= 0 {
		cfg.NoMediaTimeout = defaultNoMediaTimeout
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = defaultRingTimeout
	}
	if cfg.PermissionChecksPerSecond <= 0 {
		cfg.PermissionChecksPerSecond = defaultPermChecksRate
	}
	if cfg.MaxConnectedCallsPerDay <= 0 {
		cfg.MaxConnectedCallsPerDay = defaultMaxConnected
	}
	if cfg.AppID == "" {
		cfg.AppID = defaultAppID
	}
	var errs []error
	if u, err := url.Parse(cfg.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("wasim: webhook url %q is not an http(s) URL", cfg.WebhookURL))
	}
	if cfg.AppSecret == "" {
		errs = append(errs, errors.New("wasim: app secret is empty"))
	}
	if cfg.AccessToken == "" {
		errs = append(errs, errors.New("wasim: access token is empty"))
	}
	if cfg.PhoneNumberID == "" || strings.ContainsAny(cfg.PhoneNumberID, "/?# ") {
		errs = append(errs, fmt.Errorf("wasim: phone number id %q is empty or not a path segment", cfg.PhoneNumberID))
	}
	ip := net.ParseIP(cfg.MediaIP)
	if ip == nil || ip.IsUnspecified() {
		errs = append(errs, fmt.Errorf("wasim: media ip %q is not a usable IP address", cfg.MediaIP))
	}
	if _, _, err := net.SplitHostPort(cfg.GraphListen); err != nil {
		errs = append(errs, fmt.Errorf("wasim: graph listen %q: %w", cfg.GraphListen, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		cfg:     cfg,
		log:     log,
		mediaIP: ip,
		httpc: &http.Client{
			Timeout:   webhookAttemptTimeout,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // Meta does not follow redirects
			},
		},
		ctx:    ctx,
		cancel: cancel,
		calls:  map[string]*Call{},
		loops:  map[loopKey]*audioLoop{},
		users:  map[string]*userState{},
		clock:  time.Now,
		closed: make(chan struct{}),

		numbers:  map[string]*numberState{},
		media:    map[string]*mediaObject{},
		mediaKey: []byte(randomID(32)),
	}
	s.byeGrace.Store(int64(defaultByeGrace))
	s.numbers[cfg.PhoneNumberID] = newNumberState(cfg.PhoneNumberID, NumberConfig{DisplayPhoneNumber: cfg.DisplayPhoneNumber})
	return s, nil
}

// Start binds the Graph API listener and, when a verify token is configured,
// performs the webhook subscription handshake. The simulator closes itself
// when ctx ends.
func (s *Sim) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closing {
		s.mu.Unlock()
		return errors.New("wasim: already started or closed")
	}
	s.started = true
	s.mu.Unlock()

	ln, err := net.Listen("tcp", s.cfg.GraphListen)
	if err != nil {
		return fmt.Errorf("wasim: graph listen: %w", err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveGraph),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          nil,
	}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("graph server stopped", zap.Error(err))
		}
	}()
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			go s.Close() // Close waits for s.wg, so not from this goroutine
		case <-s.ctx.Done():
		}
	}()
	s.log.Info("wasim graph api listening", zap.String("url", s.GraphURL()), zap.String("webhook", s.cfg.WebhookURL))
	if s.cfg.VerifyToken != "" {
		if err := s.verifySubscription(ctx); err != nil {
			return err
		}
	}
	return nil
}

// GraphURL is the base URL to configure in the gateway, e.g.
// http://127.0.0.1:8090. Calls are POSTed to {GraphURL}/{version}/{phone_number_id}/calls.
func (s *Sim) GraphURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Violations returns the broken rules that could not be tied to one call
// (an unknown call id, a bad bearer on an unparseable body, a wrong path).
// They are also copied into the reports of the calls live at the time.
func (s *Sim) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Close ends every live call (sending its terminate webhook with one short
// attempt), gives the webhook copies still being posted (WebhookShuffle)
// up to 2 s, stops the Graph server and waits for every goroutine it
// started.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.closed
		return nil
	}
	s.closing = true
	calls := make([]*Call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	srv := s.srv
	s.mu.Unlock()

	for _, c := range calls {
		status := statusCompleted
		if c.bic != nil {
			status = c.bicStatus()
		}
		c.finish(endSpec{outcome: OutcomeSimClosed, status: status, webhook: true})
	}
	for _, c := range calls {
		<-c.done
	}
	// Webhook copies still being posted (WebhookShuffle) get a grace
	// period, then are cancelled with s.ctx below.
	s.mu.Lock()
	s.copiesClosed = true
	s.mu.Unlock()
	copiesDone := make(chan struct{})
	go func() {
		s.copies.Wait()
		close(copiesDone)
	}()
	grace := time.NewTimer(webhookCopiesGrace)
	select {
	case <-copiesDone:
	case <-grace.C:
	}
	grace.Stop()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = srv.Shutdown(ctx)
		cancel()
		if err != nil {
			_ = srv.Close()
		}
	}
	s.cancel() // ends the webhook copies still being posted
	<-copiesDone
	s.wg.Wait()
	s.httpc.CloseIdleConnections()
	close(s.closed)
	return err
}

// violation records a broken rule not tied to one call, and copies it into
// every live call's report.
func (s *Sim) violation(msg string) {
	s.log.Warn("meta rule broken", zap.String("violation", msg))
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	live := make([]*Call, 0, len(s.calls))
	for _, c := range s.calls {
		live = append(live, c)
	}
	s.mu.Unlock()
	for _, c := range live {
		c.addViolationIfLive(msg)
	}
}

func (s *Sim) call(id string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// randomID returns n random bytes in unpadded URL-safe base64.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return base64.RawURLEncoding.EncodeToString(b)
}

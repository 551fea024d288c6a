package wasim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp/rtptrack"
)

// Call states.
const (
	StateOffered     = "offered"
	StatePreAccepted = "pre_accepted"
	StateAccepted    = "accepted"
	StateEnded       = "ended"
)

// Call outcomes.
const (
	OutcomeCompletedByUser      = "completed_by_user"      // the user hung up after accept
	OutcomeCancelledByUser      = "cancelled_by_user"      // the user hung up before accept
	OutcomeTerminatedByBusiness = "terminated_by_business" // Graph terminate
	OutcomeRejected             = "rejected"               // Graph reject
	OutcomeNotAnswered          = "not_answered"           // no accept within AcceptTimeout (BIC: no answer within RingTimeout)
	OutcomeRejectedByUser       = "rejected_by_user"       // BIC: the user declined the call
	OutcomeMediaTimeout         = "media_timeout"          // no business media for NoMediaTimeout (138021)
	OutcomeMediaFailed          = "media_failed"           // ICE/DTLS failed (138020)
	OutcomeWebhookRejected      = "webhook_rejected"       // the connect webhook was not answered 200
	OutcomeSimClosed            = "sim_closed"             // Sim.Close with the call live
)

// Meta's terminate error for "media receive timeout".
const ErrMediaReceiveTimeout = 138021

// lateGrace is how long a call ended by SendTerminateFirst keeps listening for
// (forbidden) actions on the stale connect before its report is final.
const lateGrace = 2 * time.Second

// defaultByeGrace is how long after an RTCP BYE from the business the
// simulator waits for the Graph terminate Meta requires ("must be sent even
// if there is an RTCP BYE packet in the media path"); tests shorten it.
const defaultByeGrace = 5 * time.Second

// Directions, as Meta writes them.
const (
	directionUIC = "USER_INITIATED"
	directionBIC = "BUSINESS_INITIATED"
)

// CallOptions describe the WhatsApp user and what the simulator does.
type CallOptions struct {
	// From is the caller's phone number (wa_id); "" sends a BSUID-only caller.
	From string
	// FromUserID is the caller's BSUID (from_user_id, contacts[].user_id);
	// one is made up when empty.
	FromUserID  string
	ProfileName string // contacts[].profile.name (default "WhatsApp User")
	// CTAPayload and DeeplinkPayload (each ≤ 512 chars) ride on the connect
	// and terminate webhooks.
	CTAPayload, DeeplinkPayload string
	// ToneHz is the tone the caller sends (default 1000 Hz) unless WAVFile
	// (16-bit PCM, any rate; the first channel is used) is set.
	ToneHz  float64
	WAVFile string
	// Duration is how long the caller talks once media is up before hanging
	// up; 0 waits for the business to hang up.
	Duration time.Duration
	// FrameMs is the Opus frame length the caller sends: 20 (default), 10, 40 or 60.
	FrameMs int
	// DropPercent drops that share of caller→business packets at random;
	// DropBurstAt > 0 drops 5 packets in a row from that packet number (1-based).
	// Dropped packets still use up sequence numbers.
	DropPercent float64
	DropBurstAt int
	// SendDuplicateConnect posts the connect webhook twice.
	SendDuplicateConnect bool
	// SendTerminateFirst delivers the terminate webhook before the connect
	// (a call the user abandoned at once): the business must not answer it.
	SendTerminateFirst bool
	// WebhookSecret overrides the signing secret (to test bad signatures).
	WebhookSecret string

	// ExternalOffer is an offer made by another WebRTC stack (a browser,
	// say): the simulator posts it as Meta would and enforces the Graph
	// rules, hands the business's answer to OnAnswer, and neither sends nor
	// analyses media (the external peer does; no media timeout applies).
	ExternalOffer string
	OnAnswer      func(sdp string)

	// Digits are pressed (RFC 4733 on PT 126, in place of audio) DigitsAfter
	// (default 1 s) after the caller starts talking, 100 ms each.
	Digits      string
	DigitsAfter time.Duration

	// KeepAudio keeps the decoded business→user audio in Report.ReceivedPCM.
	KeepAudio bool
}

func (c *Call) external() bool { return c.opts.ExternalOffer != "" }

// Call is one simulated call: user-initiated (PlaceCall) or
// business-initiated (the business's connect; BICCall hands it out). On a
// business-initiated call opts describes the callee: From and FromUserID
// are the user's wa_id and BSUID, Duration is User.TalkFor.
type Call struct {
	sim      *Sim
	id       string
	opts     CallOptions
	bic      *bicCall // nil on user-initiated calls
	log      *zap.Logger
	loop     *audioLoop
	offerSDP string // UIC: Meta's offer; BIC: the business's
	placedAt time.Time

	// The payload types on the wire: Meta's 111/126 on user-initiated
	// calls, the offer's on business-initiated ones (0: none negotiated).
	opusPT, dtmfPT uint8
	// g711 is the G.711 codec the business's answer picked ("": Opus), set
	// with the answer (under mu).
	g711 string

	pc    *webrtc.PeerConnection
	track *rtptrack.Track

	sigMu sync.Mutex // serialises Graph actions on this call

	mu                sync.Mutex
	state             string
	answerSDP         string
	remoteSet         bool
	bizOpaque         string
	rep               Report
	end               endSpec
	lastRecv          time.Time
	ssrcs             map[uint32]*seqState
	pcm               []int16
	flaggedEarlyMedia bool
	flaggedPT         bool
	dtmfIn            dtmfReceiver
	selectedPair      string    // the addresses of the first pair pion reported selected
	byeAt             time.Time // the business's first RTCP BYE
	flaggedBye        bool

	endCh         chan struct{} // closed when the call ends
	connected     chan struct{} // closed when ICE+DTLS are up
	connectedOnce sync.Once
	done          chan struct{} // closed when the report is final

	mediaMu     sync.Mutex
	mediaClosed bool
	mediaWG     sync.WaitGroup
}

// endSpec says how a call ended and what terminate webhook Meta sends.
type endSpec struct {
	outcome          string
	status           string
	code             int
	message, details string
	webhook          bool
	byBusiness       bool
}

// PlaceCall builds the offer (gathering completely, as Meta does not
// trickle), starts the call and posts the signed connect webhook in the
// background; it returns at once.
func (s *Sim) PlaceCall(ctx context.Context, opts CallOptions) (*Call, error) {
	if err := normalizeOptions(&opts); err != nil {
		return nil, err
	}
	s.mu.Lock()
	ok := s.started && !s.closing
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("wasim: simulator not started or closed")
	}
	var loop *audioLoop
	if opts.ExternalOffer == "" {
		var err error
		if loop, err = s.loopFor(loopKey{tone: opts.ToneHz, wav: opts.WAVFile, frameMs: opts.FrameMs}); err != nil {
			return nil, err
		}
	}
	c := s.newCall(opts, loop, directionUIC)
	id := c.id
	if c.external() {
		c.offerSDP = normalizeSDP(opts.ExternalOffer)
	} else {
		offer, err := c.setupMedia(ctx)
		if err != nil {
			c.closeMedia()
			return nil, err
		}
		c.offerSDP = offer
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.closeMedia()
		return nil, errors.New("wasim: simulator closed")
	}
	s.calls[id] = c
	s.wg.Add(1)
	s.mu.Unlock()
	c.log.Info("placing call", zap.String("from", opts.From), zap.String("from_user_id", opts.FromUserID))
	go c.run()
	return c, nil
}

// newCall makes a call in state offered; the caller sets up its media.
func (s *Sim) newCall(opts CallOptions, loop *audioLoop, direction string) *Call {
	id := "wacid." + randomID(27)
	c := &Call{
		sim:       s,
		id:        id,
		opts:      opts,
		log:       s.log.With(zap.String("call_id", id)),
		loop:      loop,
		placedAt:  time.Now(),
		opusPT:    opusPT,
		dtmfPT:    dtmfPT,
		state:     StateOffered,
		ssrcs:     map[uint32]*seqState{},
		endCh:     make(chan struct{}),
		connected: make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.rep.CallID = id
	c.rep.Direction = direction
	c.rep.User = opts.From
	if c.rep.User == "" {
		c.rep.User = opts.FromUserID
	}
	c.rep.PlacedAt = c.placedAt
	return c
}

func normalizeOptions(o *CallOptions) error {
	if o.ToneHz == 0 {
		o.ToneHz = 1000
	}
	if o.FrameMs == 0 {
		o.FrameMs = 20
	}
	if o.ProfileName == "" {
		o.ProfileName = "WhatsApp User"
	}
	if o.From == "" && o.FromUserID == "" {
		o.From = "15551234567"
	}
	if o.FromUserID == "" {
		o.FromUserID = "US." + strconv.FormatUint(rand.Uint64N(9e18)+1e18, 10)
	}
	if o.DigitsAfter == 0 {
		o.DigitsAfter = time.Second
	}
	var errs []error
	if err := validateDigits(o.Digits); err != nil {
		errs = append(errs, err)
	}
	switch o.FrameMs {
	case 10, 20, 40, 60:
	default:
		errs = append(errs, fmt.Errorf("wasim: frame length %d ms: want 10, 20, 40 or 60", o.FrameMs))
	}
	if o.WAVFile == "" && (o.ToneHz < 50 || o.ToneHz > 20000 || math.IsNaN(o.ToneHz)) {
		errs = append(errs, fmt.Errorf("wasim: tone %g Hz out of 50-20000", o.ToneHz))
	}
	if o.DropPercent < 0 || o.DropPercent > 100 || math.IsNaN(o.DropPercent) {
		errs = append(errs, fmt.Errorf("wasim: drop percent %g out of 0-100", o.DropPercent))
	}
	if o.DropBurstAt < 0 || o.Duration < 0 {
		errs = append(errs, errors.New("wasim: negative drop burst position or duration"))
	}
	if len(o.CTAPayload) > 512 || len(o.DeeplinkPayload) > 512 {
		errs = append(errs, errors.New("wasim: cta/deeplink payloads are at most 512 characters"))
	}
	return errors.Join(errs...)
}

// audio is the payload type and name of the audio codec the call runs:
// Opus (opusPT), or the G.711 codec the answer picked.
func (c *Call) audio() (uint8, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.g711 != "" {
		return g711PT(c.g711), c.g711
	}
	return c.opusPT, "opus"
}

// ID is the call id, "wacid.…".
func (c *Call) ID() string { return c.id }

// OfferSDP is the offer posted in the connect webhook.
func (c *Call) OfferSDP() string { return c.offerSDP }

// State is "offered", "pre_accepted", "accepted" or "ended".
func (c *Call) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Wait blocks until the call has ended and its terminate webhook has been
// delivered (or given up on), and returns the report. Violations and actions
// that arrive later (an action on the ended call) show in later Waits.
func (c *Call) Wait(ctx context.Context) (*Report, error) {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.rep.clone(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed when the call's report is final.
func (c *Call) Done() <-chan struct{} { return c.done }

// Hangup is the user hanging up: the call ends, media closes and Meta's
// terminate webhook (COMPLETED, with start/end/duration when answered) is
// sent. It returns once that is done.
func (c *Call) Hangup() error {
	if !c.userHangup() {
		return errors.New("wasim: call already ended")
	}
	<-c.done
	return nil
}

func (c *Call) userHangup() bool {
	c.mu.Lock()
	answered := !c.rep.AcceptAt.IsZero()
	c.mu.Unlock()
	switch {
	case answered:
		return c.finish(endSpec{outcome: OutcomeCompletedByUser, status: statusCompleted, webhook: true})
	case c.bic != nil:
		return c.userDeclines()
	}
	return c.finish(endSpec{outcome: OutcomeCancelledByUser, status: statusCompleted, webhook: true})
}

// finish ends the call once; later calls return false.
func (c *Call) finish(e endSpec) bool {
	c.mu.Lock()
	if c.state == StateEnded {
		c.mu.Unlock()
		return false
	}
	c.state = StateEnded
	c.end = e
	c.rep.EndAt = time.Now()
	c.rep.Outcome = e.outcome
	c.rep.TerminateErrorCode = e.code
	close(c.endCh)
	c.mu.Unlock()
	c.log.Info("call ended", zap.String("outcome", e.outcome), zap.Int("error_code", e.code))
	return true
}

// violation records a broken Meta rule on this call.
func (c *Call) violation(msg string) {
	c.mu.Lock()
	c.violationLocked(msg)
	c.mu.Unlock()
}

func (c *Call) violationLocked(msg string) {
	c.log.Warn("meta rule broken", zap.String("violation", msg))
	c.rep.Violations = append(c.rep.Violations, msg)
}

func (c *Call) addViolationIfLive(msg string) {
	c.mu.Lock()
	if c.state != StateEnded {
		c.rep.Violations = append(c.rep.Violations, msg)
	}
	c.mu.Unlock()
}

// run is the call's lifecycle: deliver the webhooks, watch the timers, and
// when the call ends close media, send the terminate webhook and finalise
// the report.
func (c *Call) run() {
	defer c.sim.wg.Done()
	defer close(c.done)
	s := c.sim
	secret := s.cfg.AppSecret
	if c.opts.WebhookSecret != "" {
		secret = c.opts.WebhookSecret
	}
	acceptTimer := time.NewTimer(s.cfg.AcceptTimeout)
	defer acceptTimer.Stop()

	if c.opts.SendTerminateFirst {
		c.finish(endSpec{outcome: OutcomeCancelledByUser, status: statusCompleted})
		c.deliver("terminate", secret, c.terminateEnvelope(), webhookAttempts)
		c.deliver("connect", secret, c.connectEnvelope(), webhookAttempts)
		select {
		case <-time.After(lateGrace):
		case <-s.ctx.Done():
		}
		c.closeMedia()
		c.finalise()
		return
	}

	if err := c.deliver("connect", secret, c.connectEnvelope(), webhookAttempts); err != nil {
		c.finish(endSpec{outcome: OutcomeWebhookRejected})
	} else if c.opts.SendDuplicateConnect {
		_ = c.deliver("connect (duplicate)", secret, c.connectEnvelope(), webhookAttempts)
	}

	watchdog := s.newWatchdog()
	defer watchdog.Stop()
loop:
	for {
		select {
		case <-c.endCh:
			break loop
		case <-s.ctx.Done():
			c.finish(endSpec{outcome: OutcomeSimClosed, status: statusCompleted, webhook: true})
		case <-acceptTimer.C:
			if c.State() != StateAccepted {
				c.finish(endSpec{outcome: OutcomeNotAnswered, status: statusFailed, webhook: true})
			}
		case now := <-watchdog.C:
			c.watch(now)
		}
	}
	c.closeMedia()
	c.mu.Lock()
	e := c.end
	c.mu.Unlock()
	if e.webhook {
		attempts := webhookAttempts
		s.mu.Lock()
		if s.closing {
			attempts = 1
		}
		s.mu.Unlock()
		_ = c.deliver("terminate", secret, c.terminateEnvelope(), attempts)
	}
	c.finalise()
}

func (s *Sim) newWatchdog() *time.Ticker {
	tick := min(s.cfg.NoMediaTimeout/10, 250*time.Millisecond)
	return time.NewTicker(max(tick, 10*time.Millisecond))
}

// watch enforces the media rules on a timer: no business media for
// NoMediaTimeout after accept (answer) ends the call with 138021 (Meta's
// client hangs up after about 20 s without media); an RTCP BYE not
// followed by a Graph terminate within byeGrace is a violation.
func (c *Call) watch(now time.Time) {
	s := c.sim
	c.mu.Lock()
	accepted := c.state == StateAccepted
	last := c.rep.AcceptAt
	if c.lastRecv.After(last) {
		last = c.lastRecv
	}
	if grace := time.Duration(s.byeGrace.Load()); !c.byeAt.IsZero() && !c.flaggedBye && c.state != StateEnded && now.Sub(c.byeAt) >= grace {
		c.flaggedBye = true
		c.violationLocked(fmt.Sprintf("media: RTCP BYE from the business but no Graph terminate within %s (Meta: terminate must be sent even after RTCP BYE)", grace))
	}
	c.mu.Unlock()
	if accepted && !c.external() && now.Sub(last) >= s.cfg.NoMediaTimeout {
		c.finish(endSpec{outcome: OutcomeMediaTimeout, status: statusFailed, webhook: true,
			code: ErrMediaReceiveTimeout, message: "Media receive timeout",
			details: fmt.Sprintf("no media from the business for %s", s.cfg.NoMediaTimeout)})
	}
}

// deliver posts one webhook (all its copies), notes it in the report's
// WebhooksSent and a failed delivery in WebhookFailures (a line per copy).
func (c *Call) deliver(event, secret string, env envelope, attempts int) error {
	c.mu.Lock()
	c.rep.WebhooksSent = append(c.rep.WebhooksSent, event)
	c.mu.Unlock()
	err := c.sim.postWebhook(c.sim.ctx, event, secret, marshal(env), attempts)
	if err != nil {
		c.log.Warn("webhook not delivered", zap.Error(err))
		c.mu.Lock()
		c.rep.WebhookFailures = append(c.rep.WebhookFailures, webhookFailures(err)...)
		c.mu.Unlock()
	}
	return err
}

// callEntry is the calls[] entry of one of the call's webhooks: the user
// calls the business (from the user, to the business number) or the
// business calls the user (from the business number, to the user's wa_id
// and to_user_id).
func (c *Call) callEntry(event string, at time.Time) webhookCall {
	wc := webhookCall{ID: c.id, Event: event, Timestamp: unixString(at)}
	if c.bic != nil {
		wc.Direction = directionBIC
		wc.From = c.sim.cfg.DisplayPhoneNumber
		wc.To, wc.ToUserID = c.opts.From, c.opts.FromUserID
		return wc
	}
	wc.Direction = directionUIC
	wc.From, wc.FromUserID = c.opts.From, c.opts.FromUserID
	wc.To = c.sim.cfg.DisplayPhoneNumber
	wc.CTAPayload, wc.DeeplinkPayload = c.opts.CTAPayload, c.opts.DeeplinkPayload
	return wc
}

// contact is the user as contacts[] shows them.
func (c *Call) contact() contact {
	return contact{Profile: profile{Name: c.opts.ProfileName}, WaID: c.opts.From, UserID: c.opts.FromUserID}
}

func (c *Call) connectEnvelope() envelope {
	wc := c.callEntry("connect", c.placedAt)
	wc.Session = &webhookSession{SDPType: "offer", SDP: c.offerSDP}
	return c.sim.envelopeFor(c, wc)
}

func (c *Call) terminateEnvelope() envelope {
	c.mu.Lock()
	e, acceptAt, endAt, opaque := c.end, c.rep.AcceptAt, c.rep.EndAt, c.bizOpaque
	c.mu.Unlock()
	if endAt.IsZero() {
		endAt = time.Now()
	}
	status := e.status
	if status == "" {
		status = statusCompleted
	}
	wc := c.callEntry("terminate", endAt)
	wc.Status, wc.BizOpaqueCallbackData = status, opaque
	if !acceptAt.IsZero() {
		d := int64(math.Round(endAt.Sub(acceptAt).Seconds()))
		wc.StartTime, wc.EndTime, wc.Duration = unixString(acceptAt), unixString(endAt), &d
	}
	if e.code != 0 {
		wc.Errors = []webhookError{{Code: e.code, Message: e.message, ErrorData: errorData{Details: e.details}}}
	}
	return c.sim.envelopeFor(c, wc)
}

// finalise analyses the received audio and freezes the report. Media is
// closed, so no goroutine writes the statistics any more.
func (c *Call) finalise() {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &c.rep
	r.SSRCsReceived = len(c.ssrcs)
	if r.SSRCsReceived > 1 {
		c.violationLocked(fmt.Sprintf("media: the business used %d SSRCs (Meta wants exactly one for the whole call)", r.SSRCsReceived))
	}
	if !r.FirstMediaAt.IsZero() && r.EndAt.After(c.lastRecv) {
		if gap := r.EndAt.Sub(c.lastRecv); gap > r.LongestSilenceGap {
			r.LongestSilenceGap = gap
		}
	}
	r.ReceivedSeconds = float64(len(c.pcm)) / analysisRate
	r.ReceivedFreqHz, r.ReceivedPurity, r.ReceivedLevelDBFS = analyse(c.pcm, analysisRate)
	if c.opts.KeepAudio {
		r.ReceivedPCM = c.pcm
	}
	c.pcm = nil
}

package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// Outcomes added by operations (see call.go for the others).
const (
	OutcomeTrunkDown   = "trunk_down"   // rejected at once: the route's trunk does not answer OPTIONS
	OutcomeDraining    = "draining"     // rejected: the gateway is draining (SIGTERM)
	OutcomeAdminHangup = "admin_hangup" // ended through the admin API
)

// Who ended a call, in call records.
const (
	byCaller  = "caller"  // the WhatsApp user (terminate webhook)
	byPBX     = "pbx"     // BYE or a final error response from the PBX
	byGateway = "gateway" // a timeout, a failure, a refusal, shutdown or drain
	byAdmin   = "admin"   // the admin API
)

// Causes a call's context is cancelled with.
var (
	errAdminHangup  = errors.New("hung up through the admin API")
	errDrainTimeout = errors.New("drain_timeout passed")
)

// Phases of a call, timestamped in its record.
const (
	phaseConnect = iota
	phasePreAccept
	phaseInvite
	phaseAnswer
	phaseAccept
	phaseEnd
	nPhases
)

// callOps is what operations keep about one call: phase times, the route,
// SIP and Meta results, the media bridge, for metrics, the admin API and
// the call record. Its methods are safe for concurrent use.
type callOps struct {
	mu           sync.Mutex
	at           [nPhases]time.Time
	route        Route
	routed       bool
	sipCode      int
	sipReason    string
	sipCodec     string
	hangupBy     string
	termStatus   string
	metaErrors   []RecordError
	bridge       *rtpbridge.Bridge
	waJitter     *jitterMeter
	sipJitter    *jitterMeter
	reported     rtpbridge.Stats // already added to the metrics
	activeCodec  string          // counted in active_bridged_calls
	cancel       context.CancelCauseFunc
	finishedOnce sync.Once
}

func newCallOps() *callOps {
	o := &callOps{}
	o.at[phaseConnect] = time.Now()
	return o
}

func (o *callOps) mark(phase int) {
	o.mu.Lock()
	o.at[phase] = time.Now()
	o.mu.Unlock()
}

// bind gives the call its own context, so the admin API can end it.
func (o *callOps) bind(parent context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(parent)
	o.mu.Lock()
	o.cancel = cancel
	o.mu.Unlock()
	return ctx
}

// hangup ends the call with cause (its context's cancellation).
func (o *callOps) hangup(cause error) bool {
	o.mu.Lock()
	cancel := o.cancel
	o.mu.Unlock()
	if cancel == nil {
		return false
	}
	cancel(cause)
	return true
}

func (o *callOps) setHangupBy(by string) {
	o.mu.Lock()
	if o.hangupBy == "" {
		o.hangupBy = by
	}
	o.mu.Unlock()
}

// routed records the route and decides whether the call may go on: it is
// refused while draining and when the route's trunk is marked down.
func (c *call) admit(route Route) (outcome, reason string) {
	c.ops.mu.Lock()
	c.ops.route, c.ops.routed = route, true
	c.ops.mu.Unlock()
	g := c.g
	if g.ops.draining.Load() {
		return OutcomeDraining, "gateway draining (SIGTERM): new calls are rejected"
	}
	if down, why := g.ops.monitor.down(route.Trunk); down {
		return OutcomeTrunkDown, "trunk " + quote(route.Trunk) + " is down: " + why
	}
	return "", ""
}

// sipResult records the INVITE's final response.
func (c *call) sipResult(code int, reason string) {
	c.ops.mu.Lock()
	c.ops.sipCode, c.ops.sipReason = code, reason
	c.ops.mu.Unlock()
	c.g.ops.metrics.sipFinal.WithLabelValues(itoa(code)).Inc()
}

// meterLegs wraps both legs' readers with jitter meters.
func (c *call) meterLegs(leg *webrtc.Leg, sc *sip.Call, codec sip.Codec) (wa, s rtpbridge.PacketReader) {
	c.ops.mu.Lock()
	defer c.ops.mu.Unlock()
	c.ops.sipCodec = codec.Name
	c.ops.waJitter = newJitterMeter(leg, 111, 48000)
	c.ops.sipJitter = newJitterMeter(sc, codec.PayloadType, codec.ClockRate)
	return c.ops.waJitter, c.ops.sipJitter
}

// codecChanged follows the PBX switching codec mid-call (re-INVITE or
// UPDATE): the jitter meter, the active-calls-by-codec gauge and the record.
func (c *call) codecChanged(codec sip.Codec) {
	o := c.ops
	o.mu.Lock()
	if strings.EqualFold(o.sipCodec, codec.Name) {
		o.mu.Unlock()
		return
	}
	o.sipCodec = codec.Name
	if o.sipJitter != nil {
		o.sipJitter.retarget(codec.PayloadType, codec.ClockRate)
	}
	old := o.activeCodec
	if old != "" {
		o.activeCodec = codecPath(codec.Name)
	}
	now := o.activeCodec
	o.mu.Unlock()
	if old != "" {
		m := c.g.ops.metrics
		m.activeByCodec.WithLabelValues(old).Dec()
		m.activeByCodec.WithLabelValues(now).Inc()
	}
	c.log.Debug("codec path changed", zap.String("codec_path", codecPath(codec.Name)))
}

// bridged is called once accept answered 200 and the bridge runs.
func (c *call) bridged(b *rtpbridge.Bridge) {
	o := c.ops
	o.mu.Lock()
	o.at[phaseAccept] = time.Now()
	o.bridge = b
	o.activeCodec = codecPath(o.sipCodec)
	setup := o.at[phaseAccept].Sub(o.at[phaseConnect])
	path := o.activeCodec
	o.mu.Unlock()
	m := c.g.ops.metrics
	m.setupLatency.Observe(setup.Seconds())
	m.activeByCodec.WithLabelValues(path).Inc()
	m.codecPaths.WithLabelValues(path).Inc()
}

// terminated records Meta's terminate webhook.
func (c *call) terminatedBy(ev whatsapp.CallEvent) {
	c.ops.mu.Lock()
	defer c.ops.mu.Unlock()
	c.ops.termStatus = ev.Status
	for _, e := range ev.Errors {
		c.ops.metaErrors = append(c.ops.metaErrors, RecordError{Source: "terminate_webhook", Code: e.Code, Message: e.Message})
	}
}

// graphFailed records the Graph error of a failed action.
func (c *call) graphFailed(action string, err error) {
	re := RecordError{Source: "graph_" + action, Message: err.Error()}
	var ge *whatsapp.GraphError
	if errors.As(err, &ge) {
		re.Code, re.Message = ge.Code, ge.Message
	}
	c.ops.mu.Lock()
	c.ops.metaErrors = append(c.ops.metaErrors, re)
	c.ops.mu.Unlock()
}

// flushMedia adds the media counters' growth to the metrics.
func (o *callOps) flushMedia(m *metrics) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bridge == nil {
		return
	}
	now := o.bridge.Stats()
	m.addMedia(now, o.reported)
	o.reported = now
}

// finish runs once when the call is over: it settles the outcome (a call
// ended through its context says why), updates the metrics and writes the
// call record.
func (c *call) finish(ctx context.Context, outcome, detail string) (string, string) {
	o := c.ops
	g := c.g
	m := g.ops.metrics
	if cause := context.Cause(ctx); ctx.Err() != nil {
		switch {
		case errors.Is(cause, errAdminHangup):
			outcome, detail = OutcomeAdminHangup, cause.Error()
			o.setHangupBy(byAdmin)
		case errors.Is(cause, errDrainTimeout):
			detail = cause.Error() + ": " + detail
			o.setHangupBy(byGateway)
		}
	}
	o.flushMedia(m)
	o.mu.Lock()
	o.at[phaseEnd] = time.Now()
	if o.hangupBy == "" {
		o.hangupBy = defaultHangupBy(outcome)
	}
	if o.activeCodec != "" {
		m.activeByCodec.WithLabelValues(o.activeCodec).Dec()
		o.activeCodec = ""
	}
	o.mu.Unlock()
	m.calls.WithLabelValues(outcome).Inc()

	rec := c.record(outcome, detail)
	if rec.Media != nil {
		m.jitter.WithLabelValues(dirWhatsAppToSIP).Observe(rec.Media.WhatsAppToSIP.JitterMs / 1000)
		m.jitter.WithLabelValues(dirSIPToWhatsApp).Observe(rec.Media.SIPToWhatsApp.JitterMs / 1000)
		m.mos.Observe(rec.MOS)
		if !rec.Times.Accept.IsZero() {
			m.callDuration.Observe(rec.Times.End.Sub(rec.Times.Accept).Seconds())
		}
	}
	g.ops.records.write(rec)
	c.log.Debug("call record written", zap.String("outcome", outcome), zap.String("hangup_by", rec.HangupBy))
	return outcome, detail
}

func defaultHangupBy(outcome string) string {
	switch outcome {
	case OutcomeCallerHungUp:
		return byCaller
	case OutcomePBXRejected:
		return byPBX
	case OutcomeAdminHangup:
		return byAdmin
	}
	return byGateway
}

// record builds the call record.
func (c *call) record(outcome, detail string) *CallRecord {
	o := c.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	ev := c.ev
	c.mu.Lock()
	sipCallID := c.sipCallID
	c.mu.Unlock()
	r := &CallRecord{
		CallID: ev.CallID, SIPCallID: sipCallID,
		PhoneNumberID: ev.PhoneNumberID, BusinessNumber: ev.DisplayPhoneNumber,
		Caller:          RecordCaller{Number: ev.From, BSUID: ev.FromUserID, Name: ev.ProfileName},
		CTAPayload:      ev.CTAPayload,
		DeeplinkPayload: ev.DeeplinkPayload,
		Outcome:         outcome, Reason: detail, HangupBy: o.hangupBy,
		TerminateStatus: o.termStatus, MetaErrors: o.metaErrors,
		SIPFinalCode: o.sipCode, SIPFinalReason: o.sipReason,
		SIPCodec: o.sipCodec, CodecPath: codecPath(o.sipCodec),
		Times: RecordTimes{
			Connect: o.at[phaseConnect], PreAccept: o.at[phasePreAccept], Invite: o.at[phaseInvite],
			Answer: o.at[phaseAnswer], Accept: o.at[phaseAccept], End: o.at[phaseEnd],
		},
	}
	if o.routed {
		r.Route, r.Trunk, r.Destination = o.route.Name, o.route.Trunk, o.route.Destination
	}
	if !r.Times.Accept.IsZero() {
		r.SetupMs = r.Times.Accept.Sub(r.Times.Connect).Milliseconds()
		r.TalkSeconds = round2(r.Times.End.Sub(r.Times.Accept).Seconds())
	}
	if o.bridge != nil {
		st := o.bridge.Stats()
		r.Media = &RecordMedia{
			WhatsAppToSIP: recordDirection(st.WhatsAppToSIP, o.waJitter.Jitter()),
			SIPToWhatsApp: recordDirection(st.SIPToWhatsApp, o.sipJitter.Jitter()),
			DigitsFromWA:  st.WhatsAppToSIP.Digits,
			DigitsFromSIP: sipDigits(st.SIPToWhatsApp),
		}
		toSIP, toWA := directionMOS(o.sipCodec,
			r.Media.WhatsAppToSIP.LossPct, r.Media.WhatsAppToSIP.JitterMs,
			r.Media.SIPToWhatsApp.LossPct, r.Media.SIPToWhatsApp.JitterMs)
		r.Media.WhatsAppToSIP.MOS, r.Media.SIPToWhatsApp.MOS = round2(toSIP), round2(toWA)
		r.MOS = round2(min(toSIP, toWA))
	}
	return r
}

func recordDirection(s rtpbridge.DirectionStats, jitter time.Duration) RecordDirection {
	return RecordDirection{
		PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, Lost: s.Lost,
		LossPct:  round2(lossPct(s.PacketsIn, s.Lost)),
		JitterMs: round2(float64(jitter) / float64(time.Millisecond)),
		Late:     s.Late, Concealed: s.Concealed, FECRecovered: s.FECRecovered,
	}
}

// liveCall is one active call as the admin API lists it.
type liveCall struct {
	CallID    string           `json:"call_id"`
	SIPCallID string           `json:"sip_call_id,omitempty"`
	State     string           `json:"state"`
	Caller    RecordCaller     `json:"caller"`
	Route     string           `json:"route,omitempty"`
	Trunk     string           `json:"trunk,omitempty"`
	CodecPath string           `json:"codec_path,omitempty"`
	Connect   time.Time        `json:"connect"`
	Accept    time.Time        `json:"accept,omitzero"`
	AgeSec    float64          `json:"age_seconds"`
	Media     *RecordMedia     `json:"media,omitempty"`
	Stats     *rtpbridge.Stats `json:"stats,omitempty"`
}

func (c *call) live() liveCall {
	c.mu.Lock()
	state, sipCallID := c.state, c.sipCallID
	c.mu.Unlock()
	o := c.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	l := liveCall{
		CallID: c.ev.CallID, SIPCallID: sipCallID, State: state,
		Caller:    RecordCaller{Number: c.ev.From, BSUID: c.ev.FromUserID, Name: c.ev.ProfileName},
		CodecPath: codecPath(o.sipCodec), Connect: o.at[phaseConnect], Accept: o.at[phaseAccept],
		AgeSec: round2(time.Since(o.at[phaseConnect]).Seconds()),
	}
	if o.routed {
		l.Route, l.Trunk = o.route.Name, o.route.Trunk
	}
	if o.bridge != nil {
		st := o.bridge.Stats()
		l.Stats = &st
		l.Media = &RecordMedia{
			WhatsAppToSIP: recordDirection(st.WhatsAppToSIP, o.waJitter.Jitter()),
			SIPToWhatsApp: recordDirection(st.SIPToWhatsApp, o.sipJitter.Jitter()),
			DigitsFromWA:  st.WhatsAppToSIP.Digits,
			DigitsFromSIP: sipDigits(st.SIPToWhatsApp),
		}
	}
	return l
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `'`) + `"` }

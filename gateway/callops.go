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
)

// Causes a call's context is cancelled with.
var (
	errAdminHangup  = errors.New("hung up through the admin API")
	errDrainTimeout = errors.New("drain_timeout passed")
)

// callOps is what operations keep about one call, read by the admin API,
// the metrics flush and the call record from other goroutines than the
// call's own. Its methods are safe for concurrent use.
type callOps struct {
	mu          sync.Mutex
	route       Route
	routed      bool
	sipCallID   string
	sipCode     int
	sipReason   string
	pbxWhy      sip.Reason // the Reason header of the PBX's final response or BYE
	sipCodec    string
	waCodec     string    // the WhatsApp leg's codec, once the bridge is built
	dtmfMode    string    // how caller digits go to the PBX
	dtmfFell    bool      // by the trunk's dtmf_fallback
	earlyAt     time.Time // the PBX's early media was bridged (early_media: answer)
	answerAt    time.Time // the PBX's 200 OK
	termStatus  string
	termSeen    bool
	termFailed  bool // our Graph terminate never succeeded
	metaErrors  []RecordError
	meta        *RecordMeta // what Meta's terminate webhook said of the call
	sentWhy     sip.Reason  // the Reason of the BYE, CANCEL or final response the gateway sent
	bridge      *rtpbridge.Bridge
	reported    rtpbridge.Stats // already added to the metrics
	activeCodec string          // counted in active_bridged_calls
	cancel      context.CancelCauseFunc

	// Business-initiated calls.
	outbound   bool
	waCallID   string // Meta's call id once Graph connect returned it
	callee     waUser
	agent      string // the INVITE's From user
	agentTrunk string
	outRoute   string
	pnid       string
	bizOpaque  string
	statuses   []string // Meta's call statuses, in order
}

func newCallOps() *callOps { return &callOps{} }

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

func (o *callOps) setRoute(r Route) {
	o.mu.Lock()
	o.route, o.routed = r, true
	o.mu.Unlock()
}

// admit decides whether a routed call may go on: it is refused while
// draining and when the route's trunk is marked down.
func (g *Gateway) admit(route Route) (endCause, bool) {
	if g.ops.draining.Load() {
		return endCause{kind: endDraining, detail: "gateway draining (SIGTERM): new calls are rejected"}, false
	}
	if down, why := g.ops.monitor.down(route.Trunk); down {
		return endCause{kind: endTrunkDown, detail: "trunk " + quote(route.Trunk) + " is down: " + why}, false
	}
	return endCause{}, true
}

// sipResult records the INVITE's final response.
func (o *callOps) sipResult(m *metrics, code int, reason string) {
	o.mu.Lock()
	o.sipCode, o.sipReason = code, reason
	o.mu.Unlock()
	m.sipFinal.WithLabelValues(itoa(code)).Inc()
}

// setOutbound records a business-initiated call's route and parties.
func (o *callOps) setOutbound(oc outboundCall, trunk, agent string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outbound, o.callee, o.agent, o.agentTrunk = true, oc.user, agent, trunk
	o.outRoute, o.pnid, o.bizOpaque = oc.route.Name, oc.pnid, oc.bizOpaque
}

// setCallID records Meta's id of a business-initiated call.
func (o *callOps) setCallID(id string) {
	o.mu.Lock()
	o.waCallID = id
	o.mu.Unlock()
}

// status records one of Meta's call statuses (RINGING, ACCEPTED, REJECTED).
func (o *callOps) status(s string) {
	o.mu.Lock()
	if len(o.statuses) < 8 {
		o.statuses = append(o.statuses, strings.ToUpper(s))
	}
	o.mu.Unlock()
}

// pbxReason records the Reason header (RFC 3326) the PBX gave with its
// final response or BYE, and counts it by protocol and cause.
func (o *callOps) pbxReason(m *metrics, why sip.Reason) {
	if why.IsZero() {
		return
	}
	o.mu.Lock()
	o.pbxWhy = why
	o.mu.Unlock()
	m.pbxReasons.WithLabelValues(why.Protocol, itoa(why.Cause)).Inc()
}

// answered records the PBX's dialog.
func (o *callOps) answered(sipCallID, codec string, at time.Time) {
	o.mu.Lock()
	o.sipCallID, o.sipCodec, o.answerAt = sipCallID, codec, at
	o.mu.Unlock()
}

// earlyMedia records that the call was bridged on the PBX's early media.
func (o *callOps) earlyMedia(codec string, at time.Time) {
	o.mu.Lock()
	o.sipCodec, o.earlyAt = codec, at
	o.mu.Unlock()
}

func (o *callOps) setDTMF(mode rtpbridge.DTMFMode, fellBack bool) {
	o.mu.Lock()
	o.dtmfMode, o.dtmfFell = mode.String(), fellBack
	o.mu.Unlock()
}

// setWhatsAppCodec records the codec the WhatsApp leg runs (opus, PCMU,
// PCMA).
func (o *callOps) setWhatsAppCodec(codec string) {
	o.mu.Lock()
	o.waCodec = codec
	o.mu.Unlock()
}

func (o *callOps) setBridge(b *rtpbridge.Bridge) {
	o.mu.Lock()
	o.bridge = b
	o.mu.Unlock()
}

// codecChanged follows the PBX switching codec mid-call (re-INVITE or
// UPDATE): the active-calls-by-codec gauge and the record.
func (o *callOps) codecChanged(m *metrics, codec sip.Codec) {
	o.mu.Lock()
	if strings.EqualFold(o.sipCodec, codec.Name) {
		o.mu.Unlock()
		return
	}
	o.sipCodec = codec.Name
	old := o.activeCodec
	if old != "" {
		o.activeCodec = codecPath(o.waCodec, codec.Name)
	}
	now := o.activeCodec
	o.mu.Unlock()
	if old != "" {
		m.activeByCodec.WithLabelValues(old).Dec()
		m.activeByCodec.WithLabelValues(now).Inc()
	}
}

// bridged counts a call whose media began, setup after the connect webhook.
func (o *callOps) bridged(m *metrics, setup time.Duration) {
	o.mu.Lock()
	o.activeCodec = codecPath(o.waCodec, o.sipCodec)
	path := o.activeCodec
	o.mu.Unlock()
	m.setupLatency.Observe(setup.Seconds())
	m.activeByCodec.WithLabelValues(path).Inc()
	m.codecPaths.WithLabelValues(path).Inc()
}

// terminated records Meta's terminate webhook.
func (o *callOps) terminated(ev whatsapp.CallEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.termSeen = true
	o.termStatus = ev.Status
	o.meta = &RecordMeta{Status: ev.Status, StartTime: ev.StartTime, EndTime: ev.EndTime,
		BizOpaque: ev.BizOpaqueCallbackData}
	if ev.Duration > 0 || !ev.StartTime.IsZero() {
		d := ev.Duration.Seconds()
		o.meta.DurationSeconds = &d
	}
	for _, e := range ev.Errors {
		o.metaErrors = append(o.metaErrors, RecordError{Source: "terminate_webhook", Code: e.Code, Message: e.Message, Details: e.Details})
	}
}

// reasonSent records the Reason (RFC 3326) of what the gateway sent the
// PBX to end the call: a BYE, a CANCEL, or a final response to an agent.
func (o *callOps) reasonSent(why sip.Reason) {
	o.mu.Lock()
	o.sentWhy = why
	o.mu.Unlock()
}

// setBizOpaque records the biz_opaque_callback_data sent with Graph accept.
func (o *callOps) setBizOpaque(v string) {
	o.mu.Lock()
	o.bizOpaque = v
	o.mu.Unlock()
}

func (o *callOps) terminateFailed() {
	o.mu.Lock()
	o.termFailed = true
	o.mu.Unlock()
}

func (o *callOps) wasTerminated() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.termSeen
}

func (o *callOps) terminateStatus() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.termStatus
}

// graphFailed records the Graph error of a failed action.
func (o *callOps) graphFailed(action string, err error) {
	re := RecordError{Source: "graph_" + action, Message: err.Error()}
	var ge *whatsapp.GraphError
	if errors.As(err, &ge) {
		re.Code, re.Message = ge.Code, ge.Message
	}
	o.mu.Lock()
	o.metaErrors = append(o.metaErrors, re)
	o.mu.Unlock()
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

// finish runs once the call is over on both sides: the outcome is decided
// (outcome.go), the metrics follow and the call record is written.
func (c *call) finish() (outcome, detail string) {
	o, m := c.ops, c.g.ops.metrics
	var seen mediaSeen
	if c.bridge != nil {
		st := c.bridge.Stats()
		seen = mediaSeen{fromWhatsApp: st.WhatsAppToSIP.PacketsIn > 0, fromPBX: st.SIPToWhatsApp.PacketsIn > 0}
	}
	outcome, hangupBy := decideOutcome(c.cause, c.reached(stateBridged), seen)
	direction := DirectionUserInitiated
	if c.outbound {
		direction = DirectionBusinessInitiated
		if hangupBy == byCaller {
			hangupBy = byUser // the WhatsApp user, who was called
		}
	}
	detail = c.cause.detail
	o.flushMedia(m)
	o.mu.Lock()
	if o.activeCodec != "" {
		m.activeByCodec.WithLabelValues(o.activeCodec).Dec()
		o.activeCodec = ""
	}
	o.mu.Unlock()
	rec := c.record(outcome, detail, hangupBy)
	m.calls.WithLabelValues(direction, outcome, rec.Trunk).Inc()
	if rec.Media != nil {
		m.jitter.WithLabelValues(dirWhatsAppToSIP).Observe(rec.Media.WhatsAppToSIP.JitterMs / 1000)
		m.jitter.WithLabelValues(dirSIPToWhatsApp).Observe(rec.Media.SIPToWhatsApp.JitterMs / 1000)
		if rec.MOS > 0 { // none when no audio arrived
			m.mos.Observe(rec.MOS)
		}
		if !rec.Times.Accept.IsZero() {
			m.callDuration.Observe(rec.Times.End.Sub(rec.Times.Accept).Seconds())
		}
	}
	c.g.ops.records.write(rec)
	c.log.Debug("call record written", zap.String("outcome", outcome), zap.String("hangup_by", hangupBy))
	return outcome, detail
}

// record builds the call record; its times are when the call entered each
// state.
func (c *call) record(outcome, detail, hangupBy string) *CallRecord {
	o, sm, ev := c.ops, c.sm, c.ev
	o.mu.Lock()
	defer o.mu.Unlock()
	r := &CallRecord{
		CallID: ev.CallID, SIPCallID: o.sipCallID,
		PhoneNumberID: ev.PhoneNumberID, BusinessNumber: ev.DisplayPhoneNumber,
		Caller:          RecordCaller{Number: ev.From, BSUID: ev.FromUserID, Name: ev.ProfileName},
		CTAPayload:      ev.CTAPayload,
		DeeplinkPayload: ev.DeeplinkPayload,
		Outcome:         outcome, Reason: detail, HangupBy: hangupBy,
		TerminateStatus: o.termStatus, TerminateFailed: o.termFailed, MetaErrors: o.metaErrors,
		SIPFinalCode: o.sipCode, SIPFinalReason: o.sipReason, PBXReason: recordReason(o.pbxWhy),
		ReasonSent: recordReason(o.sentWhy), BizOpaque: o.bizOpaque,
		SIPCodec: o.sipCodec, WhatsAppCodec: o.waCodec, CodecPath: codecPath(o.waCodec, o.sipCodec), DTMF: o.dtmfMode, DTMFFallback: o.dtmfFell,
		Times: RecordTimes{
			Connect:   sm.enteredAt(stateNew),
			PreAccept: sm.enteredAt(stateRinging), // pre_accept answered 200, the INVITE goes out
			Invite:    sm.enteredAt(stateRinging),
			Early:     o.earlyAt,
			Answer:    o.answerAt,
			Accept:    sm.enteredAt(stateBridged),
			End:       sm.enteredAt(stateEnded),
		},
	}
	if o.routed {
		r.Route, r.Trunk, r.Destination, r.AfterHours = o.route.Name, o.route.Trunk, o.route.Destination, o.route.AfterHours
	}
	if c.g711 != nil { // INVITEd first: pre_accept answered 200 after the PBX did
		r.Times.PreAccept = sm.enteredAt(stateAwaitingMedia)
	}
	r.Direction = DirectionUserInitiated
	if o.outbound {
		// A business-initiated call: the times are the agent's INVITE
		// (connect), Graph connect (invite), the user's answer (answer)
		// and the 200 OK to the agent (accept).
		r.Direction = DirectionBusinessInitiated
		r.CallID, r.PhoneNumberID = o.waCallID, o.pnid
		r.Caller = RecordCaller{}
		r.Callee = &RecordCaller{Number: o.callee.waID, BSUID: o.callee.bsuid}
		r.Agent, r.Route, r.Trunk, r.BizOpaque = o.agent, o.outRoute, o.agentTrunk, o.bizOpaque
		r.Statuses = append([]string(nil), o.statuses...)
		r.Times.PreAccept = time.Time{}
		r.Times.Invite = sm.enteredAt(stateConnecting)
		r.Times.Answer = sm.enteredAt(stateAwaitingMedia)
	}
	if !r.Times.Accept.IsZero() {
		r.SetupMs = r.Times.Accept.Sub(r.Times.Connect).Milliseconds()
		r.TalkSeconds = round2(r.Times.End.Sub(r.Times.Accept).Seconds())
	}
	if o.bridge != nil && !r.Times.Accept.IsZero() {
		var st rtpbridge.Stats
		r.Media, st = o.mediaLocked()
		r.MOS = st.MOS
	}
	if o.meta != nil {
		m := *o.meta
		r.Meta = &m
	}
	r.Disposition = disposition(r)
	r.BillableSeconds = billableSeconds(r)
	return r
}

// mediaLocked is the media part of a record or a live call, from the
// bridge's snapshot (its jitter, loss and MOS included), and the snapshot.
func (o *callOps) mediaLocked() (*RecordMedia, rtpbridge.Stats) {
	st := o.bridge.Stats()
	return &RecordMedia{
		WhatsAppToSIP: recordDirection(st.WhatsAppToSIP),
		SIPToWhatsApp: recordDirection(st.SIPToWhatsApp),
		DigitsFromWA:  st.WhatsAppToSIP.Digits,
		DigitsFromSIP: sipDigits(st.SIPToWhatsApp),
	}, st
}

func recordDirection(s rtpbridge.DirectionStats) RecordDirection {
	return RecordDirection{
		PacketsIn: s.PacketsIn, PacketsOut: s.PacketsOut, Lost: s.Lost,
		LossPct: s.LossPct, JitterMs: s.JitterMs, MOS: s.MOS,
		Late: s.Late, Concealed: s.Concealed, FECRecovered: s.FECRecovered,
		SilenceFrames: s.SilenceFrames, Underruns: s.Underruns, Overruns: s.Overruns,
		PacerResyncs: s.PacerResyncs, WriteErrors: s.WriteErrors, PlayoutDelayMs: s.PlayoutDelayMs,
	}
}

// liveCall is one active call as the admin API lists it.
type liveCall struct {
	Direction string           `json:"direction"`
	CallID    string           `json:"call_id"`
	SIPCallID string           `json:"sip_call_id,omitempty"`
	State     string           `json:"state"`
	Caller    RecordCaller     `json:"caller"`
	Callee    *RecordCaller    `json:"callee,omitempty"`
	Agent     string           `json:"agent,omitempty"`
	Route     string           `json:"route,omitempty"`
	Trunk     string           `json:"trunk,omitempty"`
	CodecPath string           `json:"codec_path,omitempty"`
	Connect   time.Time        `json:"connect"`
	Accept    time.Time        `json:"accept,omitzero"`
	AgeSec    float64          `json:"age_seconds"`
	Media     *RecordMedia     `json:"media,omitempty"`
	MOS       float64          `json:"mos"` // estimated so far, the worse direction (0 while no audio arrived)
	Stats     *rtpbridge.Stats `json:"stats,omitempty"`
}

func (c *call) live() liveCall {
	connect, accept := c.sm.enteredAt(stateNew), c.sm.enteredAt(stateBridged)
	l := liveCall{
		CallID: c.ev.CallID, State: c.sm.current().String(), Direction: DirectionUserInitiated,
		Caller:  RecordCaller{Number: c.ev.From, BSUID: c.ev.FromUserID, Name: c.ev.ProfileName},
		Connect: connect, Accept: accept,
		AgeSec: round2(time.Since(connect).Seconds()),
	}
	o := c.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	l.SIPCallID, l.CodecPath = o.sipCallID, codecPath(o.waCodec, o.sipCodec)
	if o.outbound {
		l.Direction, l.CallID, l.Caller = DirectionBusinessInitiated, o.waCallID, RecordCaller{}
		l.Callee = &RecordCaller{Number: o.callee.waID, BSUID: o.callee.bsuid}
		l.Agent, l.Route, l.Trunk = o.agent, o.outRoute, o.agentTrunk
	}
	if o.routed {
		l.Route, l.Trunk = o.route.Name, o.route.Trunk
	}
	if o.bridge != nil {
		media, st := o.mediaLocked()
		l.Media, l.Stats, l.MOS = media, &st, st.MOS
	}
	return l
}

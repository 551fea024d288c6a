package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
)

// CallRecord is written for every ended call, one JSON object per line.
// docs/call-records.md lists the fields.
type CallRecord struct {
	CallID string `json:"call_id"` // WhatsApp call id (wacid.…); empty if Meta never gave one
	// Direction: user_initiated (a WhatsApp user called the business) or
	// business_initiated (an agent called a WhatsApp user).
	Direction      string       `json:"direction"`
	SIPCallID      string       `json:"sip_call_id,omitempty"` // Call-ID of the SIP leg, once answered
	PhoneNumberID  string       `json:"phone_number_id"`
	BusinessNumber string       `json:"business_number,omitempty"` // display_phone_number
	Caller         RecordCaller `json:"caller"`
	// Business-initiated calls: the WhatsApp user called, the agent's
	// extension (the INVITE's From user) and Meta's call statuses in order
	// (RINGING, ACCEPTED, REJECTED).
	Callee *RecordCaller `json:"callee,omitempty"`
	Agent  string        `json:"agent,omitempty"`
	// BizOpaque is the biz_opaque_callback_data the gateway gave Meta (Graph
	// connect, or accept of a user-initiated call: call_records.biz_opaque),
	// which Meta's terminate webhook repeats.
	BizOpaque       string   `json:"biz_opaque_callback_data,omitempty"`
	Statuses        []string `json:"statuses,omitempty"`
	CTAPayload      string   `json:"cta_payload,omitempty"`
	DeeplinkPayload string   `json:"deeplink_payload,omitempty"`
	Route           string   `json:"route,omitempty"`
	Trunk           string   `json:"trunk,omitempty"`
	Destination     string   `json:"destination,omitempty"`
	AfterHours      bool     `json:"after_hours,omitempty"` // the route was closed: the call went to its after_hours_destination
	Outcome         string   `json:"outcome"`
	// Disposition is the outcome in the PBX's terms, as Asterisk's CDR:
	// ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION.
	Disposition string `json:"disposition"`
	// BillableSeconds is the talk time, whole seconds: Meta's start_time to
	// end_time when its terminate webhook gave them, else accept to end; 0
	// when the call was not answered (Asterisk's billsec).
	BillableSeconds int64  `json:"billable_seconds"`
	Reason          string `json:"reason,omitempty"`
	HangupBy        string `json:"hangup_by"` // caller, pbx, gateway, admin
	TerminateStatus string `json:"terminate_status,omitempty"`
	// TerminateFailed: the gateway's Graph terminate never succeeded within
	// its retries; Meta may bill the call until its own media timeout.
	TerminateFailed bool          `json:"terminate_failed,omitempty"`
	MetaErrors      []RecordError `json:"meta_errors,omitempty"`
	// Meta is what Meta's terminate webhook said of the call; absent when
	// none came.
	Meta           *RecordMeta `json:"meta,omitempty"`
	SIPFinalCode   int         `json:"sip_final_code,omitempty"`
	SIPFinalReason string      `json:"sip_final_reason,omitempty"`
	// PBXReason is the Reason header (RFC 3326) of the PBX's final
	// response or BYE: why the PBX ended or refused the call.
	PBXReason *RecordReason `json:"pbx_reason,omitempty"`
	// ReasonSent is the Reason header the gateway sent the PBX: of its BYE,
	// its CANCEL of a ringing INVITE, or its final response to an agent's
	// INVITE (business-initiated calls).
	ReasonSent *RecordReason `json:"reason_sent,omitempty"`
	SIPCodec   string        `json:"sip_codec,omitempty"`
	// WhatsAppCodec is the codec of the WhatsApp leg: opus, or PCMU/PCMA
	// on a whatsapp_codec: g711 trunk when Meta offered it and the PBX
	// took it (codec_path then pcmu-passthrough or pcma-passthrough).
	WhatsAppCodec string `json:"whatsapp_codec,omitempty"`
	CodecPath     string `json:"codec_path,omitempty"`
	DTMF          string `json:"dtmf,omitempty"` // how caller digits went to the PBX: rfc4733, info, inband
	// DTMFFallback: the trunk asked rfc4733 but the PBX's answer had no
	// telephone-event, so DTMF is the trunk's dtmf_fallback.
	DTMFFallback bool         `json:"dtmf_fallback,omitempty"`
	Times        RecordTimes  `json:"times"`
	SetupMs      int64        `json:"setup_ms,omitempty"`     // connect webhook → accept 200
	TalkSeconds  float64      `json:"talk_seconds,omitempty"` // accept → end
	Media        *RecordMedia `json:"media,omitempty"`
	MOS          float64      `json:"mos,omitempty"` // estimated, the worse direction
}

// Call directions, in records and metrics.
const (
	DirectionUserInitiated     = "user_initiated"
	DirectionBusinessInitiated = "business_initiated"
)

// RecordCaller is the WhatsApp user.
type RecordCaller struct {
	Number string `json:"number,omitempty"` // may be absent since 2026-05
	BSUID  string `json:"bsuid,omitempty"`
	Name   string `json:"name,omitempty"`
}

// RecordError is a Meta error: from the terminate webhook's errors[] or a
// failed Graph action.
type RecordError struct {
	Source  string `json:"source"` // terminate_webhook, graph_accept, …
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Details string `json:"details,omitempty"` // the terminate webhook's errors[].error_data.details
}

// RecordMeta is Meta's terminate webhook: its status (COMPLETED, FAILED),
// the call's start and end as Meta measured them, its duration and the
// biz_opaque_callback_data Meta repeats.
type RecordMeta struct {
	Status          string    `json:"status,omitempty"`
	StartTime       time.Time `json:"start_time,omitzero"`
	EndTime         time.Time `json:"end_time,omitzero"`
	DurationSeconds *float64  `json:"duration_seconds,omitempty"`
	BizOpaque       string    `json:"biz_opaque_callback_data,omitempty"`
}

// Dispositions, as Asterisk's CDR names them.
const (
	DispositionAnswered   = "ANSWERED"
	DispositionNoAnswer   = "NO ANSWER"
	DispositionBusy       = "BUSY"
	DispositionFailed     = "FAILED"
	DispositionCongestion = "CONGESTION"
)

// disposition is the record's outcome in Asterisk's CDR terms. A call
// accepted (media bridged) is ANSWERED however it ended. Otherwise, as
// Asterisk maps hangup causes: busy (486, 600, Q.850 17) is BUSY; a trunk
// down, a draining gateway or a congested PBX (503, Q.850 34/42) is
// CONGESTION; a call nobody answered in time, one the caller or agent gave
// up, or a user declined is NO ANSWER; anything else is FAILED.
func disposition(r *CallRecord) string {
	if !r.Times.Accept.IsZero() {
		return DispositionAnswered
	}
	cause := 0
	if r.PBXReason != nil && r.PBXReason.Protocol == "Q.850" {
		cause = r.PBXReason.Cause
	}
	switch {
	case r.SIPFinalCode == 486 || r.SIPFinalCode == 600 || cause == 17:
		return DispositionBusy
	case r.SIPFinalCode == 503 || cause == 34 || cause == 42:
		return DispositionCongestion
	}
	switch r.Outcome {
	case OutcomeTrunkDown, OutcomeDraining, OutcomeOverLimit, OutcomeClusterDown:
		return DispositionCongestion
	case OutcomeNoAnswer, OutcomeCallerHungUp, OutcomeAgentCancelled, OutcomeUserDeclined, OutcomePermissionTimeout:
		return DispositionNoAnswer
	case OutcomePBXRejected:
		switch r.SIPFinalCode {
		case 408, 480, 487:
			return DispositionNoAnswer
		}
	}
	return DispositionFailed
}

// billableSeconds is the talk time in whole seconds: Meta's start to end
// when given, else accept to end; 0 when the call was not answered.
func billableSeconds(r *CallRecord) int64 {
	if r.Times.Accept.IsZero() {
		return 0
	}
	d := r.Times.End.Sub(r.Times.Accept)
	if m := r.Meta; m != nil && !m.StartTime.IsZero() && !m.EndTime.IsZero() && !m.EndTime.Before(m.StartTime) {
		d = m.EndTime.Sub(m.StartTime)
	}
	return max(0, int64(math.Round(d.Seconds())))
}

// RecordReason is a SIP Reason header: Q.850 cause 16 is normal clearing,
// 17 user busy, 19 no answer, 21 call rejected.
type RecordReason struct {
	Protocol string `json:"protocol"` // Q.850 or SIP
	Cause    int    `json:"cause"`
	Text     string `json:"text,omitempty"`
}

func recordReason(r sip.Reason) *RecordReason {
	if r.IsZero() {
		return nil
	}
	return &RecordReason{Protocol: r.Protocol, Cause: r.Cause, Text: r.Text}
}

// RecordTimes are the phases of the call; a phase never reached is left out.
type RecordTimes struct {
	Connect   time.Time `json:"connect"`
	PreAccept time.Time `json:"pre_accept,omitzero"`
	Invite    time.Time `json:"invite,omitzero"`
	Early     time.Time `json:"early_media,omitzero"` // the PBX's 183 was bridged (early_media: answer)
	Answer    time.Time `json:"answer,omitzero"`      // the PBX's 200 OK
	Accept    time.Time `json:"accept,omitzero"`      // Graph accept answered 200
	End       time.Time `json:"end"`
}

// RecordMedia is the bridge's counters at the end of the call.
type RecordMedia struct {
	WhatsAppToSIP RecordDirection `json:"whatsapp_to_sip"`
	SIPToWhatsApp RecordDirection `json:"sip_to_whatsapp"`
	DigitsFromWA  uint64          `json:"digits_from_whatsapp"`
	DigitsFromSIP uint64          `json:"digits_from_sip"`
}

// RecordDirection is one direction's media.
type RecordDirection struct {
	PacketsIn    uint64  `json:"packets_in"`
	PacketsOut   uint64  `json:"packets_out"`
	Lost         uint64  `json:"lost"`
	LossPct      float64 `json:"loss_pct"`
	JitterMs     float64 `json:"jitter_ms"`
	Late         uint64  `json:"late"`
	Concealed    uint64  `json:"concealed"`
	FECRecovered uint64  `json:"fec_recovered"`
	MOS          float64 `json:"mos"`

	// How the output was paced (toward WhatsApp: the playout buffer).
	SilenceFrames  uint64 `json:"silence_frames,omitempty"`   // frames sent as silence for want of input
	Underruns      uint64 `json:"underruns,omitempty"`        // packets that came after their time to play
	Overruns       uint64 `json:"overruns,omitempty"`         // times the buffer dropped its oldest audio
	PacerResyncs   uint64 `json:"pacer_resyncs,omitempty"`    // times the pacer fell behind and skipped frames
	WriteErrors    uint64 `json:"write_errors,omitempty"`     // packets the output leg refused
	PlayoutDelayMs uint64 `json:"playout_delay_ms,omitempty"` // the delay the playout buffer aimed at last
}

// recorder appends records to the file and POSTs them to the URL.
type recorder struct {
	cfg     CallRecordsConfig
	token   string // never logged
	log     *zap.Logger
	m       *metrics
	client  *http.Client
	urlHost string // for logs: the URL may carry a secret in its path or query

	mu     sync.Mutex
	f      *os.File
	closed bool

	queue chan []byte
	stop  chan struct{}
	wg    sync.WaitGroup
}

const recordQueue = 1024

func newRecorder(cfg CallRecordsConfig, token string, log *zap.Logger, m *metrics) *recorder {
	r := &recorder{cfg: cfg, token: token, log: log, m: m, stop: make(chan struct{})}
	if cfg.URL != "" {
		if u, err := url.Parse(cfg.URL); err == nil {
			r.urlHost = u.Host
		}
		r.client = &http.Client{Timeout: cfg.URLTimeout}
		r.queue = make(chan []byte, recordQueue)
	}
	return r
}

// start opens the file and starts the sender.
func (r *recorder) start() error {
	if err := r.reopen(); err != nil {
		return err
	}
	if r.queue != nil {
		r.wg.Add(1)
		go r.send()
	}
	return nil
}

// reopen (re)opens the file, e.g. after logrotate moved it (SIGHUP).
func (r *recorder) reopen() error {
	if r.cfg.File == "" {
		return nil
	}
	f, err := os.OpenFile(r.cfg.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("call_records.file: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// write appends the record to the file at once and queues it for the URL.
func (r *recorder) write(rec *CallRecord) { r.writeLine(rec, rec.CallID) }

// csv reports whether the file is written as Asterisk's Master.csv.
func (r *recorder) csv() bool { return strings.EqualFold(r.cfg.Format, RecordFormatCSV) }

// writeLine writes any record line (a call, a voicemail, an account event:
// lines other than calls carry a "type"); ref names it in logs. In csv
// format the file gets only calls, as Master.csv lines; the URL always
// gets JSON.
func (r *recorder) writeLine(rec any, ref string) {
	line, err := json.Marshal(rec)
	if err != nil {
		r.log.Error("call record: encode", zap.Error(err))
		return
	}
	line = append(line, '\n')
	fileLine := line
	if r.csv() {
		fileLine = nil
		if cr, ok := rec.(*CallRecord); ok {
			fileLine = csvLine(cr)
		}
	}
	r.mu.Lock()
	closed := r.closed
	if r.f != nil && !closed && fileLine != nil {
		if _, err := r.f.Write(fileLine); err != nil {
			r.m.records.WithLabelValues("file", "error").Inc()
			r.log.Error("call record: write", zap.String("file", r.cfg.File), zap.Error(err))
		} else {
			r.m.records.WithLabelValues("file", "ok").Inc()
		}
	}
	r.mu.Unlock()
	if r.queue == nil || closed {
		return
	}
	select {
	case r.queue <- line:
	default:
		r.m.recordsDropped.Inc()
		r.log.Warn("call record: POST queue full, record not sent", zap.String("ref", ref))
	}
}

// send POSTs the queued records one at a time.
func (r *recorder) send() {
	defer r.wg.Done()
	for {
		select {
		case line := <-r.queue:
			r.post(line)
		case <-r.stop:
			for { // what is queued still goes, bounded by close's ctx
				select {
				case line := <-r.queue:
					r.post(line)
				default:
					return
				}
			}
		}
	}
}

// post tries 1+URLRetries times, on network errors, 429 and 5xx, with a
// doubling backoff.
func (r *recorder) post(line []byte) {
	backoff := 500 * time.Millisecond
	var last string
	for attempt := 0; attempt <= r.cfg.URLRetries; attempt++ {
		if attempt > 0 {
			wait := backoff + rand.N(backoff/2)
			backoff = min(backoff*2, 30*time.Second)
			select {
			case <-time.After(wait):
			case <-r.stop:
				if attempt > 1 { // shutting down: one retry at most
					r.fail(last)
					return
				}
			}
		}
		retry, err := r.postOnce(line)
		if err == nil {
			r.m.records.WithLabelValues("url", "ok").Inc()
			return
		}
		last = err.Error()
		if !retry {
			break
		}
	}
	r.fail(last)
}

func (r *recorder) fail(last string) {
	r.m.records.WithLabelValues("url", "error").Inc()
	r.log.Warn("call record: POST failed", zap.String("host", r.urlHost), zap.String("error", last))
}

func (r *recorder) postOnce(line []byte) (retry bool, err error) {
	req, err := http.NewRequest(http.MethodPost, r.cfg.URL, bytes.NewReader(line))
	if err != nil {
		return false, fmt.Errorf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wagateway")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	res, err := r.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL; keep only what went wrong.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return true, err
	}
	_ = res.Body.Close()
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return false, nil
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return true, fmt.Errorf("HTTP %d", res.StatusCode)
	}
	return false, fmt.Errorf("HTTP %d (not retried)", res.StatusCode)
}

// close flushes what is queued (bounded by ctx) and closes the file.
func (r *recorder) close(ctx context.Context) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.log.Warn("call records: POST queue not flushed before shutdown", zap.Int("left", len(r.queue)))
	}
	r.mu.Lock()
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
	r.mu.Unlock()
}

func itoa(i int) string { return strconv.Itoa(i) }

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// csvColumns are the columns of call_records.format: csv, in the order of
// Asterisk's Master.csv (cdr_csv with loguniqueid and loguserfield).
var csvColumns = []string{"accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel",
	"lastapp", "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
	"uniqueid", "userfield"}

// csvTime is Master.csv's time format (UTC: usegmtime).
const csvTime = "2006-01-02 15:04:05"

// csvLine is the record as one Master.csv line: text fields in double
// quotes (a quote doubled), duration and billsec bare, as cdr_csv writes.
func csvLine(r *CallRecord) []byte {
	src, dst := r.Caller.Number, r.Destination
	if src == "" {
		src = r.Caller.BSUID
	}
	clidName := r.Caller.Name
	dstChannel := ""
	if r.Trunk != "" {
		dstChannel = "SIP/" + r.Trunk
		if r.SIPCallID != "" {
			dstChannel += "-" + r.SIPCallID
		}
	}
	channel := "WhatsApp/" + r.CallID
	lastData := ""
	if r.Trunk != "" {
		lastData = "SIP/" + r.Trunk + "/" + r.Destination
	}
	if r.Direction == DirectionBusinessInitiated {
		// The agent called the WhatsApp user: the channels swap.
		src, clidName = r.Agent, ""
		dst = ""
		if r.Callee != nil {
			dst = r.Callee.Number
			if dst == "" {
				dst = r.Callee.BSUID
			}
		}
		channel, dstChannel = dstChannel, "WhatsApp/"+r.CallID
		lastData = "WhatsApp/" + dst
	}
	clid := "<" + src + ">"
	if clidName != "" {
		clid = `"` + clidName + `" ` + clid
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(csvTime)
	}
	duration := int64(0)
	if !r.Times.End.IsZero() && !r.Times.Connect.IsZero() {
		duration = max(0, int64(math.Round(r.Times.End.Sub(r.Times.Connect).Seconds())))
	}
	var b bytes.Buffer
	q := func(s string) {
		b.WriteByte('"')
		for _, c := range s {
			switch c {
			case '"':
				b.WriteString(`""`)
			case '\n', '\r':
				b.WriteByte(' ')
			default:
				b.WriteRune(c)
			}
		}
		b.WriteString(`",`)
	}
	for _, s := range []string{r.PhoneNumberID, src, dst, r.Route, clid, channel, dstChannel, "Dial", lastData,
		ts(r.Times.Connect), ts(r.Times.Accept), ts(r.Times.End)} {
		q(s)
	}
	b.WriteString(strconv.FormatInt(duration, 10) + ",")
	b.WriteString(strconv.FormatInt(r.BillableSeconds, 10) + ",")
	for _, s := range []string{r.Disposition, "DOCUMENTATION", r.CallID, r.SIPCallID} {
		q(s)
	}
	line := b.Bytes()
	line[len(line)-1] = '\n' // the last comma
	return line
}

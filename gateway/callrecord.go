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
	// extension (the INVITE's From user), biz_opaque_callback_data sent
	// to Meta, and Meta's call statuses in order (RINGING, ACCEPTED, REJECTED).
	Callee          *RecordCaller `json:"callee,omitempty"`
	Agent           string        `json:"agent,omitempty"`
	BizOpaque       string        `json:"biz_opaque_callback_data,omitempty"`
	Statuses        []string      `json:"statuses,omitempty"`
	CTAPayload      string        `json:"cta_payload,omitempty"`
	DeeplinkPayload string        `json:"deeplink_payload,omitempty"`
	Route           string        `json:"route,omitempty"`
	Trunk           string        `json:"trunk,omitempty"`
	Destination     string        `json:"destination,omitempty"`
	AfterHours      bool          `json:"after_hours,omitempty"` // the route was closed: the call went to its after_hours_destination
	Outcome         string        `json:"outcome"`
	Reason          string        `json:"reason,omitempty"`
	HangupBy        string        `json:"hangup_by"` // caller, pbx, gateway, admin
	TerminateStatus string        `json:"terminate_status,omitempty"`
	// TerminateFailed: the gateway's Graph terminate never succeeded within
	// its retries; Meta may bill the call until its own media timeout.
	TerminateFailed bool          `json:"terminate_failed,omitempty"`
	MetaErrors      []RecordError `json:"meta_errors,omitempty"`
	SIPFinalCode    int           `json:"sip_final_code,omitempty"`
	SIPFinalReason  string        `json:"sip_final_reason,omitempty"`
	// PBXReason is the Reason header (RFC 3326) of the PBX's final
	// response or BYE: why the PBX ended or refused the call.
	PBXReason *RecordReason `json:"pbx_reason,omitempty"`
	SIPCodec  string        `json:"sip_codec,omitempty"`
	CodecPath string        `json:"codec_path,omitempty"`
	DTMF      string        `json:"dtmf,omitempty"` // how caller digits went to the PBX: rfc4733, info, inband
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

// writeLine writes any record line (a call, a voicemail, an account event:
// lines other than calls carry a "type"); ref names it in logs.
func (r *recorder) writeLine(rec any, ref string) {
	line, err := json.Marshal(rec)
	if err != nil {
		r.log.Error("call record: encode", zap.Error(err))
		return
	}
	line = append(line, '\n')
	r.mu.Lock()
	closed := r.closed
	if r.f != nil && !closed {
		if _, err := r.f.Write(line); err != nil {
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

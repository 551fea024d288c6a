package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp"
)

// Voicemails: a caller who left a voicemail (Meta's voicemail setting)
// shows up as an inbound audio message whose id is the call's id. The
// gateway writes a record line of type voicemail with that call id beside
// the call's own record, and, when configured, downloads the audio to
// call_records.voicemail_dir and POSTs it to call_records.voicemail_url.

// mediaDownloader fetches a media object by id (the Graph client).
type mediaDownloader interface {
	DownloadMedia(ctx context.Context, mediaID string, maxBytes int64, w io.Writer) (string, error)
}

const (
	maxVoicemailBytes = 16 << 20 // a minute or two of OGG/Opus is far less
	voicemailTimeout  = 60 * time.Second
	maxVoicemailJobs  = 4 // downloads at once; more are refused, not queued without bound
)

// VoicemailRecord is the record line of a voicemail ("type": "voicemail").
type VoicemailRecord struct {
	Type          string    `json:"type"` // voicemail
	CallID        string    `json:"call_id"`
	At            time.Time `json:"at"`
	PhoneNumberID string    `json:"phone_number_id"`
	From          string    `json:"from,omitempty"`
	FromBSUID     string    `json:"from_bsuid,omitempty"`
	MediaID       string    `json:"media_id"`
	MimeType      string    `json:"mime_type,omitempty"`
	// KnownCall: the call went through this gateway (its record is in the
	// same records, same call_id).
	KnownCall bool   `json:"known_call"`
	File      string `json:"file,omitempty"`      // where it was downloaded
	Forwarded bool   `json:"forwarded,omitempty"` // POSTed to voicemail_url
	Error     string `json:"error,omitempty"`
}

// handleVoicemail takes a voicemail webhook (a webhook worker goroutine):
// the download and forward run in the background, bounded.
func (g *Gateway) handleVoicemail(v whatsapp.Voicemail) {
	rec := VoicemailRecord{Type: "voicemail", CallID: v.CallID, At: g.now(), PhoneNumberID: v.PhoneNumberID, From: v.From,
		FromBSUID: v.FromUserID, MediaID: v.MediaID, MimeType: v.MimeType, KnownCall: g.reg.knownEnded(v.CallID)}
	log := g.log.Named("voicemail").With(zap.String("call_id", v.CallID), zap.String("phone_number_id", v.PhoneNumberID))
	cfg := g.cfg.CallRecords
	if cfg.VoicemailDir == "" && cfg.VoicemailURL == "" {
		log.Info("voicemail left", zap.Bool("known_call", rec.KnownCall))
		g.ops.metrics.voicemails.WithLabelValues("recorded").Inc()
		g.ops.records.writeLine(rec, v.CallID)
		return
	}
	select {
	case g.voicemailJobs <- struct{}{}:
	default:
		rec.Error = "too many voicemails downloading at once: not downloaded"
		log.Warn("voicemail not downloaded: too many at once")
		g.ops.metrics.voicemails.WithLabelValues("download_failed").Inc()
		g.ops.records.writeLine(rec, v.CallID)
		return
	}
	g.ops.wg.Add(1)
	go func() {
		defer g.ops.wg.Done()
		defer func() { <-g.voicemailJobs }()
		g.fetchVoicemail(rec, log)
	}()
}

func (g *Gateway) fetchVoicemail(rec VoicemailRecord, log *zap.Logger) {
	defer g.ops.records.writeLine(&rec, rec.CallID)
	ctx, cancel := context.WithTimeout(g.ctx, voicemailTimeout)
	defer cancel()
	var buf bytes.Buffer
	mime, err := g.mediaAPI.DownloadMedia(ctx, rec.MediaID, maxVoicemailBytes, &buf)
	if err != nil {
		rec.Error = "download: " + err.Error()
		log.Warn("voicemail not downloaded", zap.Error(err))
		g.ops.metrics.voicemails.WithLabelValues("download_failed").Inc()
		return
	}
	if mime != "" {
		rec.MimeType = mime
	}
	cfg := g.cfg.CallRecords
	if dir := cfg.VoicemailDir; dir != "" {
		path := filepath.Join(dir, safeFileName(rec.CallID)+".ogg")
		tmp := path + ".part"
		if err := os.WriteFile(tmp, buf.Bytes(), 0o640); err != nil || os.Rename(tmp, path) != nil {
			rec.Error = fmt.Sprintf("write %s: %v", path, err)
			log.Warn("voicemail not written", zap.String("file", path), zap.Error(err))
			g.ops.metrics.voicemails.WithLabelValues("download_failed").Inc()
		} else {
			rec.File = path
			g.ops.metrics.voicemails.WithLabelValues("downloaded").Inc()
		}
	}
	if u := cfg.VoicemailURL; u != "" {
		if err := g.forwardVoicemail(ctx, u, rec, buf.Bytes()); err != nil {
			rec.Error = strings.TrimPrefix(rec.Error+"; ", "; ") + "forward: " + err.Error()
			log.Warn("voicemail not forwarded", zap.Error(err))
			g.ops.metrics.voicemails.WithLabelValues("forward_failed").Inc()
		} else {
			rec.Forwarded = true
			g.ops.metrics.voicemails.WithLabelValues("forwarded").Inc()
		}
	}
	log.Info("voicemail left", zap.String("file", rec.File), zap.Bool("forwarded", rec.Forwarded), zap.Bool("known_call", rec.KnownCall))
}

// forwardVoicemail POSTs the audio with the call's ids in headers (and the
// records' bearer token, if any).
func (g *Gateway) forwardVoicemail(ctx context.Context, url string, rec VoicemailRecord, audio []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(audio))
	if err != nil {
		return err
	}
	ct := rec.MimeType
	if ct == "" {
		ct = "audio/ogg"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-WA-Call-ID", rec.CallID)
	req.Header.Set("X-WA-Phone-Number-ID", rec.PhoneNumberID)
	if rec.From != "" {
		req.Header.Set("X-WA-From", rec.From)
	}
	if tok := g.ops.recordsToken; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", res.StatusCode)
	}
	return nil
}

// safeFileName keeps letters, digits, '.', '_' and '-' of a call id.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Media: the voicemail announcement upload (R3) and the download of a
// media by id (voicemails, W9).

const (
	// MaxVoicemailAnnouncementBytes bounds the announcement
	// UploadVoicemailAnnouncement reads (Meta's limit for audio media is
	// 16 MB; less than 60 s of Opus is far smaller).
	MaxVoicemailAnnouncementBytes = 16 << 20
	// MaxVoicemailAnnouncement is the longest announcement Meta takes
	// ("duration must be less than 60 seconds").
	MaxVoicemailAnnouncement = 60 * time.Second
	// DefaultMaxMediaBytes is DownloadMedia's bound when given none: Meta's
	// largest audio media.
	DefaultMaxMediaBytes = 16 << 20
)

// ErrMediaTooLarge is wrapped by DownloadMedia's error when the media is
// larger than its bound (said by Meta, or found while reading).
var ErrMediaTooLarge = errors.New("media larger than the bound")

// UploadVoicemailAnnouncement is R3 (POST /{PNID}/media, multipart): it uploads the OGG/Opus announcement and returns its media id, for VoicemailPrompt.AnnouncementMediaID.
//
// The form carries messaging_product=whatsapp,
// use_case=call_voicemail_announcement (no 30-day expiry; the media can
// only be an announcement), type=audio/ogg and the file (audio/ogg). ogg
// is read whole first, at most MaxVoicemailAnnouncementBytes, and must be
// an Ogg stream whose first packet is an OpusHead and which lasts less
// than MaxVoicemailAnnouncement; anything else is refused before sending.
// filename is reduced to a base name ("announcement.ogg" if none).
//
// Like a message, an upload is repeated only when it provably did nothing
// (never sent whole, or throttled): one that may have arrived gives an
// error wrapping ErrOutcomeUnknown (an orphan upload does no harm; upload
// again).
func (c *GraphClient) UploadVoicemailAnnouncement(ctx context.Context, phoneNumberID string, filename string, ogg io.Reader) (mediaID string, err error) {
	wrap := func(err error) error {
		return fmt.Errorf("whatsapp voicemail announcement upload to %s: %w", phoneNumberID, err)
	}
	if err := c.checkCommon(phoneNumberID); err != nil {
		return "", wrap(err)
	}
	if ogg == nil {
		return "", wrap(errors.New("no audio"))
	}
	audio, err := io.ReadAll(io.LimitReader(ogg, MaxVoicemailAnnouncementBytes+1))
	if err != nil {
		return "", wrap(fmt.Errorf("reading the audio: %w", err))
	}
	if len(audio) > MaxVoicemailAnnouncementBytes {
		return "", wrap(fmt.Errorf("audio is more than %d bytes", MaxVoicemailAnnouncementBytes))
	}
	d, err := OggOpusDuration(audio)
	if err != nil {
		return "", wrap(fmt.Errorf("not an OGG/Opus file as Meta requires: %w", err))
	}
	if d >= MaxVoicemailAnnouncement {
		return "", wrap(fmt.Errorf("announcement lasts %v, Meta takes less than %v", d.Round(time.Millisecond), MaxVoicemailAnnouncement))
	}
	body, contentType, err := announcementForm(filename, audio)
	if err != nil {
		return "", wrap(err)
	}
	gr := &graphRequest{
		action: "voicemail_upload", method: http.MethodPost, phoneNumberID: phoneNumberID, edge: "media",
		payload: body, contentType: contentType, replayable: false, throttleRetry: true,
		decode: func(b []byte) error {
			var resp struct {
				ID flexScalar `json:"id"`
			}
			if err := json.Unmarshal(b, &resp); err != nil {
				return errors.New("not JSON")
			}
			if blankID(string(resp.ID)) {
				return errors.New("no id")
			}
			mediaID = string(resp.ID)
			return nil
		},
	}
	log := c.log.With(zap.String("action", gr.action), zap.String("phone_number_id", phoneNumberID))
	if err := c.do(ctx, gr, log); err != nil {
		return "", wrap(err)
	}
	return mediaID, nil
}

// announcementForm builds R3's multipart body.
func announcementForm(filename string, audio []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range [][2]string{
		{"messaging_product", "whatsapp"},
		{"use_case", "call_voicemail_announcement"},
		{"type", "audio/ogg"},
	} {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, "", err
		}
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{
		"name": "file", "filename": uploadFilename(filename),
	}))
	h.Set("Content-Type", "audio/ogg")
	part, err := mw.CreatePart(h)
	if err != nil {
		return nil, "", err
	}
	if _, err := part.Write(audio); err != nil {
		return nil, "", err
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// uploadFilename keeps the base name of filename in printable ASCII,
// bounded: it goes into a header.
func uploadFilename(filename string) string {
	name := path.Base(strings.ReplaceAll(filename, `\`, "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '"' || r == '/' {
			return '_'
		}
		return r
	}, name)
	if len(name) > 100 {
		name = name[len(name)-100:]
	}
	if name == "" || name == "." || name == "_" {
		return "announcement.ogg"
	}
	return name
}

// mediaURL is the answer of GET /{media-id}.
type mediaURL struct {
	URL      string     `json:"url"`
	MimeType string     `json:"mime_type"`
	FileSize flexScalar `json:"file_size"`
}

// DownloadMedia fetches a media by id: GET /{media-id} for its URL, then that URL with the access token; writes at most maxBytes to w.
//
// maxBytes <= 0 means DefaultMaxMediaBytes. A media Meta says is larger,
// or that turns out larger while read, gives an error wrapping
// ErrMediaTooLarge. Both requests are repeated after network errors and
// 5xx as reads are, the download only while nothing was written to w; on
// an error, w may hold part of the media and must be discarded. The URL
// must be https (or share the Graph base URL's scheme and host, for a
// simulator): the token is never sent in the clear elsewhere. mimeType is
// Meta's mime_type, else the download's Content-Type.
func (c *GraphClient) DownloadMedia(ctx context.Context, mediaID string, maxBytes int64, w io.Writer) (mimeType string, err error) {
	wrap := func(err error) error { return fmt.Errorf("whatsapp media %s download: %w", mediaID, err) }
	if err := checkMediaID(mediaID); err != nil {
		return "", wrap(err)
	}
	if err := c.checkCommon(mediaID); err != nil {
		return "", wrap(err)
	}
	if w == nil {
		return "", wrap(errors.New("nowhere to write"))
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMediaBytes
	}
	log := c.log.With(zap.String("media_id", mediaID))
	var info mediaURL
	gr := &graphRequest{
		action: "media_url", method: http.MethodGet, phoneNumberID: mediaID,
		replayable: true, throttleRetry: true,
		decode: func(b []byte) error {
			if err := json.Unmarshal(b, &info); err != nil {
				return errors.New("not JSON")
			}
			if strings.TrimSpace(info.URL) == "" {
				return errors.New("no url")
			}
			return nil
		},
	}
	if err := c.do(ctx, gr, log.With(zap.String("action", gr.action))); err != nil {
		return "", wrap(err)
	}
	if size, ok := info.FileSize.float(); ok && size > float64(maxBytes) {
		return "", wrap(fmt.Errorf("%w: Meta says %.0f bytes, the bound is %d", ErrMediaTooLarge, size, maxBytes))
	}
	if err := c.checkMediaURL(info.URL); err != nil {
		return "", wrap(err)
	}
	mimeType = info.MimeType
	dl := &graphRequest{
		action: "media_download", method: http.MethodGet, phoneNumberID: mediaID, rawURL: info.URL,
		replayable: true, throttleRetry: true,
		stream: func(resp *http.Response) (bool, error) {
			if resp.ContentLength > maxBytes {
				return false, fmt.Errorf("%w: %d bytes, the bound is %d", ErrMediaTooLarge, resp.ContentLength, maxBytes)
			}
			cw := &countingWriter{w: w}
			if _, err := io.Copy(cw, io.LimitReader(resp.Body, maxBytes)); err != nil {
				if cw.err != nil {
					return false, fmt.Errorf("writing the media: %w", err)
				}
				return cw.n == 0, fmt.Errorf("reading the media after %d bytes: %w", cw.n, err)
			}
			var one [1]byte
			if n, _ := io.ReadFull(resp.Body, one[:]); n > 0 {
				return false, fmt.Errorf("%w: more than %d bytes", ErrMediaTooLarge, maxBytes)
			}
			if mimeType == "" {
				mimeType = resp.Header.Get("Content-Type")
			}
			return false, nil
		},
	}
	if err := c.do(ctx, dl, log.With(zap.String("action", dl.action))); err != nil {
		return "", wrap(err)
	}
	return mimeType, nil
}

// checkMediaID accepts Meta's media ids (digits in practice): letters,
// digits, '.', '_' and '-', at most 128 bytes.
func checkMediaID(id string) error {
	if id == "" {
		return errors.New("no media id")
	}
	if err := checkBSUID(id); err != nil {
		return fmt.Errorf("media id: %w", err)
	}
	return nil
}

// checkMediaURL refuses a URL the access token must not go to: not https,
// unless it has the Graph base URL's scheme and host.
func (c *GraphClient) checkMediaURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: the media URL does not parse", ErrUnexpectedResponse)
	}
	if u.Scheme == "https" {
		return nil
	}
	if base, err := url.Parse(c.base); err == nil && u.Scheme == base.Scheme && u.Host == base.Host {
		return nil
	}
	return fmt.Errorf("%w: the media URL is %s://%s, not https: the access token is not sent there",
		ErrUnexpectedResponse, u.Scheme, u.Host)
}

// countingWriter counts what reached w and keeps w's error apart from
// the reader's.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

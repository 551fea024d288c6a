package wasim

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Meta's media API as far as calling needs it: the voicemail announcement
// upload (R3, POST /{PNID}/media, multipart, use_case=call_voicemail_announcement,
// OGG/Opus shorter than 60 s), the media URL (GET /{media_id}) and the
// download (GET <url> with the bearer token), which serves the voicemails
// SendVoicemail leaves.
//
// Inferred where Meta's documents are silent:
//   - an upload without use_case is ordinary media, taken as it is (it is not
//     a voicemail announcement); another use_case is refused;
//   - every refusal is code 100, HTTP 400, with "Param file must be a file
//     with one of the following types: audio/ogg" when the file is not
//     OGG/Opus or declares another type, and details naming the problem;
//   - the Ogg pages are checked whole (capture pattern, version 0, sizes,
//     CRC-32 of RFC 3533); the first page must carry OpusHead (RFC 7845);
//     the duration is the last granule position minus OpusHead's pre-skip,
//     over 48,000, and must be under 60 s ("Duration must be less than 60
//     seconds");
//   - media ids are decimal numbers below 2^53, as Meta's are; GET
//     /{media_id} answers sha256 in hex and file_size as a number, the
//     webhook's audio.sha256 is base64 (as Meta's samples show); the URL is
//     on the simulator's own address (the request's Host), path
//     /whatsapp_business/attachments/ like Meta's lookaside URLs, valid for
//     5 minutes by the simulator's clock, and needs the bearer token.

const (
	useCaseAnnouncement = "call_voicemail_announcement"
	useCaseVoicemail    = "voicemail" // the simulator's mark for a voicemail a user left
	maxAnnouncement     = 60 * time.Second
	mediaURLTTL         = 5 * time.Minute
	opusRate            = 48000
)

// mediaObject is one stored media file.
type mediaObject struct {
	id, pnid, useCase, mime string
	data                    []byte
	sum                     [sha256.Size]byte
}

// storeMediaLocked keeps data under a new media id.
func (s *Sim) storeMediaLocked(pnid, useCase, mimeType string, data []byte) *mediaObject {
	id := ""
	for id == "" || s.media[id] != nil {
		id = strconv.FormatUint(rand.Uint64N(8e15)+1e15, 10) // < 2^53: exact as a JSON number
	}
	mo := &mediaObject{id: id, pnid: pnid, useCase: useCase, mime: mimeType, data: data, sum: sha256.Sum256(data)}
	s.media[id] = mo
	return mo
}

func errNotOgg(details string) *graphError {
	return invalid("Param file must be a file with one of the following types: audio/ogg", "%s", details)
}

// serveMediaUpload is R3.
func (s *Sim) serveMediaUpload(g *graphRequest, pnid string) {
	mt, params, err := mime.ParseMediaType(g.r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		g.fail(invalid(titleInvalidParam, "a media upload is multipart/form-data, not %q", g.r.Header.Get("Content-Type")), "graph: media upload is not multipart/form-data")
		return
	}
	fields := map[string]string{}
	var file []byte
	var fileType string
	haveFile := false
	mr := multipart.NewReader(bytes.NewReader(g.body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			g.fail(invalid(titleInvalidParam, "the multipart body cannot be read: %v", err), fmt.Sprintf("graph: media upload multipart body: %v", err))
			return
		}
		b, err := io.ReadAll(io.LimitReader(part, maxMediaBody))
		if err != nil {
			g.fail(invalid(titleInvalidParam, "the multipart body cannot be read: %v", err), fmt.Sprintf("graph: media upload multipart body: %v", err))
			return
		}
		if part.FormName() == "file" {
			file, haveFile = b, true
			fileType = part.Header.Get("Content-Type")
			if g.rec != nil {
				g.rec.Filename, g.rec.Size = part.FileName(), len(b)
			}
		} else {
			fields[part.FormName()] = strings.Trim(string(b), `"`)
		}
		_ = part.Close()
	}
	if g.rec != nil {
		g.rec.Fields = fields
	}
	if fields["messaging_product"] != "whatsapp" {
		g.fail(badRequest("The parameter messaging_product is required and must be \"whatsapp\""), fmt.Sprintf("graph: media upload messaging_product %q, want \"whatsapp\"", fields["messaging_product"]))
		return
	}
	if !haveFile || len(file) == 0 {
		g.fail(invalid(titleInvalidParam, "The parameter file is required"), "graph: media upload without a file")
		return
	}
	refuse := func(e *graphError) { g.fail(e, "graph: voicemail announcement refused: "+e.details) }
	useCase := fields["use_case"]
	switch useCase {
	case "":
	case useCaseAnnouncement:
		for _, declared := range []string{fields["type"], fileType} {
			if t, _, _ := mime.ParseMediaType(declared); declared != "" && t != "application/octet-stream" && t != "audio/ogg" {
				refuse(errNotOgg(fmt.Sprintf("the file is declared %q; a voicemail announcement is audio/ogg (Opus)", declared)))
				return
			}
		}
		dur, err := oggOpusDuration(file)
		if err != nil {
			refuse(errNotOgg(err.Error()))
			return
		}
		if dur >= maxAnnouncement {
			refuse(invalid(titleInvalidParam, "the announcement lasts %.2f s; it must be shorter than %d seconds", dur.Seconds(), int(maxAnnouncement.Seconds())))
			return
		}
	default:
		g.fail(invalid(titleInvalidParam, "use_case %q is not supported (%s)", useCase, useCaseAnnouncement), fmt.Sprintf("graph: media upload use_case %q", useCase))
		return
	}
	mimeType := fields["type"]
	if mimeType == "" {
		mimeType = fileType
	}
	if useCase == useCaseAnnouncement || mimeType == "" {
		mimeType = "audio/ogg"
	}
	s.mu.Lock()
	mo := s.storeMediaLocked(pnid, useCase, mimeType, file)
	s.mu.Unlock()
	if g.rec != nil {
		g.rec.MediaID = mo.id
	}
	s.log.Info("media uploaded", zap.String("phone_number_id", pnid), zap.String("media_id", mo.id), zap.String("use_case", useCase), zap.Int("bytes", len(file)))
	writeJSON(g.w, map[string]string{"id": mo.id})
}

// serveMediaURL is GET /{version}/{media_id}[?phone_number_id=…].
func (s *Sim) serveMediaURL(g *graphRequest, id string) {
	s.mu.Lock()
	mo := s.media[id]
	now := s.clock()
	s.mu.Unlock()
	if mo == nil {
		g.fail(errNoObject(g.r.Method, id), fmt.Sprintf("graph: GET of unknown media id or path %s", g.r.URL.Path))
		return
	}
	if pn := g.r.URL.Query().Get("phone_number_id"); pn != "" && pn != mo.pnid {
		g.fail(invalid(titleInvalidParam, "media %s does not belong to phone number id %s", id, pn), fmt.Sprintf("graph: GET media %s with another number's phone_number_id %s", id, pn))
		return
	}
	ext := strconv.FormatInt(now.Add(mediaURLTTL).Unix(), 10)
	q := url.Values{"mid": {id}, "ext": {ext}, "hash": {s.mediaHash(id, ext)}}
	writeJSON(g.w, map[string]any{
		"messaging_product": "whatsapp",
		"url":               "http://" + g.r.Host + "/whatsapp_business/attachments/?" + q.Encode(),
		"mime_type":         mo.mime,
		"sha256":            hex.EncodeToString(mo.sum[:]),
		"file_size":         len(mo.data),
		"id":                mo.id,
	})
}

func (s *Sim) mediaHash(id, ext string) string {
	m := hmac.New(sha256.New, s.mediaKey)
	m.Write([]byte(id + "|" + ext))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// serveMediaDownload is GET <url> of a media (the bearer token is checked
// before).
func (s *Sim) serveMediaDownload(g *graphRequest) {
	q := g.r.URL.Query()
	id, ext := q.Get("mid"), q.Get("ext")
	exp, err := strconv.ParseInt(ext, 10, 64)
	s.mu.Lock()
	mo := s.media[id]
	now := s.clock()
	s.mu.Unlock()
	notFound := func(why string) {
		g.fail(&graphError{status: http.StatusNotFound, code: 100, message: "(#100) Media not found or URL expired", details: why}, "graph: media download: "+why)
	}
	switch {
	case err != nil || !hmac.Equal([]byte(q.Get("hash")), []byte(s.mediaHash(id, ext))):
		notFound("the URL is not one GET /{media_id} gave")
		return
	case !now.Before(time.Unix(exp, 0)):
		notFound("the URL has expired (valid 5 minutes); ask GET /{media_id} again")
		return
	case mo == nil:
		notFound("no such media")
		return
	}
	g.w.Header().Set("Content-Type", mo.mime)
	g.w.Header().Set("Content-Length", strconv.Itoa(len(mo.data)))
	_, _ = g.w.Write(mo.data)
}

// oggOpusDuration checks an Ogg Opus file (RFC 3533 pages, RFC 7845
// OpusHead in the first page) and returns its duration: the last granule
// position of its stream minus the pre-skip, at 48 kHz.
func oggOpusDuration(b []byte) (time.Duration, error) {
	if len(b) < 4 || string(b[:4]) != "OggS" {
		return 0, errors.New("the file is not OGG: it does not begin with the capture pattern \"OggS\"")
	}
	var serial uint32
	var preSkip uint64
	last := int64(-1)
	for off, page := 0, 0; off < len(b); page++ {
		h := b[off:]
		if len(h) < 27 || string(h[:4]) != "OggS" {
			return 0, fmt.Errorf("the file is not OGG: no page at byte %d", off)
		}
		if h[4] != 0 {
			return 0, fmt.Errorf("the file is not OGG: page %d has stream structure version %d", page, h[4])
		}
		nseg := int(h[26])
		if len(h) < 27+nseg {
			return 0, fmt.Errorf("the file is not OGG: page %d is cut short", page)
		}
		size := 0
		for _, l := range h[27 : 27+nseg] {
			size += int(l)
		}
		total := 27 + nseg + size
		if len(h) < total {
			return 0, fmt.Errorf("the file is not OGG: page %d is cut short", page)
		}
		if got, want := oggCRC(h[:total]), binary.LittleEndian.Uint32(h[22:26]); got != want {
			return 0, fmt.Errorf("the file is not OGG: page %d fails its CRC (%08x, computed %08x)", page, want, got)
		}
		body := h[27+nseg : total]
		granule := int64(binary.LittleEndian.Uint64(h[6:14]))
		pageSerial := binary.LittleEndian.Uint32(h[14:18])
		if page == 0 {
			if len(body) < 19 || string(body[:8]) != "OpusHead" {
				return 0, errors.New("the OGG file is not Opus: its first page does not carry OpusHead")
			}
			serial = pageSerial
			preSkip = uint64(binary.LittleEndian.Uint16(body[10:12]))
		} else if pageSerial == serial && granule != -1 {
			last = granule
		}
		off += total
	}
	if last < 0 || uint64(last) <= preSkip {
		return 0, errors.New("the OGG Opus file has no audio (no page after OpusHead ends a packet past the pre-skip)")
	}
	samples := uint64(last) - preSkip
	return time.Duration(samples) * time.Second / opusRate, nil
}

// oggCRCTable is the CRC-32 of Ogg: polynomial 0x04c11db7, not reflected,
// initial 0, no final xor.
var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

// oggCRC is the checksum of one page, its CRC field taken as zero.
func oggCRC(page []byte) uint32 {
	var crc uint32
	for i, c := range page {
		if i >= 22 && i < 26 {
			c = 0
		}
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

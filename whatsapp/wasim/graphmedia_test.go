package wasim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// testOggCRC is Ogg's CRC-32 (RFC 3533: polynomial 0x04c11db7, MSB first,
// initial 0, no final xor), bit by bit: written apart from the simulator's
// table so that the fixtures do not agree with it by construction.
func testOggCRC(b []byte) uint32 {
	var crc uint32
	for _, c := range b {
		crc ^= uint32(c) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// oggPage builds one Ogg page around one packet (< 255*255 bytes).
func oggPage(flags byte, granule uint64, seq uint32, packet []byte) []byte {
	var segs []byte
	n := len(packet)
	for n >= 255 {
		segs = append(segs, 255)
		n -= 255
	}
	segs = append(segs, byte(n))
	h := make([]byte, 27, 27+len(segs)+len(packet))
	copy(h, "OggS")
	h[5] = flags
	binary.LittleEndian.PutUint64(h[6:], granule)
	binary.LittleEndian.PutUint32(h[14:], 0x5157a51) // stream serial
	binary.LittleEndian.PutUint32(h[18:], seq)
	h[26] = byte(len(segs))
	p := append(append(h, segs...), packet...)
	binary.LittleEndian.PutUint32(p[22:], testOggCRC(p))
	return p
}

// opusHead is RFC 7845's identification header: version 1, mono, the
// pre-skip, 48 kHz input, gain 0, mapping family 0.
func opusHead(preSkip uint16) []byte {
	b := []byte("OpusHead\x01\x01\x00\x00\x80\xbb\x00\x00\x00\x00\x00")
	binary.LittleEndian.PutUint16(b[10:], preSkip)
	return b
}

// oggOpus is a minimal Ogg Opus file lasting d: the OpusHead page (BOS)
// and a last page (EOS) whose granule position says the duration.
func oggOpus(d time.Duration) []byte {
	const preSkip = 312
	granule := uint64(d*48000/time.Second) + preSkip
	f := oggPage(0x02, 0, 0, opusHead(preSkip))
	return append(f, oggPage(0x04, granule, 1, bytes.Repeat([]byte{0xf8, 0xff, 0xfe}, 20))...)
}

// upload posts a multipart media upload to /v23.0/{pnid}/media.
func upload(t *testing.T, s *Sim, pnid string, fields map[string]string, file []byte, fileType string) (int, map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if file != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="prompt.ogg"`)
		if fileType != "" {
			h.Set("Content-Type", fileType)
		}
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(file)
	}
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.GraphURL()+"/v23.0/"+pnid+"/media", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testToken)
	return doJSON(t, req)
}

func doJSON(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

var announcementFields = map[string]string{"messaging_product": "whatsapp", "use_case": "call_voicemail_announcement", "type": "audio/ogg"}

// uploadAnnouncement uploads a valid announcement and returns its id.
func uploadAnnouncement(t *testing.T, s *Sim, pnid string) string {
	t.Helper()
	code, body := upload(t, s, pnid, announcementFields, oggOpus(10*time.Second), "audio/ogg")
	id := str(body, "id")
	if code != 200 || !isUnixString(id) || len(body) != 1 {
		t.Fatalf("announcement upload: HTTP %d %v", code, body)
	}
	return id
}

// fetchMedia does GET /{media_id} and then GET <url>, with token for the
// download ("" sends none).
func fetchMedia(t *testing.T, s *Sim, id, token string) (meta map[string]any, status int, data []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.GraphURL()+"/v23.0/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	code, meta := doJSON(t, req)
	if code != 200 {
		t.Fatalf("GET /%s: HTTP %d %v", id, code, meta)
	}
	req, _ = http.NewRequest(http.MethodGet, str(meta, "url"), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ = io.ReadAll(resp.Body)
	return meta, resp.StatusCode, data
}

func TestOggOpusDuration(t *testing.T) {
	for _, d := range []time.Duration{20 * time.Millisecond, 10 * time.Second, 59*time.Second + 980*time.Millisecond, 60 * time.Second, 3 * time.Minute} {
		got, err := oggOpusDuration(oggOpus(d))
		if err != nil || got != d {
			t.Errorf("%s: %s, %v", d, got, err)
		}
	}
	good := oggOpus(5 * time.Second)
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	vorbis := append(oggPage(0x02, 0, 0, []byte("\x01vorbis\x00\x00\x00\x00\x01\x80\xbb\x00\x00")), good[len(oggPage(0x02, 0, 0, opusHead(312))):]...)
	cases := map[string]struct {
		file []byte
		want string
	}{
		"wav":           {[]byte("RIFF\x24\x00\x00\x00WAVEfmt "), "not OGG"},
		"bad crc":       {badCRC, "CRC"},
		"truncated":     {good[:len(good)-10], "cut short"},
		"trailing junk": {append(bytes.Clone(good), "junk"...), "no page at byte"},
		"vorbis":        {vorbis, "not Opus"},
		"headers only":  {oggPage(0x06, 0, 0, opusHead(312)), "no audio"},
	}
	for name, c := range cases {
		if _, err := oggOpusDuration(c.file); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

// A file from another Ogg writer (pion's) passes the checks, CRCs and all:
// 500 frames of 20 ms less pion's pre-skip of 3840 samples (80 ms).
func TestOggOpusFromPion(t *testing.T) {
	var buf bytes.Buffer
	w, err := oggwriter.NewWith(&buf, 48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 7},
			Payload: []byte{0xf8, 0xff, 0xfe}} // TOC: CELT fullband 20 ms, one frame
		if err := w.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	if d, err := oggOpusDuration(buf.Bytes()); err != nil || d != 9920*time.Millisecond {
		t.Errorf("pion's file: %s, %v", d, err)
	}
}

// R3: the announcement upload, checked as Meta checks it; the media API
// serves what was uploaded, to the bearer token only.
func TestMediaUpload(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)

	id := uploadAnnouncement(t, s, testPhoneID)
	file := oggOpus(10 * time.Second)
	meta, status, data := fetchMedia(t, s, id, testToken)
	sum := sha256.Sum256(file)
	if status != 200 || !bytes.Equal(data, file) {
		t.Fatalf("download: HTTP %d, %d bytes", status, len(data))
	}
	if meta["id"] != id || meta["mime_type"] != "audio/ogg" || meta["sha256"] != hex.EncodeToString(sum[:]) ||
		meta["file_size"] != float64(len(file)) || meta["messaging_product"] != "whatsapp" ||
		!strings.HasPrefix(str(meta, "url"), s.GraphURL()+"/whatsapp_business/attachments/?") {
		t.Errorf("media: %v", meta)
	}
	if _, status, _ := fetchMedia(t, s, id, ""); status != http.StatusUnauthorized {
		t.Errorf("download without the token: HTTP %d", status)
	}
	if _, status, _ := fetchMedia(t, s, id, "wrong"); status != http.StatusUnauthorized {
		t.Errorf("download with a wrong token: HTTP %d", status)
	}
	// 59.99 s is under the minute; an ordinary upload (no use_case) takes
	// anything.
	if code, body := upload(t, s, testPhoneID, announcementFields, oggOpus(59990*time.Millisecond), ""); code != 200 {
		t.Errorf("59.99 s: HTTP %d %v", code, body)
	}
	if code, body := upload(t, s, testPhoneID, map[string]string{"messaging_product": "whatsapp", "type": "image/png"}, []byte("\x89PNG"), "image/png"); code != 200 || !isUnixString(str(body, "id")) {
		t.Errorf("ordinary media: HTTP %d %v", code, body)
	}

	tooLong := oggOpus(60 * time.Second)
	notOpus := append(oggPage(0x02, 0, 0, []byte("\x01vorbis\x00\x00\x00\x00\x01\x80\xbb\x00\x00")), oggPage(0x04, 480000, 1, []byte{1, 2, 3})...)
	cases := []struct {
		name    string
		fields  map[string]string
		file    []byte
		ftype   string
		message string // in error.message
		details string // in error.error_data.details
	}{
		{"not OGG", announcementFields, []byte("RIFF\x24\x00\x00\x00WAVEfmt "), "", "audio/ogg", "not OGG"},
		{"not Opus", announcementFields, notOpus, "audio/ogg", "audio/ogg", "not Opus"},
		{"a minute long", announcementFields, tooLong, "audio/ogg", "Invalid parameter", "lasts 60.00 s; it must be shorter than 60 seconds"},
		{"declared mp3", map[string]string{"messaging_product": "whatsapp", "use_case": "call_voicemail_announcement", "type": "audio/mpeg"}, file, "", "audio/ogg", `declared "audio/mpeg"`},
		{"no file", announcementFields, nil, "", "Invalid parameter", "file is required"},
		{"no messaging_product", map[string]string{"use_case": "call_voicemail_announcement"}, file, "", "messaging_product", "messaging_product"},
		{"other use case", map[string]string{"messaging_product": "whatsapp", "use_case": "call_recording"}, file, "", "Invalid parameter", `use_case "call_recording"`},
	}
	for _, c := range cases {
		code, body := upload(t, s, testPhoneID, c.fields, c.file, c.ftype)
		details := wantGraphError(t, c.name, code, body, 400, 100)
		msg := str(body["error"].(map[string]any), "message")
		if !strings.Contains(msg, c.message) || !strings.Contains(details, c.details) {
			t.Errorf("%s: message %q details %q, want %q and %q", c.name, msg, details, c.message, c.details)
		}
	}
	// Not multipart; an unknown number; an unknown media id.
	code, body := graphDo(t, s, http.MethodPost, "media", map[string]any{"messaging_product": "whatsapp"})
	if d := wantGraphError(t, "JSON upload", code, body, 400, 100); !strings.Contains(d, "multipart/form-data") {
		t.Errorf("JSON upload: %q", d)
	}
	code, body = upload(t, s, "999", announcementFields, file, "")
	wantGraphError(t, "unknown number", code, body, 400, 100)
	if e := body["error"].(map[string]any); e["error_subcode"] != 33.0 {
		t.Errorf("unknown number: %v", e)
	}
	req, _ := http.NewRequest(http.MethodGet, s.GraphURL()+"/v23.0/1234567890", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	code, body = doJSON(t, req)
	wantGraphError(t, "unknown media", code, body, 400, 100)
	// A download URL past its 5 minutes, or tampered with.
	clock := &fakeClock{t: time.Now()}
	s.SetClock(clock.now)
	meta, _, _ = fetchMedia(t, s, id, testToken)
	clock.add(6 * time.Minute)
	for _, u := range []string{str(meta, "url"), strings.Replace(str(meta, "url"), "mid="+id, "mid=1", 1)} {
		req, _ = http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if code, _ := doJSON(t, req); code != http.StatusNotFound {
			t.Errorf("stale or forged URL %s: HTTP %d", u, code)
		}
	}
}

package whatsapp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// oggPage builds one Ogg page (RFC 3533) carrying packet, CRC left zero
// (the parser under test does not check it).
func oggPage(serial, seq uint32, granule int64, headerType byte, packet []byte) []byte {
	var segs []byte
	n := len(packet)
	for n >= 255 {
		segs = append(segs, 255)
		n -= 255
	}
	segs = append(segs, byte(n))
	h := make([]byte, 27)
	copy(h, "OggS")
	h[5] = headerType
	binary.LittleEndian.PutUint64(h[6:], uint64(granule))
	binary.LittleEndian.PutUint32(h[14:], serial)
	binary.LittleEndian.PutUint32(h[18:], seq)
	h[26] = byte(len(segs))
	return append(append(h, segs...), packet...)
}

// oggOpus builds an Ogg/Opus file of d (after a 312-sample pre-skip), one
// audio page a second.
func oggOpus(d time.Duration) []byte {
	const preSkip = 312
	head := []byte("OpusHead\x01\x01")
	head = binary.LittleEndian.AppendUint16(head, preSkip)
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = append(head, 0, 0, 0)
	out := oggPage(7, 0, 0, 2, head)
	out = append(out, oggPage(7, 1, 0, 0, []byte("OpusTags\x00\x00\x00\x00\x00\x00\x00\x00"))...)
	total := preSkip + int64(d/time.Millisecond)*48
	var seq uint32 = 2
	for g := int64(preSkip); g < total; seq++ {
		g = min(g+48000, total)
		out = append(out, oggPage(7, seq, g, 0, bytes.Repeat([]byte{0xfc}, 300))...)
	}
	return out
}

func TestOggOpusDuration(t *testing.T) {
	for _, d := range []time.Duration{20 * time.Millisecond, 5 * time.Second, 59*time.Second + 999*time.Millisecond, 61 * time.Second} {
		got, err := OggOpusDuration(oggOpus(d))
		if err != nil || got != d {
			t.Errorf("%v: %v %v", d, got, err)
		}
	}
	vorbis := oggPage(1, 0, 0, 2, append([]byte("\x01vorbis"), make([]byte, 30)...))
	for name, b := range map[string][]byte{
		"empty":        nil,
		"not ogg":      []byte("RIFF....WAVEfmt "),
		"vorbis":       vorbis,
		"no audio":     oggOpus(0),
		"truncated":    oggOpus(time.Second)[:100],
		"trailing":     append(oggOpus(time.Second), "junk"...),
		"short header": []byte("OggS\x00"),
	} {
		if _, err := OggOpusDuration(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// R3: POST /{PNID}/media as multipart with messaging_product, use_case,
// type and the file (audio/ogg, a safe file name); the id comes back.
func TestUploadVoicemailAnnouncementShape(t *testing.T) {
	audio := oggOpus(12 * time.Second)
	type form struct {
		fields   map[string]string
		filename string
		fileType string
		file     []byte
	}
	var mu sync.Mutex
	var forms []form
	var actions []string
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"id":"1002764438271669"}`)
	})
	c := g.client(func(cfg *GraphConfig) {
		cfg.OnRequest = func(a, res string, _ time.Duration) { actions = append(actions, a+"/"+res) }
	})
	for _, name := range []string{"greeting.ogg", `../../etc/"x"` + "\r\nX-Injected: 1.ogg", ""} {
		id, err := c.UploadVoicemailAnnouncement(context.Background(), "106540352242922", name, bytes.NewReader(audio))
		if err != nil || id != "1002764438271669" {
			t.Fatalf("%q: %q %v", name, id, err)
		}
	}
	for _, r := range g.requests() {
		if r.Method != http.MethodPost || r.Path != "/v23.0/106540352242922/media" || r.Query != "" {
			t.Errorf("%s %s?%s", r.Method, r.Path, r.Query)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("Authorization %q", got)
		}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" {
			t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
		f := form{fields: map[string]string{}}
		var order []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			order = append(order, p.FormName())
			if p.FormName() == "file" {
				f.filename, f.fileType, f.file = p.FileName(), p.Header.Get("Content-Type"), b
				if len(p.Header) != 2 {
					t.Errorf("file part headers %v", p.Header)
				}
				continue
			}
			f.fields[p.FormName()] = string(b)
		}
		if !reflect.DeepEqual(order, []string{"messaging_product", "use_case", "type", "file"}) {
			t.Errorf("parts %v", order)
		}
		mu.Lock()
		forms = append(forms, f)
		mu.Unlock()
	}
	if len(forms) != 3 {
		t.Fatalf("%d forms", len(forms))
	}
	wantFields := map[string]string{"messaging_product": "whatsapp", "use_case": "call_voicemail_announcement", "type": "audio/ogg"}
	for i, wantName := range []string{"greeting.ogg", `_x___X-Injected:_1.ogg`, "announcement.ogg"} {
		f := forms[i]
		if !reflect.DeepEqual(f.fields, wantFields) || f.fileType != "audio/ogg" || !bytes.Equal(f.file, audio) || f.filename != wantName {
			t.Errorf("form %d: fields %v type %q file %d bytes name %q (want %q)", i, f.fields, f.fileType, len(f.file), f.filename, wantName)
		}
	}
	if !reflect.DeepEqual(actions, []string{"voicemail_upload/ok", "voicemail_upload/ok", "voicemail_upload/ok"}) {
		t.Errorf("OnRequest %v", actions)
	}
}

// What Meta would refuse is refused before anything is sent.
func TestUploadVoicemailAnnouncementRefused(t *testing.T) {
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, `{"id":"1"}`) })
	c := g.client(nil)
	ctx := context.Background()
	big := append(oggOpus(time.Second), make([]byte, MaxVoicemailAnnouncementBytes)...)
	for name, tc := range map[string]struct {
		pnid string
		r    io.Reader
		want string
	}{
		"no phone number id": {"", bytes.NewReader(oggOpus(time.Second)), "no phone number id"},
		"no reader":          {"P", nil, "no audio"},
		"wav":                {"P", strings.NewReader("RIFF....WAVE"), "not an OGG/Opus file"},
		"a minute":           {"P", bytes.NewReader(oggOpus(time.Minute)), "less than 1m0s"},
		"too large":          {"P", bytes.NewReader(big), "more than"},
		"unreadable":         {"P", io.MultiReader(strings.NewReader("OggS"), errReader{}), "reading the audio"},
	} {
		_, err := c.UploadVoicemailAnnouncement(ctx, tc.pnid, "a.ogg", tc.r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if n := g.attempts.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// An upload that may have arrived is not repeated (ErrOutcomeUnknown);
// a throttled one is; Meta's errors are GraphErrors.
func TestUploadVoicemailAnnouncementRetries(t *testing.T) {
	audio := oggOpus(time.Second)
	ctx := context.Background()
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 502, `bad gateway`) })
	_, err := g.client(nil).UploadVoicemailAnnouncement(ctx, "P", "a.ogg", bytes.NewReader(audio))
	if !errors.Is(err, ErrOutcomeUnknown) || g.attempts.Load() != 1 {
		t.Errorf("5xx: %v after %d attempts", err, g.attempts.Load())
	}
	g = newGraphRig(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			writeJSON(w, 429, `{"error":{"message":"throughput","code":130429}}`)
			return
		}
		writeJSON(w, 200, `{"id":1002764438271669}`) // a number is taken
	})
	id, err := g.client(func(c *GraphConfig) { c.Backoff = time.Millisecond }).UploadVoicemailAnnouncement(ctx, "P", "a.ogg", bytes.NewReader(audio))
	if err != nil || id != "1002764438271669" || g.attempts.Load() != 2 {
		t.Errorf("throttled: %q %v after %d attempts", id, err, g.attempts.Load())
	}
	g = newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 400, `{"error":{"message":"(#131053) Media upload error","code":131053,"error_data":{"details":"Unsupported audio codec"}}}`)
	})
	_, err = g.client(nil).UploadVoicemailAnnouncement(ctx, "P", "a.ogg", bytes.NewReader(audio))
	var ge *GraphError
	if !errors.As(err, &ge) || ge.Code != 131053 || ge.Details != "Unsupported audio codec" || g.attempts.Load() != 1 {
		t.Errorf("4xx: %v", err)
	}
	g = newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, `{"id":""}`) })
	if _, err = g.client(nil).UploadVoicemailAnnouncement(ctx, "P", "a.ogg", bytes.NewReader(audio)); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("no id: %v", err)
	}
}

// mediaRig serves GET /v23.0/{media-id} (the URL) and the download.
type mediaRig struct {
	*graphRig
	downloads func(n int, w http.ResponseWriter, r *http.Request)
	dl        int
	dlURL     string // overrides the URL Meta gives
	fileSize  string // JSON value of file_size, "" for none
}

func newMediaRig(t *testing.T, download func(n int, w http.ResponseWriter, r *http.Request)) *mediaRig {
	m := &mediaRig{downloads: download}
	var mu sync.Mutex
	m.graphRig = newGraphRig(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/dl/") {
			mu.Lock()
			m.dl++
			n := m.dl
			mu.Unlock()
			m.downloads(n, w, r)
			return
		}
		u := m.dlURL
		if u == "" {
			u = "http://" + r.Host + "/dl/1002764438271669?ext=1&hash=SIGNEDHASH"
		}
		size := ""
		if m.fileSize != "" {
			size = `,"file_size":` + m.fileSize
		}
		writeJSON(w, 200, fmt.Sprintf(`{"messaging_product":"whatsapp","url":%q,"mime_type":"audio/ogg; codecs=opus","sha256":"x","id":"1002764438271669"%s}`, u, size))
	})
	return m
}

func (m *mediaRig) downloadCount() int {
	n := 0
	for _, r := range m.requests() {
		if strings.HasPrefix(r.Path, "/dl/") {
			n++
		}
	}
	return n
}

func TestDownloadMedia(t *testing.T) {
	audio := oggOpus(3 * time.Second)
	m := newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "audio/ogg")
		_, _ = w.Write(audio)
	})
	m.fileSize = strconv.Itoa(len(audio))
	var actions []string
	c := m.client(func(cfg *GraphConfig) {
		cfg.OnRequest = func(a, res string, _ time.Duration) { actions = append(actions, a+"/"+res) }
	})
	var buf bytes.Buffer
	mt, err := c.DownloadMedia(context.Background(), "1002764438271669", 0, &buf)
	if err != nil || mt != "audio/ogg; codecs=opus" || !bytes.Equal(buf.Bytes(), audio) {
		t.Fatalf("%q %v, %d bytes", mt, err, buf.Len())
	}
	reqs := m.requests()
	if len(reqs) != 2 || reqs[0].Path != "/v23.0/1002764438271669" || reqs[0].Method != http.MethodGet ||
		reqs[1].Path != "/dl/1002764438271669" || reqs[1].Query != "ext=1&hash=SIGNEDHASH" {
		t.Fatalf("requests %+v", reqs)
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			t.Errorf("%s without the token", r.Path)
		}
	}
	if !reflect.DeepEqual(actions, []string{"media_url/ok", "media_download/ok"}) {
		t.Errorf("OnRequest %v", actions)
	}
}

// The bound holds whether Meta announces the size, the answer has a
// Content-Length, or neither; nothing too large is retried.
func TestDownloadMediaBounded(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 5000)
	ctx := context.Background()

	m := newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(big) })
	m.fileSize = `"5000"`
	_, err := m.client(nil).DownloadMedia(ctx, "1", 4096, io.Discard)
	if !errors.Is(err, ErrMediaTooLarge) || m.downloadCount() != 0 {
		t.Errorf("announced: %v, %d downloads", err, m.downloadCount())
	}

	m = newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		_, _ = w.Write(big)
	})
	var buf bytes.Buffer
	_, err = m.client(nil).DownloadMedia(ctx, "1", 4096, &buf)
	if !errors.Is(err, ErrMediaTooLarge) || m.downloadCount() != 1 || buf.Len() != 0 {
		t.Errorf("Content-Length: %v, %d downloads, %d bytes written", err, m.downloadCount(), buf.Len())
	}

	m = newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < len(big); i += 1000 { // chunked: no Content-Length
			_, _ = w.Write(big[i : i+1000])
			w.(http.Flusher).Flush()
		}
	})
	buf.Reset()
	_, err = m.client(nil).DownloadMedia(ctx, "1", 4096, &buf)
	if !errors.Is(err, ErrMediaTooLarge) || m.downloadCount() != 1 || buf.Len() != 4096 {
		t.Errorf("chunked: %v, %d downloads, %d bytes written", err, m.downloadCount(), buf.Len())
	}
	buf.Reset()
	if _, err := m.client(nil).DownloadMedia(ctx, "1", 5000, &buf); err != nil || buf.Len() != 5000 {
		t.Errorf("exactly the bound: %v, %d bytes", err, buf.Len())
	}
}

// A download is repeated after a 5xx or a failure before anything was
// written, never after part of the media was; errors never quote the
// signed URL nor the token.
func TestDownloadMediaRetries(t *testing.T) {
	ctx := context.Background()
	m := newMediaRig(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1:
			writeJSON(w, 503, `{"error":{"message":"later","code":2}}`)
		case 2:
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close() // no answer at all
		default:
			_, _ = w.Write([]byte("audio"))
		}
	})
	var buf bytes.Buffer
	if _, err := m.client(nil).DownloadMedia(ctx, "1", 0, &buf); err != nil || buf.String() != "audio" || m.downloadCount() != 3 {
		t.Errorf("%v, %q after %d downloads", err, buf.String(), m.downloadCount())
	}

	m = newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write(make([]byte, 500))
		w.(http.Flusher).Flush()
		hj, _ := w.(http.Hijacker)
		conn, bw, _ := hj.Hijack()
		_ = bw.Flush()
		conn.Close()
	})
	buf.Reset()
	_, err := m.client(nil).DownloadMedia(ctx, "1", 0, &buf)
	if err == nil || m.downloadCount() != 1 || buf.Len() != 500 {
		t.Errorf("cut short: %v, %d downloads, %d bytes", err, m.downloadCount(), buf.Len())
	}

	m = newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	})
	_, err = m.client(nil).DownloadMedia(ctx, "1", 0, io.Discard)
	// net/http may repeat a GET on a reused connection by itself: at least
	// our 3 attempts.
	if err == nil || m.downloadCount() < 3 || strings.Contains(err.Error(), "SIGNEDHASH") {
		t.Errorf("no answer: %v after %d downloads", err, m.downloadCount())
	}
	assertNoToken(t, err)

	m = newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 404, `{"error":{"message":"Unsupported get request `+testToken+`","code":100}}`)
	})
	_, err = m.client(nil).DownloadMedia(ctx, "1", 0, io.Discard)
	var ge *GraphError
	if !errors.As(err, &ge) || ge.Code != 100 || m.downloadCount() != 1 {
		t.Errorf("404: %v after %d downloads", err, m.downloadCount())
	}
	assertNoToken(t, err)
}

// The token goes to https URLs, or to the Graph base's own host; nowhere
// else in the clear. Bad ids and answers without a URL are refused.
func TestDownloadMediaURLChecked(t *testing.T) {
	ctx := context.Background()
	other := newGraphRig(t, okReply) // another host (port) over http
	m := newMediaRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("a")) })
	m.dlURL = other.srv.URL + "/dl/1"
	_, err := m.client(nil).DownloadMedia(ctx, "1", 0, io.Discard)
	if !errors.Is(err, ErrUnexpectedResponse) || other.attempts.Load() != 0 {
		t.Errorf("http elsewhere: %v, %d requests there", err, other.attempts.Load())
	}
	m.dlURL = "::not a url"
	if _, err := m.client(nil).DownloadMedia(ctx, "1", 0, io.Discard); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("bad URL: %v", err)
	}
	g := newGraphRig(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, `{"id":"1"}`) })
	if _, err := g.client(nil).DownloadMedia(ctx, "1", 0, io.Discard); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("no url: %v", err)
	}
	for _, id := range []string{"", "../me", "1/2", "1?x=y"} {
		if _, err := g.client(nil).DownloadMedia(ctx, id, 0, io.Discard); err == nil {
			t.Errorf("media id %q accepted", id)
		}
	}
	if _, err := g.client(nil).DownloadMedia(ctx, "1", 0, nil); err == nil {
		t.Error("nil writer accepted")
	}
	if n := g.attempts.Load(); n != 1 {
		t.Errorf("%d requests for refused arguments", n-1)
	}
}

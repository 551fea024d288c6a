// Package settingstest is test support for the calling settings (issue 16):
// a minimal Graph API serving GET/POST /{PNID}/settings and POST
// /{PNID}/media on 127.0.0.1, a client of it for as long as the whatsapp
// package's settings methods are a stub, and OGG/Opus files of a chosen
// length. Only tests import it.
package settingstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"

	"github.com/wagateway/wagateway/whatsapp"
)

// Request is one request the Graph server took.
type Request struct {
	Method, Path, Query string
	PhoneNumberID       string
	Body                []byte // a settings POST's body; a media POST's form fields as JSON
}

// Upload is one media POST.
type Upload struct {
	PhoneNumberID, Filename, UseCase, MediaID string
	Size                                      int
}

// Server is a Graph API holding each number's calling settings as Meta
// does: a POST replaces the top-level fields it names (call_hours whole,
// holidays included), GET returns them, the SIP password only with
// include_sip_credentials=true.
type Server struct {
	URL   string
	Token string

	srv      *httptest.Server
	mu       sync.Mutex
	settings map[string]map[string]json.RawMessage
	requests []Request
	uploads  []Upload
	fail     map[string]int // "GET settings", "POST settings", "POST media" (optionally + " PNID"): HTTP status to answer
}

var pathRE = regexp.MustCompile(`^/v[0-9.]+/([0-9]+)/(settings|media)$`)

// NewServer starts a Graph API on 127.0.0.1 taking the Bearer token.
func NewServer(t testing.TB, token string) *Server {
	s := &Server{Token: token, settings: map[string]map[string]json.RawMessage{}, fail: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Set stores a number's settings as Meta has them (the "calling" object).
func (s *Server) Set(t testing.TB, pnid string, calling string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(calling), &m); err != nil {
		t.Fatalf("settingstest: %v", err)
	}
	s.mu.Lock()
	s.settings[pnid] = m
	s.mu.Unlock()
}

// Get returns a number's settings as stored (JSON of the calling object).
func (s *Server) Get(pnid string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(s.settings[pnid])
	return string(b)
}

// Fail makes "METHOD edge" (GET settings, POST settings, POST media),
// or "METHOD edge PNID" for one number only, answer status with a Graph
// error object; 0 restores it.
func (s *Server) Fail(what string, status int) {
	s.mu.Lock()
	s.fail[what] = status
	s.mu.Unlock()
}

// Requests returns what the server took, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Posts returns the settings POSTs' bodies.
func (s *Server) Posts() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/settings") {
			out = append(out, r)
		}
	}
	return out
}

// Uploads returns the media POSTs.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Upload(nil), s.uploads...)
}

func graphError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":"OAuthException","code":%d,"fbtrace_id":"Atest"}}`, msg, code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := pathRE.FindStringSubmatch(r.URL.Path)
	if m == nil {
		graphError(w, http.StatusNotFound, 100, "Unknown path "+r.URL.Path)
		return
	}
	pnid, edge := m[1], m[2]
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		graphError(w, http.StatusUnauthorized, 190, "Invalid OAuth access token")
		return
	}
	req := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, PhoneNumberID: pnid}
	s.mu.Lock()
	status := s.fail[r.Method+" "+edge+" "+pnid]
	if status == 0 {
		status = s.fail[r.Method+" "+edge]
	}
	s.mu.Unlock()
	switch {
	case edge == "settings" && r.Method == http.MethodGet:
		s.record(req)
		if status != 0 {
			graphError(w, status, 1, "An unknown error occurred")
			return
		}
		s.mu.Lock()
		cur := s.settings[pnid]
		out := map[string]json.RawMessage{}
		for k, v := range cur {
			out[k] = v
		}
		s.mu.Unlock()
		if r.URL.Query().Get("include_sip_credentials") != "true" {
			out["sip"] = withoutPasswords(out["sip"])
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"calling": out})
	case edge == "settings" && r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		req.Body = body
		s.record(req)
		if status != 0 {
			graphError(w, status, 138015, "Calling settings could not be updated")
			return
		}
		var in struct {
			Calling map[string]json.RawMessage `json:"calling"`
		}
		if err := json.Unmarshal(body, &in); err != nil || in.Calling == nil {
			graphError(w, http.StatusBadRequest, 100, "(#100) The parameter calling is required")
			return
		}
		s.mu.Lock()
		cur := s.settings[pnid]
		if cur == nil {
			cur = map[string]json.RawMessage{}
			s.settings[pnid] = cur
		}
		for k, v := range in.Calling {
			cur[k] = v // call_hours (and every object) replaced whole
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true}`)
	case edge == "media" && r.Method == http.MethodPost:
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			s.record(req)
			graphError(w, http.StatusBadRequest, 100, "(#100) multipart body expected")
			return
		}
		f, hdr, err := r.FormFile("file")
		fields, _ := json.Marshal(r.MultipartForm.Value)
		req.Body = fields
		s.record(req)
		if status != 0 {
			graphError(w, status, 131053, "Media upload error")
			return
		}
		if err != nil {
			graphError(w, http.StatusBadRequest, 100, "(#100) file is required")
			return
		}
		data, _ := io.ReadAll(f)
		f.Close()
		s.mu.Lock()
		id := fmt.Sprintf("%d", 900000000000000+len(s.uploads)+1)
		s.uploads = append(s.uploads, Upload{PhoneNumberID: pnid, Filename: hdr.Filename,
			UseCase: r.FormValue("use_case"), MediaID: id, Size: len(data)})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q}`, id)
	default:
		s.record(req)
		graphError(w, http.StatusBadRequest, 100, "Unsupported "+r.Method+" request")
	}
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.mu.Unlock()
}

// withoutPasswords drops sip.servers[].sip_user_password, as Meta does
// without include_sip_credentials.
func withoutPasswords(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	var sip map[string]any
	if json.Unmarshal(raw, &sip) != nil {
		return raw
	}
	if servers, ok := sip["servers"].([]any); ok {
		for _, sv := range servers {
			if m, ok := sv.(map[string]any); ok {
				delete(m, "sip_user_password")
			}
		}
	}
	b, _ := json.Marshal(sip)
	return b
}

// API is what the gateway asks of the Graph client for the settings.
type API interface {
	GetCallingSettings(ctx context.Context, phoneNumberID string, includeSIPCredentials bool) (*whatsapp.CallingSettings, error)
	UpdateCallingSettings(ctx context.Context, phoneNumberID string, s whatsapp.CallingSettings) error
	UploadVoicemailAnnouncement(ctx context.Context, phoneNumberID, filename string, ogg io.Reader) (string, error)
}

// Stubbed reports whether the whatsapp package's settings methods are still
// the stub ("not implemented"): tests then reach the server through
// Client, and through the real GraphClient once it has landed.
func Stubbed() bool {
	_, err := whatsapp.NewGraphClient(whatsapp.GraphConfig{BaseURL: "http://127.0.0.1:9", AccessToken: "x", MaxRetries: -1, Timeout: time.Second}).
		GetCallingSettings(context.Background(), "1", false)
	return err != nil && strings.Contains(err.Error(), "not implemented")
}

// Client speaks the three settings requests to baseURL as Meta documents
// them (R1–R3).
type Client struct {
	BaseURL, Version, Token string
	HTTP                    *http.Client
}

func (c *Client) url(pnid, edge string) string {
	v := c.Version
	if v == "" {
		v = "v23.0"
	}
	return strings.TrimRight(c.BaseURL, "/") + "/" + v + "/" + url.PathEscape(pnid) + "/" + edge
}

func (c *Client) do(req *http.Request, out any) error {
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		var ge struct {
			Error struct {
				Message   string `json:"message"`
				Type      string `json:"type"`
				Code      int    `json:"code"`
				FBTraceID string `json:"fbtrace_id"`
			} `json:"error"`
		}
		_ = json.Unmarshal(body, &ge)
		return &whatsapp.GraphError{HTTPStatus: res.StatusCode, Message: ge.Error.Message, Type: ge.Error.Type,
			Code: ge.Error.Code, FBTraceID: ge.Error.FBTraceID}
	}
	return json.Unmarshal(body, out)
}

func (c *Client) GetCallingSettings(ctx context.Context, pnid string, sip bool) (*whatsapp.CallingSettings, error) {
	u := c.url(pnid, "settings")
	if sip {
		u += "?include_sip_credentials=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Calling whatsapp.CallingSettings `json:"calling"`
	}
	if err := c.do(req, &out); err != nil {
		return nil, err
	}
	return &out.Calling, nil
}

func (c *Client) UpdateCallingSettings(ctx context.Context, pnid string, s whatsapp.CallingSettings) error {
	body, err := json.Marshal(map[string]any{"messaging_product": "whatsapp", "calling": s})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(pnid, "settings"), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	var out struct {
		Success bool `json:"success"`
	}
	if err := c.do(req, &out); err != nil {
		return err
	}
	if !out.Success {
		return errors.New("settings: no success")
	}
	return nil
}

func (c *Client) UploadVoicemailAnnouncement(ctx context.Context, pnid, filename string, ogg io.Reader) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("messaging_product", "whatsapp")
	_ = mw.WriteField("use_case", "call_voicemail_announcement")
	_ = mw.WriteField("type", "audio/ogg")
	fw, err := mw.CreateFormFile("file", filepath.Base(filename))
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(fw, ogg); err != nil {
		return "", err
	}
	_ = mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(pnid, "media"), &buf)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var out struct {
		ID string `json:"id"`
	}
	if err := c.do(req, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// OggOpus is an OGG/Opus file of d of silence (20 ms frames), as pion's
// oggwriter writes it (pre-skip 3840).
func OggOpus(t testing.TB, d time.Duration) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := oggwriter.NewWith(&buf, 48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	frames := int(d / (20 * time.Millisecond))
	for i := 0; i < frames; i++ {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 1},
			Payload: []byte{0xf8, 0xff, 0xfe}} // CELT FB 20 ms mono: silence
		if err := w.WriteRTP(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// WriteOggOpus writes OggOpus(d) to dir/name and returns its path.
func WriteOggOpus(t testing.TB, dir, name string, d time.Duration) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, OggOpus(t, d), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

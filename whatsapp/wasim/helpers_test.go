package wasim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

const (
	testSecret  = "test-app-secret"
	testToken   = "test-access-token"
	testPhoneID = "1000000001"

	testVerifyToken = "test-verify-token"
)

// TestMain fails the run if any pion or wasim goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := waitNoLeaks(5 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

func waitNoLeaks(within time.Duration) string {
	deadline := time.Now().Add(within)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaks []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "waitNoLeaks") {
				continue
			}
			if strings.Contains(g, "github.com/pion/") || strings.Contains(g, "whatsapp/wasim.") ||
				strings.Contains(g, "net/http.(*persistConn)") {
				leaks = append(leaks, g)
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hookEvent is one webhook the simulator posted, as the gateway sees it.
type hookEvent struct {
	raw   []byte
	sigOK bool
	env   map[string]any
	value map[string]any
	call  map[string]any
	event string
	id    string
	shape []string // envelope shape problems
}

// hookServer is the gateway's webhook receiver, on 127.0.0.1.
type hookServer struct {
	*httptest.Server
	secret string
	events chan hookEvent
	mu     sync.Mutex
	status int
}

func newHookServer(t *testing.T) *hookServer {
	t.Helper()
	h := &hookServer{secret: testSecret, events: make(chan hookEvent, 64), status: http.StatusOK}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) setStatus(code int) {
	h.mu.Lock()
	h.status = code
	h.mu.Unlock()
}

func (h *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet { // Meta's subscription handshake
		q := r.URL.Query()
		if q.Get("hub.mode") != "subscribe" || q.Get("hub.verify_token") != testVerifyToken {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, q.Get("hub.challenge"))
		return
	}
	raw, _ := io.ReadAll(r.Body)
	ev := hookEvent{raw: raw}
	want := Sign(h.secret, raw)
	ev.sigOK = hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte(want))
	ev.shape = checkEnvelope(raw, &ev)
	h.mu.Lock()
	status := h.status
	h.mu.Unlock()
	if !ev.sigOK {
		status = http.StatusUnauthorized
	}
	w.WriteHeader(status)
	select {
	case h.events <- ev:
	default:
	}
}

// checkEnvelope checks the webhook against Meta's documented shape, using
// only generic JSON so it does not share the simulator's types.
func checkEnvelope(raw []byte, ev *hookEvent) []string {
	var bad []string
	if err := json.Unmarshal(raw, &ev.env); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	if ev.env["object"] != "whatsapp_business_account" {
		bad = append(bad, "object")
	}
	entries, _ := ev.env["entry"].([]any)
	if len(entries) != 1 {
		return append(bad, "entry")
	}
	e, _ := entries[0].(map[string]any)
	if id, _ := e["id"].(string); id == "" {
		bad = append(bad, "entry.id")
	}
	changes, _ := e["changes"].([]any)
	if len(changes) != 1 {
		return append(bad, "changes")
	}
	ch, _ := changes[0].(map[string]any)
	if ch["field"] != "calls" {
		bad = append(bad, "field")
	}
	ev.value, _ = ch["value"].(map[string]any)
	if ev.value["messaging_product"] != "whatsapp" {
		bad = append(bad, "messaging_product")
	}
	md, _ := ev.value["metadata"].(map[string]any)
	if md["phone_number_id"] != testPhoneID || md["display_phone_number"] == nil {
		bad = append(bad, "metadata")
	}
	calls, _ := ev.value["calls"].([]any)
	if len(calls) != 1 {
		return append(bad, "calls")
	}
	ev.call, _ = calls[0].(map[string]any)
	ev.event, _ = ev.call["event"].(string)
	ev.id, _ = ev.call["id"].(string)
	if !strings.HasPrefix(ev.id, "wacid.") {
		bad = append(bad, "calls[].id")
	}
	if ev.call["direction"] != "USER_INITIATED" {
		bad = append(bad, "direction")
	}
	if ts, _ := ev.call["timestamp"].(string); ts == "" || strings.Trim(ts, "0123456789") != "" {
		bad = append(bad, "timestamp (unix seconds as a string)")
	}
	if ev.call["to"] == nil || ev.call["from_user_id"] == nil {
		bad = append(bad, "to/from_user_id")
	}
	switch ev.event {
	case "connect":
		contacts, _ := ev.value["contacts"].([]any)
		if len(contacts) != 1 {
			bad = append(bad, "contacts")
		} else {
			ct, _ := contacts[0].(map[string]any)
			p, _ := ct["profile"].(map[string]any)
			if _, ok := p["name"].(string); !ok || ct["user_id"] == nil {
				bad = append(bad, "contacts[0]")
			}
		}
		s, _ := ev.call["session"].(map[string]any)
		if s["sdp_type"] != "offer" {
			bad = append(bad, "session.sdp_type")
		}
		if sdp, _ := s["sdp"].(string); !strings.HasPrefix(sdp, "v=0\r\n") {
			bad = append(bad, "session.sdp")
		}
	case "terminate":
		st, _ := ev.call["status"].(string)
		if st != "COMPLETED" && st != "FAILED" {
			bad = append(bad, "status")
		}
		if _, ok := ev.call["session"]; ok {
			bad = append(bad, "session on terminate")
		}
	default:
		bad = append(bad, "event "+ev.event)
	}
	return bad
}

// next waits for the next webhook, which must be event for call id (any id
// when empty), correctly signed and well shaped.
func (h *hookServer) next(t *testing.T, event, id string, within time.Duration) hookEvent {
	t.Helper()
	select {
	case ev := <-h.events:
		if ev.event != event || (id != "" && ev.id != id) {
			t.Fatalf("webhook %s for %s, want %s for %s: %s", ev.event, ev.id, event, id, ev.raw)
		}
		if !ev.sigOK {
			t.Fatalf("webhook signature does not verify")
		}
		if len(ev.shape) > 0 {
			t.Fatalf("webhook shape problems %v in %s", ev.shape, ev.raw)
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no %s webhook within %s", event, within)
	}
	return hookEvent{}
}

func offerOf(ev hookEvent) string {
	s, _ := ev.call["session"].(map[string]any)
	sdp, _ := s["sdp"].(string)
	return sdp
}

// newTestSim starts a simulator on loopback posting to hooks.
func newTestSim(t *testing.T, hooks *hookServer, mod func(*Config)) *Sim {
	t.Helper()
	cfg := Config{
		GraphListen:   "127.0.0.1:0",
		WebhookURL:    hooks.URL + "/webhook",
		AppSecret:     testSecret,
		AccessToken:   testToken,
		PhoneNumberID: testPhoneID,
		MediaIP:       "127.0.0.1",
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// graphPost sends one Graph calls request and decodes the answer.
func graphPost(t *testing.T, s *Sim, token string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	req, _ := http.NewRequest(http.MethodPost, s.GraphURL()+"/v23.0/"+testPhoneID+"/calls", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func action(callID, act, sdp string) map[string]any {
	m := map[string]any{"messaging_product": "whatsapp", "call_id": callID, "action": act}
	if sdp != "" {
		m["session"] = map[string]any{"sdp_type": "answer", "sdp": sdp}
	}
	return m
}

func waitReport(t *testing.T, c *Call, within time.Duration) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r, err := c.Wait(ctx)
	if err != nil {
		t.Fatalf("call did not end within %s (state %s)", within, c.State())
	}
	return r
}

// peer is a minimal business side: a full ICE agent answering as DTLS
// client on loopback, like the gateway's WhatsApp leg.
type peer struct {
	t      *testing.T
	pc     *webrtc.PeerConnection
	track  *rawTrack
	answer string // newPeer's answer
	offer  string // newOfferer's offer
	up     chan struct{}

	mu   sync.Mutex
	pcm  []int16 // decoded at 16 kHz
	pkts int
	wg   sync.WaitGroup
	stop chan struct{}
	once sync.Once
}

func newPeer(t *testing.T, offer string) *peer {
	t.Helper()
	p := newPeerPC(t)
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatalf("peer cannot take the offer: %v", err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.answer = p.gather(answer)
	return p
}

// newOfferer is a business placing a call: a full ICE agent whose offer
// (actpass, every candidate gathered) is in p.offer; setAnswer applies
// Meta's answer from the connect webhook.
func newOfferer(t *testing.T) *peer {
	t.Helper()
	p := newPeerPC(t)
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.offer = p.gather(offer)
	return p
}

func (p *peer) setAnswer(sdp string) {
	p.t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		p.t.Fatalf("business cannot take Meta's answer: %v", err)
	}
}

func (p *peer) gather(desc webrtc.SessionDescription) string {
	p.t.Helper()
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(desc); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.t.Fatal("peer gathering did not complete")
	}
	return p.pc.LocalDescription().SDP
}

// newPeerPC makes the business's PeerConnection: loopback host candidates,
// Opus/111 and telephone-event/126, answering as DTLS client; received
// Opus is decoded at 16 kHz.
func newPeerPC(t *testing.T) *peer {
	t.Helper()
	se := webrtc.SettingEngine{}
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
		t.Fatal(err)
	}
	lo := net.IPv4(127, 0, 0, 1)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	me := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: 126},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, pc: pc, track: &rawTrack{}, up: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(p.close)
	var upOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			upOnce.Do(func() { close(p.up) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		dec, err := opus.NewDecoder(16000)
		if err != nil {
			return
		}
		defer dec.Close()
		buf := make([]int16, 1920)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			n, err := dec.Decode(pkt.Payload, buf)
			p.mu.Lock()
			p.pkts++
			if err == nil && len(p.pcm) < 60*16000 {
				p.pcm = append(p.pcm, buf[:n]...)
			}
			p.mu.Unlock()
		}
	})
	if _, err := pc.AddTrack(p.track); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *peer) waitUp(within time.Duration) {
	p.t.Helper()
	select {
	case <-p.up:
	case <-time.After(within):
		p.t.Fatalf("peer media not up within %s", within)
	}
}

// sendTone sends an Opus tone (encoded at 16 kHz, RTP clock 48 kHz), one
// packet per 20 ms, with dtmfAt > 0 putting three telephone-event packets in
// the same SSRC and sequence space at that packet number. It stops after
// max packets (0: until close).
func (p *peer) sendTone(freq float64, maxPkts, dtmfAt int) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		enc, err := opus.NewEncoder(16000, opus.AppVoIP)
		if err != nil {
			return
		}
		defer enc.Close()
		tone := audio.NewTone(freq, 16000, 8000)
		pcm := make([]int16, 320)
		out := make([]byte, 1500)
		next := time.Now()
		var seq uint16 = 100
		var ts uint32 = 5000
		for n := 1; maxPkts == 0 || n <= maxPkts; n++ {
			if n == dtmfAt {
				for i := 0; i < 3; i++ {
					// RFC 4733: event 5, end bit on the last, duration in 8 kHz units.
					pl := []byte{5, 10, 0, byte(160 * (i + 1))}
					if i == 2 {
						pl[1] |= 0x80
					}
					_ = p.track.write(&rtp.Header{Version: 2, PayloadType: 126, SequenceNumber: seq, Timestamp: ts, Marker: i == 0}, pl)
					seq++
				}
			}
			tone.Fill(pcm)
			k, err := enc.Encode(pcm, out)
			if err != nil {
				return
			}
			if err := p.track.write(&rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts}, out[:k]); err != nil {
				return
			}
			seq++
			ts += 960
			// Clock-paced like the simulator: late wake-ups catch up.
			next = next.Add(20 * time.Millisecond)
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-p.stop:
					return
				}
			}
		}
	}()
}

func (p *peer) received() ([]int16, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int16(nil), p.pcm...), p.pkts
}

func (p *peer) close() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
		_ = p.pc.Close()
	})
}

// rawTrack is a TrackLocal that writes packets as given (payload type
// included) through the bound writer: TrackLocalStaticRTP would rewrite the
// payload type and could not carry telephone-event beside Opus.
type rawTrack struct {
	mu   sync.Mutex
	ssrc webrtc.SSRC
	w    webrtc.TrackLocalWriter
}

func (r *rawTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
			r.ssrc, r.w = ctx.SSRC(), ctx.WriteStream()
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (r *rawTrack) Unbind(webrtc.TrackLocalContext) error {
	r.mu.Lock()
	r.w = nil
	r.mu.Unlock()
	return nil
}

func (r *rawTrack) ID() string                { return "biz-audio" }
func (r *rawTrack) RID() string               { return "" }
func (r *rawTrack) StreamID() string          { return "biz" }
func (r *rawTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

func (r *rawTrack) write(h *rtp.Header, payload []byte) error {
	r.mu.Lock()
	w, ssrc := r.w, r.ssrc
	r.mu.Unlock()
	if w == nil {
		return nil
	}
	h.SSRC = uint32(ssrc)
	_, err := w.WriteRTP(h, payload)
	return err
}

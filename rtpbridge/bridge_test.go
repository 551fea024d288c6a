package rtpbridge

import (
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewRefusesBadConfig(t *testing.T) {
	l := newMemLeg()
	ok := withMetaPTs(Config{WhatsAppIn: l, WhatsAppOut: l, SIPIn: l, SIPOut: l, SIPCodec: pcmu})
	cases := map[string]func(c *Config){
		"no whatsapp reader": func(c *Config) { c.WhatsAppIn = nil },
		"no sip writer":      func(c *Config) { c.SIPOut = nil },
		"G.729":              func(c *Config) { c.SIPCodec = Codec{"G729", 18, 8000} },
		"PCMU at 16 kHz":     func(c *Config) { c.SIPCodec.ClockRate = 16000 },
		"payload type 200":   func(c *Config) { c.SIPCodec.PayloadType = 200 },
		"no codec":           func(c *Config) { c.SIPCodec = Codec{} },
		"30 ms frames":       func(c *Config) { c.Frame = 30 * time.Millisecond },
		"complexity 11":      func(c *Config) { c.OpusComplexity = 11 },
		"complexity -2":      func(c *Config) { c.OpusComplexity = -2 },
		"no opus pt":         func(c *Config) { c.WhatsAppOpusPT, c.WhatsAppDTMFPT = 0, 0 },
		"no opus pt, dtmf":   func(c *Config) { c.WhatsAppOpusPT = 0 },
		"opus on pt 95":      func(c *Config) { c.WhatsAppOpusPT = 95 },
		"opus on pt 128":     func(c *Config) { c.WhatsAppOpusPT = 128 },
		"opus pt = dtmf pt":  func(c *Config) { c.WhatsAppOpusPT = 126 },
		"wa dtmf on pt 13":   func(c *Config) { c.WhatsAppDTMFPT = 13 },
		"wa dtmf on pt 128":  func(c *Config) { c.WhatsAppDTMFPT = 128 },
		"opus at 8 kHz":      func(c *Config) { c.SIPCodec = Codec{"opus", 96, 8000} },
		"G.722 at 16 kHz":    func(c *Config) { c.SIPCodec = Codec{"G722", 9, 16000} },
		"dtmf mode":          func(c *Config) { c.DTMFMode = DTMFModeInband + 1 },
		"dtmf pt 200":        func(c *Config) { c.SIPDTMFPayloadType = 200 },
		"dtmf pt = codec pt": func(c *Config) { c.SIPCodec.PayloadType, c.SIPDTMFPayloadType = 101, 101 },
		"dtmf clock 4 kHz":   func(c *Config) { c.SIPDTMFClockRate = 4000 },
	}
	for name, mod := range cases {
		c := ok
		mod(&c)
		if b, err := New(c); err == nil {
			b.Close()
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	c := ok
	c.SIPCodec = Codec{"G729", 18, 8000}
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), `"G729" is not supported (supported: PCMU, PCMA, G722, opus)`) {
		t.Fatalf("unclear error: %v", err)
	}
}

func TestBridgeString(t *testing.T) {
	l := newMemLeg()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{SIPCodec: Codec{"pcma", 8, 0}, OpusComplexity: 10},
			"whatsapp opus/48000 → reorder 60ms → opus decode 8k (fec/plc) → 20ms frames → pcma encode → sip" +
				" | sip pcma/8000 → pcma decode → playout 6-40ms → opus encode 8k (20ms pacer) → whatsapp"},
		{Config{SIPCodec: Codec{"G722", 9, 8000}, SIPDTMFPayloadType: 101},
			"whatsapp opus/48000 → reorder 60ms → telephone-event → rfc4733/101 → opus decode 16k (fec/plc) → 20ms frames → g722 encode → sip" +
				" | sip g722/8000 → g722 decode → playout 6-40ms → opus encode 16k (20ms pacer) → rfc4733/101 → telephone-event 126 → whatsapp"},
		{Config{SIPCodec: Codec{"opus", 107, 48000}, SIPDTMFPayloadType: 101},
			"whatsapp opus/48000 → reorder 60ms → telephone-event → rfc4733/101 → opus passthrough → sip" +
				" | sip opus/48000 → opus passthrough → playout 6-40ms → opus passthrough (20ms pacer) → rfc4733/101 → telephone-event 126 → whatsapp"},
		{Config{SIPCodec: pcmu, DTMFMode: DTMFModeInband},
			"whatsapp opus/48000 → reorder 60ms → telephone-event → dtmf tones → opus decode 8k (fec/plc) → 20ms frames → pcmu encode → sip" +
				" | sip pcmu/8000 → pcmu decode → dtmf detect (goertzel) → playout 6-40ms → opus encode 8k (20ms pacer) → whatsapp"},
		{Config{SIPCodec: pcmu, DTMFMode: DTMFModeInfo, SIPDTMFPayloadType: 101},
			"whatsapp opus/48000 → reorder 60ms → telephone-event → OnDigit (info) → opus decode 8k (fec/plc) → 20ms frames → pcmu encode → sip" +
				" | sip pcmu/8000 → pcmu decode → playout 6-40ms → opus encode 8k (20ms pacer) → rfc4733/101 → telephone-event 126 → whatsapp"},
	} {
		c := tc.cfg
		c.WhatsAppIn, c.WhatsAppOut, c.SIPIn, c.SIPOut = l, l, l, l
		b, err := New(withMetaPTs(c))
		if err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tc.want {
			t.Errorf("chain\n%s\nwant\n%s", got, tc.want)
		}
		b.Close()
	}
}

// The SIP SSRC is random unless given; the Opus payload type toward
// WhatsApp is the one configured.
func TestBridgeIdentifiers(t *testing.T) {
	for _, tc := range []struct {
		ssrc   uint32
		opusPT uint8
	}{{0, metaOpusPT}, {0x1234, 96}} {
		b, sip, wa := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPSSRC: tc.ssrc, WhatsAppOpusPT: tc.opusPT, WhatsAppSSRC: 7})
		src := newWhatsAppSender(t, 1000, 8000, 20, false)
		p := src.next()
		p[1] = p[1]&0x80 | tc.opusPT
		b.handleWhatsAppPacket(p)
		b.sendFrameToWhatsApp()
		s, w := unmarshal(t, sip.out), unmarshal(t, wa.out)
		if len(s) != 1 || len(w) != 1 {
			t.Fatalf("%d and %d packets", len(s), len(w))
		}
		if tc.ssrc != 0 && s[0].SSRC != tc.ssrc || s[0].SSRC == 0 {
			t.Fatalf("SIP SSRC %#x", s[0].SSRC)
		}
		if w[0].PayloadType != tc.opusPT || w[0].SSRC != 7 {
			t.Fatalf("WhatsApp packet %+v", w[0].Header)
		}
	}
}

func newDrivenBridgeWith(t testing.TB, c Config) (b *Bridge, sip, wa *recorder) {
	t.Helper()
	sip, wa = &recorder{}, &recorder{}
	never := nullReader{closed: make(chan struct{})}
	c.WhatsAppIn, c.SIPIn, c.WhatsAppOut, c.SIPOut = never, never, wa, sip
	b, err := New(withMetaPTs(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, sip, wa
}

// bridgeGoroutines counts the goroutines running bridge code (the test's
// own goroutines excluded).
func bridgeGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		// The media workers are the package's, not a bridge's.
		if strings.Contains(g, "wagateway/rtpbridge.") && !strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "(*worker).run") {
			n++
		}
	}
	return n
}

// waitGoroutines waits briefly for the bridge's goroutines to be n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for bridgeGoroutines() != n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d bridge goroutines, want %d\n%s", bridgeGoroutines(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With legs that cannot be polled Start runs two goroutines, the readers
// (the stream toward WhatsApp is paced by a media worker); once the legs
// are closed Close waits for the readers and has taken the stream off its
// worker.
// Close is idempotent and safe from several goroutines.
func TestBridgeGoroutinesEnd(t *testing.T) {
	waitGoroutines(t, 0)
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	b.Start() // no second set
	waitGoroutines(t, 2)
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for i := 0; i < 5; i++ {
		waLeg.feed(src.next())
	}
	for _, p := range g711Packets(t, 0, 500, 8000, 20, 5) {
		sipLeg.feed(p)
	}
	sipLeg.waitFor(t, 5, time.Second)

	// Close while the legs are still open: it returns once they close.
	closed := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Close()
		}()
	}
	go func() {
		wg.Wait()
		close(closed)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-closed:
		t.Fatal("Close returned with the readers still blocked in ReadPacket")
	default:
	}
	waLeg.Close()
	sipLeg.Close()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return after the legs closed")
	}
	waitGoroutines(t, 0)
	if b.pacing.index != -1 {
		t.Fatal("the stream toward WhatsApp is still on its pacer after Close")
	}
	onClose := b.Stats().SIPToWhatsApp
	time.Sleep(60 * time.Millisecond) // three frame periods
	if now := b.Stats().SIPToWhatsApp; now.PacketsOut+now.WriteErrors != onClose.PacketsOut+onClose.WriteErrors {
		t.Fatalf("frames toward WhatsApp after Close: %v, then %v", onClose, now)
	}
	b.Close()
	b.Start() // after Close: nothing starts
	waitGoroutines(t, 0)
	st := b.Stats()
	if st.WhatsAppToSIP.PacketsIn != 5 || st.SIPToWhatsApp.PacketsIn != 5 {
		t.Fatalf("stats %v", st)
	}
}

// A bridge that never started closes without waiting.
func TestBridgeCloseWithoutStart(t *testing.T) {
	l := newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: l, WhatsAppOut: l, SIPIn: l, SIPOut: l, SIPCodec: pcmu})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { b.Close(); b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Close blocked")
	}
}

// Stats can be read while the bridge runs (go test -race) and logs as
// JSON with stable field names.
func TestStatsSnapshot(t *testing.T) {
	waLeg, sipLeg := newMemLeg(), newMemLeg()
	b, err := New(Config{WhatsAppOpusPT: metaOpusPT, WhatsAppDTMFPT: metaDTMFPT, WhatsAppIn: waLeg, WhatsAppOut: waLeg, SIPIn: sipLeg, SIPOut: sipLeg, SIPCodec: pcmu})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for i := 0; i < 20; i++ {
		waLeg.feed(src.next())
		_ = b.Stats()
	}
	sipLeg.waitFor(t, 20, time.Second)
	waLeg.Close()
	sipLeg.Close()
	b.Close()
	js, err := json.Marshal(b.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"whatsapp_to_sip":{"packets_in":20,`, `"packets_out":20,`, `"sip_to_whatsapp":`, `"silence_frames":`, `"fec_recovered":0`, `"jitter_ms":`, `"loss_pct":0,`, `"mos":`} {
		if !strings.Contains(string(js), key) {
			t.Fatalf("%s lacks %s", js, key)
		}
	}
	if s := b.Stats().String(); !strings.HasPrefix(s, "whatsapp→sip: in 20 pkts/") {
		t.Fatalf("String: %s", s)
	}
}

package gateway_test

import (
	"bytes"
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// loopbackOnly keeps only loopback candidates in an SDP: Chromium also
// gathers on the machine's other interfaces, and network tests bind only
// to loopback.
func loopbackOnly(sdp string) string {
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			f := strings.Fields(line)
			if len(f) < 5 || !(f[4] == "127.0.0.1" || f[4] == "::1") {
				continue
			}
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

// browserCaller serves the caller page and relays its SDP through the
// simulated Cloud API.
type browserCaller struct {
	t        *testing.T
	srv      *http.Server
	url      string
	sim      *wasim.Sim
	mu       sync.Mutex
	call     *wasim.Call
	answer   string
	dtmfDone chan string
	logs     bytes.Buffer
}

func startBrowserCaller(t *testing.T, sim *wasim.Sim, digits string) *browserCaller {
	t.Helper()
	b := &browserCaller{t: t, sim: sim, dtmfDone: make(chan string, 1)}
	page, err := os.ReadFile("testdata/chromium/caller.html")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write(page)
	})
	mux.HandleFunc("POST /offer", func(w http.ResponseWriter, r *http.Request) {
		offer, _ := io.ReadAll(r.Body)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := sim.PlaceCall(ctx, wasim.CallOptions{
			From: "15550001234", ProfileName: "Chromium Caller",
			ExternalOffer: loopbackOnly(string(offer)),
			OnAnswer: func(sdp string) {
				b.mu.Lock()
				b.answer = loopbackOnly(sdp)
				b.mu.Unlock()
			},
		})
		if err != nil {
			t.Errorf("place call: %v", err)
			http.Error(w, err.Error(), 500)
			return
		}
		b.mu.Lock()
		b.call = c
		b.mu.Unlock()
	})
	mux.HandleFunc("GET /answer", func(w http.ResponseWriter, _ *http.Request) {
		b.mu.Lock()
		a := b.answer
		b.mu.Unlock()
		if a == "" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, a)
	})
	mux.HandleFunc("POST /log", func(w http.ResponseWriter, r *http.Request) {
		msg, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.logs.WriteString(string(msg) + "\n")
		b.mu.Unlock()
	})
	mux.HandleFunc("POST /dtmf-done", func(w http.ResponseWriter, r *http.Request) {
		d, _ := io.ReadAll(r.Body)
		select {
		case b.dtmfDone <- string(d):
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.srv = &http.Server{Handler: mux}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	b.url = "http://" + ln.Addr().String() + "/?dtmf=" + strings.ReplaceAll(digits, "#", "%23")
	return b
}

func (b *browserCaller) browserLog() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// startChromium runs Debian's headless Chromium on the page, its fake
// microphone playing wav.
func startChromium(t *testing.T, url, wav string) {
	t.Helper()
	bin := requirePeer(t, "chromium")
	profile := t.TempDir()
	cmd := exec.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--use-file-for-fake-audio-capture="+wav,
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--disable-quic", "--remote-debugging-port=0",
		"--user-data-dir="+profile, url)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("chromium output (tail):\n%s", tail(out.String(), 3000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Headless Chromium, a WebRTC stack none of us wrote, is the WhatsApp caller:
// its microphone's 800 Hz tone must be in the agent's phone's (baresip's)
// recording, and the digits it presses with insertDTMF must reach the phone.
func TestChromiumCallerReachesSIPPhone(t *testing.T) {
	phone := startBaresip(t, 600)
	h := newHarness(t, harnessOptions{PBXAddr: phone.Addr})

	pcm := make([]int16, 48000*20)
	audio.NewTone(800, 48000, 12000).Fill(pcm)
	wav := filepath.Join(t.TempDir(), "mic.wav")
	f, err := os.Create(wav)
	if err != nil {
		t.Fatal(err)
	}
	if err := audio.WriteWAV(f, pcm, 48000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctrl := phone.control(t)
	caller := startBrowserCaller(t, h.sim, "159#")
	startChromium(t, caller.url, wav)
	select {
	case <-caller.dtmfDone: // the page talked for two seconds
	case <-time.After(40 * time.Second):
		t.Fatalf("the browser call did not get going; page log:\n%s", caller.browserLog())
	}
	time.Sleep(time.Second)
	caller.mu.Lock()
	c := caller.call
	caller.mu.Unlock()
	if err := c.Hangup(); err != nil {
		t.Fatal(err)
	}
	r := waitReport(t, c, 15*time.Second)
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if got := actions(r); got != "pre_accept,accept" {
		t.Errorf("graph actions %q, want pre_accept,accept", got)
	}
	if got := ctrl.heardDigits(); got != "159#" {
		t.Errorf("baresip heard digits %q from Chromium's insertDTMF, want 159#; page log:\n%s", got, caller.browserLog())
	}
	waitNoActiveCalls(t, h.gw)
	time.Sleep(300 * time.Millisecond)
	heard, rate := phone.heard(t)
	if len(heard) < rate {
		t.Fatalf("baresip recorded only %d samples; page log:\n%s", len(heard), caller.browserLog())
	}
	skip := rate / 2
	f0, purity := audio.DominantFrequency(heard[skip:], rate, 100, 3400, 10)
	if math.Abs(f0-800) > 20 || purity < 0.5 {
		t.Errorf("baresip heard %.0f Hz (purity %.2f), want Chromium's 800 Hz; page log:\n%s", f0, purity, caller.browserLog())
	}
}

package gateway_test

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// baresip answers as an agent's phone would: it auto-answers, speaks a
// 600 Hz tone from a WAV file, and its sndfile module records what it hears.
type baresip struct {
	Addr     string
	CtrlAddr string // ctrl_tcp: events (DTMF received) and commands (send DTMF)
	dir      string
	cmd      *exec.Cmd
	out      bytes.Buffer
	done     chan error
}

// baresipOptions: the tone it speaks, and the codecs it answers with
// ("PCMU,PCMA", "G722", "opus").
type baresipOptions struct {
	ToneHz float64
	Codecs string
	WAV    string // what it plays instead of the tone (8 kHz, 16-bit mono)
}

func startBaresip(t *testing.T, toneHz float64) *baresip {
	return startBaresipWith(t, baresipOptions{ToneHz: toneHz})
}

// startBaresipWith starts baresip as an agent's phone. baresip binds its
// SIP port over UDP and TCP and the next port for TLS, and dies when one
// of them is taken (the gateway's own listeners take ephemeral ports too):
// each try checks the three ports first, and a baresip that exits at once
// is tried again on others.
func startBaresipWith(t *testing.T, o baresipOptions) *baresip {
	t.Helper()
	bin := requirePeer(t, "baresip")
	var last *baresip
	for try := 0; try < 5; try++ {
		b := tryBaresipWith(t, bin, o)
		select {
		case err := <-b.done:
			b.done <- err // for the cleanup
			last = b
			continue
		default:
			return b
		}
	}
	t.Fatalf("baresip did not start:\n%s", last.out.String())
	return nil
}

// baresipSIPPort is a port whose UDP and TCP, and the next TCP port, are
// free on loopback.
func baresipSIPPort(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		p, err := wasim.FreeLoopbackPort("udp")
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, q := range []int{p, p + 1} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free loopback port for baresip's SIP (UDP, TCP and TLS)")
	return 0
}

func tryBaresipWith(t *testing.T, bin string, o baresipOptions) *baresip {
	t.Helper()
	// baresip 1.0 answers with the codec modules it has loaded, and its
	// aufile source must run at that codec's rate.
	modules, rate, channels := "module g711.so", 8000, 1
	switch o.Codecs {
	case "G722":
		modules, rate = "module g722.so", 16000
	case "opus":
		modules, rate, channels = "module opus.so", 48000, 2
	}
	port := baresipSIPPort(t)
	ctrl, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	b := &baresip{Addr: "127.0.0.1:" + strconv.Itoa(port), CtrlAddr: "127.0.0.1:" + strconv.Itoa(ctrl), dir: t.TempDir(), done: make(chan error, 1)}
	source := o.WAV
	if source == "" {
		pcm := make([]int16, rate*30)
		audio.NewTone(o.ToneHz, rate, 12000).Fill(pcm)
		var wav bytes.Buffer
		if err := audio.WriteWAVChannels(&wav, pcm, rate, channels); err != nil {
			t.Fatal(err)
		}
		source = filepath.Join(b.dir, "tone.wav")
		if err := os.WriteFile(source, wav.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config", fmt.Sprintf(`sip_listen %s
audio_player aubridge,nil
audio_source aufile,%s
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
%s
module aufile.so
module aubridge.so
module sndfile.so
module account.so
module menu.so
module ctrl_tcp.so
ctrl_tcp_listen %s
snd_path %s
`, b.Addr, source, modules, b.CtrlAddr, b.dir))
	// The gateway calls sip:agents@…: the account's user must match.
	write("accounts", fmt.Sprintf("<sip:agents@%s>;regint=0;answermode=auto\n", b.Addr))

	b.cmd = exec.Command(bin, "-f", b.dir, "-t", "60")
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start baresip: %v", err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
		if t.Failed() {
			t.Logf("baresip output:\n%s", b.out.String())
		}
	})
	time.Sleep(500 * time.Millisecond)
	return b
}

// heard returns what baresip recorded from the gateway.
func (b *baresip) heard(t *testing.T) ([]int16, int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(b.dir, "dump-*-dec.wav"))
	if len(files) == 0 {
		t.Fatalf("baresip recorded nothing; output:\n%s", b.out.String())
	}
	pcm, rate, err := audio.ReadWAV(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	return pcm, rate
}

// A real SIP phone (baresip) answers: the caller hears its 600 Hz tone and
// it hears the caller's 1 kHz tone.
func TestBaresipAnswersBothWays(t *testing.T) {
	phone := startBaresip(t, 600)
	h := newHarness(t, harnessOptions{PBXAddr: phone.Addr})
	r := waitReport(t, h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 3 * time.Second}), 30*time.Second)
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if math.Abs(r.ReceivedFreqHz-600) > 20 || r.ReceivedPurity < 0.5 {
		t.Errorf("caller heard %.0f Hz (purity %.2f), want baresip's 600 Hz", r.ReceivedFreqHz, r.ReceivedPurity)
	}
	waitNoActiveCalls(t, h.gw)
	time.Sleep(300 * time.Millisecond) // baresip closes its recording
	pcm, rate := phone.heard(t)
	if len(pcm) < rate { // at least a second
		t.Fatalf("baresip recorded only %d samples", len(pcm))
	}
	skip := rate / 2 // codec start-up
	f, purity := audio.DominantFrequency(pcm[skip:], rate, 100, 3400, 10)
	if math.Abs(f-1000) > 20 || purity < 0.5 {
		t.Errorf("baresip heard %.0f Hz (purity %.2f), want the caller's 1000 Hz", f, purity)
	}
	if lvl := audio.RMS(pcm[skip:]); lvl < -40 {
		t.Errorf("baresip heard the caller at %.1f dBFS, too quiet", lvl)
	}
}

package sip

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/internal/testpeer"
)

// needBaresip skips without baresip, except in CI where it is a failure.
func needBaresip(t *testing.T) string {
	t.Helper()
	return testpeer.Require(t, "baresip", "baresip-core")
}

// baresipModuleDir finds the directory of baresip's modules.
func baresipModuleDir(t *testing.T) string {
	t.Helper()
	for _, pattern := range []string{"/usr/lib/baresip/modules", "/usr/lib/*/baresip/modules", "/usr/local/lib/baresip/modules"} {
		m, _ := filepath.Glob(filepath.Join(pattern, "g722.so"))
		if len(m) > 0 {
			return filepath.Dir(m[0])
		}
	}
	testpeer.Missing(t, "baresip's g722 module not found")
	return ""
}

// startBaresip runs baresip as a callee on 127.0.0.1 that answers every
// call at once, plays a sine tone and knows G.722 and G.711. It stops on
// its own after 20 s at the latest. A port taken between our probe and its
// bind (it binds UDP and TCP) costs a retry on another port.
func startBaresip(t *testing.T) (addr string, out *lockedBuffer) {
	t.Helper()
	bin := needBaresip(t)
	mods := baresipModuleDir(t)
	for attempt := 0; attempt < 3; attempt++ {
		var ok bool
		if addr, out, ok = tryBaresip(t, bin, mods); ok {
			return addr, out
		}
	}
	t.Fatalf("baresip did not start:\n%s", out.String())
	return "", nil
}

func tryBaresip(t *testing.T, bin, mods string) (string, *lockedBuffer, bool) {
	dir := t.TempDir()
	port := freePort(t, "tcp")
	// RTP from a range of its own (the UA's tests use 30000-31999, baresip's
	// default is 10000-20000). ausine only makes 48 kHz stereo: baresip
	// resamples it for G.722.
	minRTP := 32100 + 2*(port%400)
	config := fmt.Sprintf(`sip_listen 127.0.0.1:%d
net_interface 127.0.0.1
rtp_ports %d-%d
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
audio_alert aufile,/dev/null
module_path %s
module g722.so
module g711.so
module ausine.so
module aufile.so
module_app account.so
module_app menu.so
`, port, minRTP, minRTP+19, mods)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte("<sip:bob@127.0.0.1>;regint=0;answermode=auto\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, bin, "-f", dir, "-t", "20")
	cmd.Dir = dir
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start baresip: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cmd.Wait()
	}()
	stop := func() {
		cancel() // kills baresip if it still runs
		<-done
	}
	// "baresip is ready." comes once its SIP sockets are bound.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "baresip is ready") {
		select {
		case <-done:
			stop()
			return "", out, false
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", out, false
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(stop)
	return fmt.Sprintf("127.0.0.1:%d", port), out, true
}

// TestBaresipAnswersG722: a real UA as the callee. Our G722-first offer is
// answered with G722 on PT 9 (RTP clock 8000); its tone arrives as G722
// packets; it logs ours arriving; our BYE ends the call on its side.
func TestBaresipAnswersG722(t *testing.T) {
	checkLeaks(t)
	addr, out := startBaresip(t)
	ua := newTestUA(t, "udp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &Trunk{Name: "baresip", Address: addr, Codecs: []string{"G722", "PCMU", "PCMA"}}
	c, err := ua.Invite(ctx, InviteRequest{Trunk: tr, To: "sip:bob@" + addr, FromUser: "+15551234567"})
	if err != nil {
		t.Fatalf("invite: %v\nbaresip:\n%s", err, tail(out.String(), 3000))
	}
	defer c.Close()
	if c.Codec() != (Codec{"G722", 9, 8000}) {
		t.Errorf("codec %+v, want G722/9/8000", c.Codec())
	}
	if ip := c.RemoteRTPAddr().IP; !ip.IsLoopback() {
		t.Errorf("baresip's RTP address %s is not loopback", ip)
	}

	// baresip sends its sine tone: 20 ms G722 frames are 160 bytes and
	// their timestamps step 160 (8000 Hz clock).
	buf := make([]byte, 1500)
	var lastTS uint32
	for i := 0; i < 10; i++ {
		p := readWithin(t, c, buf, 3*time.Second)
		if pt := p[1] & 0x7f; pt != 9 {
			t.Fatalf("packet %d: PT %d, want 9", i, pt)
		}
		ts := uint32(p[4])<<24 | uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7])
		if i > 0 && ts-lastTS != 160 {
			t.Errorf("packet %d: timestamp step %d, want 160", i, ts-lastTS)
		}
		lastTS = ts
		if len(p)-12 != 160 {
			t.Errorf("packet %d: payload %d bytes, want 160", i, len(p)-12)
		}
		// Send one G722 frame back (silence-ish bytes).
		pkt := make([]byte, 172)
		pkt[0], pkt[1] = 0x80, 9
		pkt[3] = byte(i)
		if err := c.WritePacket(pkt); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Second, func() bool { return strings.Contains(out.String(), "incoming rtp for 'audio' established") })
	if err := c.Hangup(ctx); err != nil {
		t.Errorf("hangup: %v\nbaresip:\n%s", err, tail(out.String(), 3000))
	}
	waitFor(t, 3*time.Second, func() bool { return strings.Contains(out.String(), "session closed") })
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package gateway_test

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/g711"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// The early-media tones: A plays during the 183, B (one second, once)
// after the 200 OK.
const (
	earlyToneA   = 500.0
	earlyToneB   = 1500.0
	toneBFrames  = 50 // 1 s of 20 ms frames
	frameSamples = 320
)

// ulawWAV writes d of a tone as an 8 kHz µ-law WAV (format 7, RFC 3551's
// PCMU), the file sipp's rtp_stream plays.
func ulawWAV(t *testing.T, path string, hz float64, d time.Duration) {
	t.Helper()
	pcm := make([]int16, int(d.Seconds()*8000))
	audio.NewTone(hz, 8000, 0.3*32767).Fill(pcm)
	data := make([]byte, len(pcm))
	g711.EncodeUlaw(pcm, data)
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(data)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 7) // µ-law
	binary.LittleEndian.PutUint16(h[22:], 1)
	binary.LittleEndian.PutUint32(h[24:], 8000)
	binary.LittleEndian.PutUint32(h[28:], 8000)
	binary.LittleEndian.PutUint16(h[32:], 1)
	binary.LittleEndian.PutUint16(h[34:], 8)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	if err := os.WriteFile(path, append(h, data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// silentWAV is a WAV of silence for the caller to send, so that nothing it
// says (sipp echoes RTP) mixes with the PBX's tones.
func silentWAV(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "silence.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := audio.WriteWAV(f, make([]int16, 16000), 16000); err != nil {
		t.Fatal(err)
	}
	return path
}

// earlyMediaPBX starts sipp playing tone A in early media, then tone B
// after its 200 OK.
func earlyMediaPBX(t *testing.T) *sipp {
	t.Helper()
	requirePeer(t, "sipp")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "tone_a.wav"), filepath.Join(dir, "tone_b.wav")
	ulawWAV(t, a, earlyToneA, 2*time.Second)
	ulawWAV(t, b, earlyToneB, toneBFrames*20*time.Millisecond)
	tmpl, err := os.ReadFile(filepath.Join("testdata", "pbx_early_media.xml"))
	if err != nil {
		t.Fatal(err)
	}
	scn := strings.NewReplacer("TONE_A_WAV", a, "TONE_B_WAV", b).Replace(string(tmpl))
	path := filepath.Join(dir, "pbx_early_media.xml")
	if err := os.WriteFile(path, []byte(scn), 0o644); err != nil {
		t.Fatal(err)
	}
	return startSippEcho(t, path, 1, 40*time.Second, false)
}

// frameKinds classifies each 20 ms frame of what the caller heard: 'A' or
// 'B' when that tone carries most of the frame's energy at a level a
// listener hears, '.' otherwise (silence, comfort noise).
func frameKinds(pcm []int16) string {
	var b strings.Builder
	for i := 0; i+frameSamples <= len(pcm); i += frameSamples {
		f := pcm[i : i+frameSamples]
		level := audio.RMS(f)
		pa, pb := audio.Goertzel(f, 16000, earlyToneA), audio.Goertzel(f, 16000, earlyToneB)
		total := math.Pow(10, level/10) * 2 // a sine's Goertzel power is twice its mean square
		switch {
		case level < -40:
			b.WriteByte('.')
		case pa > 0.5*total:
			b.WriteByte('A')
		case pb > 0.5*total:
			b.WriteByte('B')
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}

// startsWith reports whether the first tone heard is tone: the first frame
// that is not silence is that tone's, or the frame where it sets in (the
// codecs' delay puts the onset inside a frame, which then holds some of
// the silence before it).
func startsWith(kinds string, tone byte) bool {
	heard := strings.TrimLeft(kinds, ".")
	if strings.HasPrefix(heard, "?") {
		heard = heard[1:]
	}
	return len(heard) > 0 && heard[0] == tone
}

// By default the PBX's early media is dropped: the caller hears WhatsApp's
// ringback until the 200 OK, then the greeting after the answer from its
// first frame, never a stale frame of the early one.
func TestEarlyMediaDroppedByDefault(t *testing.T) {
	pbx := earlyMediaPBX(t)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr})
	c := h.call(t, wasim.CallOptions{Duration: 3 * time.Second, KeepAudio: true, WAVFile: silentWAV(t)})
	r := waitReport(t, c, 30*time.Second)
	if err := pbx.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	kinds := frameKinds(r.ReceivedPCM)
	t.Logf("frames heard: %s", kinds)
	if n := strings.Count(kinds, "A"); n > 0 {
		t.Errorf("the caller heard %d frames of the early greeting, want none", n)
	}
	if n := strings.Count(kinds, "B"); n < toneBFrames-1 {
		t.Errorf("the caller heard %d frames of the %d-frame greeting after the answer, want all of them", n, toneBFrames)
	}
	if !startsWith(kinds, 'B') {
		t.Errorf("the first frame heard is not the greeting after the answer")
	}
	if rec := h.record(t, c.ID()); !rec.Times.Early.IsZero() || rec.Outcome != gateway.OutcomeBridged {
		t.Errorf("record %s, early media at %v: want bridged, no early media", rec.Outcome, rec.Times.Early)
	}
}

// With early_media: answer the call is accepted on the 183: the caller
// hears the early greeting from its first frame, then the later one whole.
func TestEarlyMediaAnswered(t *testing.T) {
	pbx := earlyMediaPBX(t)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr, Config: func(c *gateway.Config) {
		c.Numbers[0].Routes[0].EarlyMedia = gateway.EarlyMediaAnswer
	}})
	c := h.call(t, wasim.CallOptions{Duration: 4 * time.Second, KeepAudio: true, WAVFile: silentWAV(t)})
	r := waitReport(t, c, 30*time.Second)
	if err := pbx.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	kinds := frameKinds(r.ReceivedPCM)
	t.Logf("frames heard: %s", kinds)
	if !startsWith(kinds, 'A') {
		t.Errorf("the first frame heard is not the early greeting's")
	}
	// sipp plays A for 1.5 s (75 frames) before its 200 OK.
	if n := strings.Count(kinds, "A"); n < 72 {
		t.Errorf("the caller heard %d frames of the 1.5 s early greeting, want it whole", n)
	}
	// The PBX switches from A to B with no pause: the codecs smear the
	// switch over two frames, so one more frame than after silence is
	// neither tone.
	if n := strings.Count(kinds, "B"); n < toneBFrames-2 {
		t.Errorf("the caller heard %d frames of the %d-frame greeting after the answer, want all of them", n, toneBFrames)
	}
	rec := h.record(t, c.ID())
	if rec.Times.Early.IsZero() || rec.Times.Answer.Before(rec.Times.Early) || rec.Outcome != gateway.OutcomeBridged {
		t.Errorf("record %s, times %+v: want bridged on early media, then answered", rec.Outcome, rec.Times)
	}
}

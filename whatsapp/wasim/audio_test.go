package wasim

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// decodeLoop plays a loop twice through a 16 kHz decoder.
func decodeLoop(t *testing.T, l *audioLoop) []int16 {
	t.Helper()
	dec, err := opus.NewDecoder(16000)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var out []int16
	buf := make([]int16, 1920)
	for pass := 0; pass < 2; pass++ {
		for _, f := range l.frames {
			n, err := dec.Decode(f, buf)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, buf[:n]...)
		}
	}
	return out
}

func TestToneLoop(t *testing.T) {
	for _, ms := range []int{10, 20, 40, 60} {
		l, err := buildLoop(loopKey{tone: 1000, frameMs: ms})
		if err != nil {
			t.Fatal(err)
		}
		want := 1000 / ms
		if ms == 60 {
			want = 50 // three seconds: whole frames and whole cycles
		}
		if len(l.frames) != want || l.step != uint32(48*ms) {
			t.Errorf("%d ms: %d frames, step %d", ms, len(l.frames), l.step)
		}
		f, purity, level := analyse(decodeLoop(t, l), 16000)
		if math.Abs(f-1000) > 2 || purity < 0.9 || level < -20 || level > -12 {
			t.Errorf("%d ms: %.0f Hz purity %.2f level %.1f", ms, f, purity, level)
		}
	}
}

// A WAV at a rate Opus does not take (44.1 kHz) is resampled; one at 16 kHz
// is encoded as it is.
func TestWAVLoop(t *testing.T) {
	for _, rate := range []int{44100, 16000} {
		pcm := make([]int16, rate/2) // half a second
		audio.NewTone(700, rate, 10000).Fill(pcm)
		path := filepath.Join(t.TempDir(), "in.wav")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := audio.WriteWAV(f, pcm, rate); err != nil {
			t.Fatal(err)
		}
		f.Close()
		l, err := buildLoop(loopKey{wav: path, frameMs: 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.frames) != 25 || l.step != 960 {
			t.Errorf("%d Hz wav: %d frames, step %d", rate, len(l.frames), l.step)
		}
		if fr, purity, _ := analyse(decodeLoop(t, l), 16000); math.Abs(fr-700) > 3 || purity < 0.8 {
			t.Errorf("%d Hz wav: %.0f Hz purity %.2f", rate, fr, purity)
		}
	}
	if _, err := buildLoop(loopKey{wav: filepath.Join(t.TempDir(), "missing.wav"), frameMs: 20}); err == nil {
		t.Error("a missing wav was accepted")
	}
}

// The analysis finds a tone between the 10 Hz steps and says silence is silence.
func TestAnalyse(t *testing.T) {
	pcm := make([]int16, 16000*2)
	audio.NewTone(1234, 16000, 8000).Fill(pcm)
	if f, purity, _ := analyse(pcm, 16000); math.Abs(f-1234) > 1 || purity < 0.95 {
		t.Errorf("1234 Hz tone: %.0f Hz purity %.2f", f, purity)
	}
	if f, purity, level := analyse(make([]int16, 16000), 16000); f != 0 || purity != 0 || level != silentDBFS {
		t.Errorf("silence: %.0f Hz purity %.2f level %.1f", f, purity, level)
	}
	if _, _, level := analyse(nil, 16000); level != silentDBFS {
		t.Errorf("nothing: level %.1f", level)
	}
}

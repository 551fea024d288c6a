package audio

import (
	"math"
	"testing"
)

func TestToneIsFoundAtItsFrequency(t *testing.T) {
	for _, rate := range []int{8000, 16000, 48000} {
		pcm := make([]int16, rate/5) // 200 ms in frames of 20 ms
		tone := NewTone(1000, rate, 16000)
		for i := 0; i < len(pcm); i += rate / 50 {
			tone.Fill(pcm[i : i+rate/50])
		}
		f, purity := DominantFrequency(pcm, rate, 300, 3400, 10)
		if math.Abs(f-1000) > 10 || purity < 0.9 {
			t.Fatalf("rate %d: dominant %v Hz purity %.2f, want 1000 Hz and > 0.9", rate, f, purity)
		}
		if lvl := RMS(pcm); math.Abs(lvl-20*math.Log10(16000.0/32768/math.Sqrt2)) > 0.2 {
			t.Fatalf("rate %d: level %.2f dBFS", rate, lvl)
		}
		if p := Goertzel(pcm, rate, 2000); p > 0.001 {
			t.Fatalf("rate %d: power %.4f at 2 kHz for a 1 kHz tone", rate, p)
		}
	}
}

func TestSilenceHasNoFrequency(t *testing.T) {
	f, p := DominantFrequency(make([]int16, 800), 8000, 300, 3400, 10)
	if f != 0 || p != 0 {
		t.Fatalf("silence gave %v Hz purity %v", f, p)
	}
	if !math.IsInf(RMS(make([]int16, 10)), -1) {
		t.Fatal("silence should be -inf dBFS")
	}
}

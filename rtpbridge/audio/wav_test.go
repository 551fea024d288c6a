package audio

import (
	"bytes"
	"math"
	"testing"
)

func TestWAVRoundTrip(t *testing.T) {
	pcm := make([]int16, 1600)
	NewTone(600, 8000, 9000).Fill(pcm)
	var buf bytes.Buffer
	if err := WriteWAV(&buf, pcm, 8000); err != nil {
		t.Fatal(err)
	}
	got, rate, err := ParseWAV(buf.Bytes())
	if err != nil || rate != 8000 || len(got) != len(pcm) {
		t.Fatalf("parse: %d samples at %d Hz, %v", len(got), rate, err)
	}
	if f, _ := DominantFrequency(got, rate, 300, 3400, 10); math.Abs(f-600) > 10 {
		t.Fatalf("tone at %v Hz", f)
	}
	// A dump cut short (size fields larger than the file) still reads.
	cut := buf.Bytes()[:1000]
	if got, _, err := ParseWAV(cut); err != nil || len(got) != (1000-44)/2 {
		t.Fatalf("truncated file: %d samples, %v", len(got), err)
	}
	for _, bad := range [][]byte{nil, []byte("RIFF0000WAVE"), []byte("not a wav file at all")} {
		if _, _, err := ParseWAV(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestWAVStereo(t *testing.T) {
	pcm := make([]int16, 480)
	NewTone(1000, 48000, 9000).Fill(pcm)
	var buf bytes.Buffer
	if err := WriteWAVChannels(&buf, pcm, 48000, 2); err != nil {
		t.Fatal(err)
	}
	got, rate, err := ParseWAV(buf.Bytes())
	if err != nil || rate != 48000 || len(got) != len(pcm) {
		t.Fatalf("stereo: %d frames at %d Hz, %v", len(got), rate, err)
	}
	for i := range pcm {
		if got[i] != pcm[i] {
			t.Fatalf("frame %d: %d, want %d", i, got[i], pcm[i])
		}
	}
}

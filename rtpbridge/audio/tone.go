// Package audio makes and measures test audio: sine tones, Goertzel power at a
// frequency, and level. The simulator, the demo and the tests check audio by
// its content with it; the bridge itself never needs it.
package audio

import "math"

// Tone generates a continuous sine wave, frame after frame, with no phase jump
// between frames.
type Tone struct {
	step, phase float64
	amp         float64
}

// NewTone makes a tone of freq Hz at sampleRate with peak amplitude amp (0-32767).
func NewTone(freq float64, sampleRate int, amp float64) *Tone {
	return &Tone{step: 2 * math.Pi * freq / float64(sampleRate), amp: amp}
}

// Fill writes the next len(pcm) samples of the tone.
func (t *Tone) Fill(pcm []int16) {
	for i := range pcm {
		pcm[i] = int16(t.amp * math.Sin(t.phase))
		t.phase += t.step
		if t.phase > 2*math.Pi {
			t.phase -= 2 * math.Pi
		}
	}
}

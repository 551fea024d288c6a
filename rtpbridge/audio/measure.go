package audio

import "math"

// Goertzel returns the power of pcm at freq, normalised so that a full-scale
// sine at exactly freq gives about 1 (the Goertzel algorithm, one DFT bin).
func Goertzel(pcm []int16, sampleRate int, freq float64) float64 {
	if len(pcm) == 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(sampleRate))
	var s1, s2 float64
	for _, x := range pcm {
		s0 := float64(x)/32768 + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	n := float64(len(pcm))
	return 4 * power / (n * n)
}

// RMS returns the root-mean-square level of pcm in dBFS (a full-scale sine is
// about -3 dBFS); silence gives -inf.
func RMS(pcm []int16) float64 {
	if len(pcm) == 0 {
		return math.Inf(-1)
	}
	var sum float64
	for _, x := range pcm {
		f := float64(x) / 32768
		sum += f * f
	}
	return 10 * math.Log10(sum/float64(len(pcm)))
}

// DominantFrequency scans from lo to hi Hz in step Hz and returns the
// frequency whose Goertzel power is largest, with that power's share of the
// signal's total energy (near 1 for a clean tone).
func DominantFrequency(pcm []int16, sampleRate int, lo, hi, step float64) (freq, purity float64) {
	if len(pcm) == 0 || step <= 0 || hi < lo {
		return 0, 0
	}
	var best float64
	for f := lo; f <= hi; f += step {
		if p := Goertzel(pcm, sampleRate, f); p > best {
			best, freq = p, f
		}
	}
	var energy float64
	for _, x := range pcm {
		v := float64(x) / 32768
		energy += v * v
	}
	if energy == 0 {
		return 0, 0
	}
	// A sine of peak A has mean power A²/2 and Goertzel power ≈ A².
	return freq, best / 2 / (energy / float64(len(pcm)))
}

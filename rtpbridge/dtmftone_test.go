package rtpbridge

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// detectAll runs pcm through a detector in chunks of chunk samples and
// returns the digits found with their durations.
func detectAll(rate int, pcm []int16, chunk int) (digits string, durs []time.Duration) {
	d := newDTMFDetector(rate)
	var b strings.Builder
	for len(pcm) > 0 {
		c := pcm[:min(chunk, len(pcm))]
		pcm = pcm[len(c):]
		for len(c) > 0 {
			n, what, code, dur := d.feed(c)
			c = c[n:]
			switch what {
			case detectBegin:
				b.WriteRune(codeDigit(code))
			case detectEnd:
				durs = append(durs, dur)
			}
		}
	}
	return b.String(), durs
}

// toneSequence makes each digit's tone for on, then off of silence.
func toneSequence(digits string, rate int, on, off time.Duration) []int16 {
	var pcm []int16
	for _, r := range digits {
		code, _ := digitCode(r)
		var g dtmfTone
		g.start(code, rate)
		buf := make([]int16, int(on)*rate/int(time.Second))
		// In pieces, as frames would be.
		for i := 0; i < len(buf); i += 37 {
			g.fill(buf[i:min(i+37, len(buf))])
		}
		pcm = append(pcm, buf...)
		pcm = append(pcm, make([]int16, int(off)*rate/int(time.Second))...)
	}
	return pcm
}

func ulawRoundTrip(pcm []int16) []int16 {
	b := make([]byte, len(pcm))
	g711.EncodeUlaw(pcm, b)
	out := make([]int16, len(pcm))
	g711.DecodeUlaw(b, out)
	return out
}

// The tones are Q.23's pairs at -10 dB each (against a full-scale sine).
func TestDTMFToneFrequenciesAndLevel(t *testing.T) {
	for code := uint8(0); code < 16; code++ {
		pcm := toneSequence(string(codeDigit(code)), 8000, 100*time.Millisecond, 0)
		rc := dtmfKeypad[code]
		row, col := dtmfRows[rc[0]], dtmfCols[rc[1]]
		for _, f := range append(dtmfRows[:], dtmfCols[:]...) {
			p := audio.Goertzel(pcm, 8000, f)
			lvl := 10 * math.Log10(p)
			if f == row || f == col {
				if math.Abs(lvl+10) > 0.5 {
					t.Fatalf("%c: %v Hz at %.1f dB, want -10", codeDigit(code), f, lvl)
				}
			} else if lvl > -30 {
				t.Fatalf("%c: %v Hz at %.1f dB, want nothing", codeDigit(code), f, lvl)
			}
		}
	}
}

// Every digit, at 8 and 16 kHz, survives a μ-law round trip and is found
// once with about its duration, whatever the chunking.
func TestDTMFDetectorFindsEveryDigit(t *testing.T) {
	const all = "0123456789*#ABCD"
	for _, rate := range []int{8000, 16000} {
		pcm := toneSequence(all, rate, 100*time.Millisecond, 60*time.Millisecond)
		if rate == 8000 {
			pcm = ulawRoundTrip(pcm)
		}
		for _, chunk := range []int{rate / 50, rate * 3 / 100, 7} {
			got, durs := detectAll(rate, pcm, chunk)
			if got != all || len(durs) != len(all) {
				t.Fatalf("%d Hz, chunks of %d: %q (%d ends), want %q", rate, chunk, got, len(durs), all)
			}
			for i, d := range durs {
				if d < 75*time.Millisecond || d > 105*time.Millisecond {
					t.Fatalf("%d Hz: digit %d lasted %v, want about 100 ms", rate, i, d)
				}
			}
		}
	}
}

// Q.24-style limits: 40 ms tones with 40 ms pauses are all found; 20 ms
// tones are not; a pair with 10 dB of twist is not; 6 dB is.
func TestDTMFDetectorLimits(t *testing.T) {
	if got, _ := detectAll(8000, ulawRoundTrip(toneSequence("159#", 8000, 40*time.Millisecond, 40*time.Millisecond)), 160); got != "159#" {
		t.Fatalf("40 ms tones: %q", got)
	}
	if got, _ := detectAll(8000, toneSequence("159#", 8000, 20*time.Millisecond, 40*time.Millisecond), 160); got != "" {
		t.Fatalf("20 ms tones: %q", got)
	}
	// The same digit twice with a pause between is two digits.
	if got, _ := detectAll(8000, toneSequence("55", 8000, 80*time.Millisecond, 50*time.Millisecond), 160); got != "55" {
		t.Fatalf("55: %q", got)
	}
	twisted := func(db float64) []int16 {
		row := audio.NewTone(770, 8000, dtmfToneAmp)
		col := audio.NewTone(1336, 8000, dtmfToneAmp*math.Pow(10, -db/20))
		a, b := make([]int16, 800), make([]int16, 800)
		row.Fill(a)
		col.Fill(b)
		for i := range a {
			a[i] += b[i]
		}
		return a
	}
	if got, _ := detectAll(8000, twisted(10), 160); got != "" {
		t.Fatalf("10 dB twist: %q", got)
	}
	if got, _ := detectAll(8000, twisted(6), 160); got != "5" {
		t.Fatalf("6 dB twist: %q", got)
	}
}

// speechLike makes a voiced, speech-like signal: a gliding pitch with 30
// harmonics shaped by three moving formants, in syllables, over a little
// noise, at about -18 dBFS (loud speech). Its harmonics sweep across the
// DTMF frequencies all the time.
func speechLike(rate int, d time.Duration, seed uint64) []int16 {
	rng := rand.New(rand.NewPCG(seed, 1))
	n := int(d) * rate / int(time.Second)
	sig := make([]float64, n)
	var phase [30]float64
	for i := range sig {
		t := float64(i) / float64(rate)
		f0 := 150 + 60*math.Sin(2*math.Pi*2.7*t) + 15*math.Sin(2*math.Pi*7.1*t)
		f1 := 600 + 250*math.Sin(2*math.Pi*1.3*t)
		f2 := 1500 + 600*math.Sin(2*math.Pi*0.9*t+1)
		f3 := 2600 + 200*math.Sin(2*math.Pi*0.5*t)
		env := math.Max(0, math.Sin(2*math.Pi*4*t)) // syllables
		var v float64
		for k := range phase {
			f := f0 * float64(k+1)
			if f > float64(rate)/2-200 {
				break
			}
			phase[k] += 2 * math.Pi * f / float64(rate)
			g := formant(f, f1, 90) + 0.6*formant(f, f2, 120) + 0.3*formant(f, f3, 160)
			v += g * math.Sin(phase[k]) / float64(k+1)
		}
		sig[i] = env*v + 0.01*rng.NormFloat64()
	}
	var power float64
	for _, v := range sig {
		power += v * v
	}
	gain := 32768 * math.Pow(10, -18.0/20) / math.Sqrt(power/float64(n))
	pcm := make([]int16, n)
	for i, v := range sig {
		pcm[i] = int16(max(-32768, min(32767, gain*v)))
	}
	return pcm
}

func formant(f, center, bw float64) float64 {
	x := (f - center) / bw
	return 1 / (1 + x*x)
}

// No digit in speech-like audio, a 1 kHz tone, one DTMF tone alone,
// music-like chords, noise or silence.
func TestDTMFDetectorNoFalsePositives(t *testing.T) {
	mk := func(f func(pcm []int16)) []int16 {
		pcm := make([]int16, 8000*5)
		f(pcm)
		return pcm
	}
	rng := rand.New(rand.NewPCG(3, 4))
	cases := map[string][]int16{
		"speech":  speechLike(8000, 30*time.Second, 1),
		"speech2": speechLike(8000, 30*time.Second, 2),
		"1 kHz":   mk(func(p []int16) { audio.NewTone(1000, 8000, 16000).Fill(p) }),
		"770 Hz alone": mk(func(p []int16) {
			audio.NewTone(770, 8000, 10000).Fill(p)
		}),
		"chord": mk(func(p []int16) {
			a, b, c := audio.NewTone(440, 8000, 6000), audio.NewTone(554, 8000, 6000), audio.NewTone(659, 8000, 6000)
			x, y := make([]int16, len(p)), make([]int16, len(p))
			a.Fill(p)
			b.Fill(x)
			c.Fill(y)
			for i := range p {
				p[i] += x[i] + y[i]
			}
		}),
		"noise": mk(func(p []int16) {
			for i := range p {
				p[i] = int16(3000 * rng.NormFloat64())
			}
		}),
		"silence": make([]int16, 8000*5),
	}
	for name, pcm := range cases {
		if got, _ := detectAll(8000, ulawRoundTrip(pcm), 160); got != "" {
			t.Errorf("%s: found %q", name, got)
		}
	}
	// Speech at 16 kHz too.
	if got, _ := detectAll(16000, speechLike(16000, 20*time.Second, 5), 320); got != "" {
		t.Errorf("speech at 16 kHz: found %q", got)
	}
	// And digits spoken over speech are still found when they dominate it.
	speech := speechLike(8000, 2*time.Second, 9)
	tones := toneSequence("47", 8000, 100*time.Millisecond, 900*time.Millisecond)
	for i := range tones {
		tones[i] += speech[i] / 8
	}
	if got, _ := detectAll(8000, ulawRoundTrip(tones), 160); got != "47" {
		t.Errorf("digits over quiet speech: %q", got)
	}
}

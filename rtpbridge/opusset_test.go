package rtpbridge

import (
	"flag"
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/g711"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// The Opus encoder's settings toward WhatsApp, measured: cost per 20 ms
// frame, bitrate and a quality proxy for each choice of complexity, FEC,
// DTX, bandwidth and bitrate, on a deterministic speech-like signal with
// pauses (docs/media.md, "Opus settings toward WhatsApp").
//
// The signal is written as a function of continuous time, so it is sampled
// exactly at the encoder's rate: 8 kHz (band-limited to G.711's 3.8 kHz,
// then through μ-law as a G.711 PBX sends it) or 16 kHz (to 7.6 kHz, as
// G.722 gives it). The reference the decoded stream is compared with is the
// encoder's input itself, at 16 kHz (the 8 kHz input interpolated by a
// 128-tap windowed sinc). Voiced speech is 50 or so harmonics of a wandering pitch shaped by
// three moving formants, in talk spurts of 0.8-2.2 s split into syllables
// at about 4 Hz, separated by 0.4-1.4 s pauses; some syllables start with a
// fricative (a dense sum of sines from 1.8 kHz up). White noise at -55 dBFS
// (a PBX line's floor) runs throughout.
//
// Quality proxies, on the stream decoded at 16 kHz, time-aligned with the
// reference by cross-correlation, over the 20 ms frames of speech:
//   - segSNR: the mean per-frame signal-to-noise ratio (clamped to -10..35
//     dB), a waveform measure: it punishes what a listener does not hear
//     (phase changes, the decoder's IIR upsampler), and so is low for any
//     parametric codec; only its differences between settings mean anything;
//   - LSD: the log-spectral distance over third-octave bands from 100 Hz to
//     the band edge (dB, lower is better), which ignores phase but not the
//     spectral envelope or noise in the gaps between harmonics.
//
// Neither is PESQ or POLQA: both weigh every band and every frame alike, have
// no model of masking, and were not fitted to listening tests. They rank
// settings of one codec on one signal, which is what is asked of them here.
// The same figures are taken with 10 % of the packets lost (independent
// draws: mostly single losses, some pairs), the decoder rebuilding a lost
// frame from the next packet's FEC when it came, concealing otherwise.

const (
	settingsSeconds = 10
	settingsFrames  = settingsSeconds * 50
	refRate         = 16000 // the decoded stream's and the reference's rate
	lossDrawPercent = 10
)

type sine struct{ f, phase float64 }

// speechModel is the speech-like signal, independent of the sample rate.
type speechModel struct {
	spurts [][2]float64 // talk spurts, seconds
	bursts [][2]float64 // fricatives, seconds
	fric   []sine
}

var theSpeechModel = sync.OnceValue(func() *speechModel {
	rng := rand.New(rand.NewPCG(7, 11))
	m := &speechModel{}
	for t := 0.3; t < settingsSeconds-0.5; {
		end := math.Min(t+0.8+1.4*rng.Float64(), settingsSeconds-0.2)
		m.spurts = append(m.spurts, [2]float64{t, end})
		for u := t; u < end-0.1; u += 1 / 4.1 {
			if rng.Float64() < 0.35 {
				m.bursts = append(m.bursts, [2]float64{u, u + 0.04 + 0.05*rng.Float64()})
			}
		}
		t = end + 0.4 + 1.0*rng.Float64()
	}
	for range 96 {
		m.fric = append(m.fric, sine{1800 + 5800*rng.Float64(), 2 * math.Pi * rng.Float64()})
	}
	return m
})

// taper weighs a component at f for a band edge at limit: 1 well inside,
// falling smoothly to 0 over the last 400 Hz, so no component switches on
// or off abruptly as the pitch moves.
func taper(f, limit float64) float64 {
	switch {
	case f >= limit:
		return 0
	case f <= limit-400:
		return 1
	}
	c := math.Cos(math.Pi / 2 * (f - (limit - 400)) / 400)
	return c * c
}

// envelope is 1 inside the spans and 0 outside, with 15 ms raised-cosine
// ramps, sampled at rate.
func envelope(spans [][2]float64, rate, n int) []float64 {
	const ramp = 0.015
	env := make([]float64, n)
	for _, s := range spans {
		for i := max(0, int((s[0]-ramp)*float64(rate))); i < n && float64(i)/float64(rate) < s[1]+ramp; i++ {
			t := float64(i) / float64(rate)
			v := 1.0
			switch {
			case t < s[0]:
				v = 0.5 + 0.5*math.Cos(math.Pi*(s[0]-t)/ramp)
			case t > s[1]:
				v = 0.5 + 0.5*math.Cos(math.Pi*(t-s[1])/ramp)
			}
			env[i] = max(env[i], v)
		}
	}
	return env
}

// render samples the model's speech at rate with every component under limit
// Hz, in int16 units (unrounded), and returns the talk-spurt envelope
// alongside.
func (m *speechModel) render(rate int, limit float64) (sig, talk []float64) {
	n := settingsSeconds * rate
	talk = envelope(m.spurts, rate, n)
	burst := envelope(m.bursts, rate, n)
	const (
		voicedRMS = 32768 * 0.1  // -20 dBFS at a syllable's peak
		fricRMS   = 32768 * 0.04 // -28 dBFS
	)
	sig = make([]float64, n)
	for i := range sig {
		t := float64(i) / float64(rate)
		// Pitch 150 Hz ± 75, its phase integrated in closed form.
		f0 := 150 + 60*math.Sin(2*math.Pi*2.7*t) + 15*math.Sin(2*math.Pi*7.1*t)
		ph0 := 2 * math.Pi * (150*t - 60/(2*math.Pi*2.7)*math.Cos(2*math.Pi*2.7*t) - 15/(2*math.Pi*7.1)*math.Cos(2*math.Pi*7.1*t))
		f1 := 600 + 250*math.Sin(2*math.Pi*1.3*t)
		f2 := 1500 + 600*math.Sin(2*math.Pi*0.9*t+1)
		f3 := 2600 + 200*math.Sin(2*math.Pi*0.5*t)
		var v float64
		if talk[i] > 0 {
			var voiced, power float64
			for k := 1; float64(k)*f0 < limit; k++ {
				f := f0 * float64(k)
				a := (formant(f, f1, 90) + 0.6*formant(f, f2, 120) + 0.3*formant(f, f3, 160)) / float64(k) * taper(f, limit)
				voiced += a * math.Sin(float64(k)*ph0)
				power += a * a / 2
			}
			syl := 0.15 + 0.85*math.Pow(math.Max(0, math.Sin(2*math.Pi*4.1*t)), 0.6)
			v = talk[i] * syl * voicedRMS * voiced / math.Sqrt(power)
			if burst[i] > 0 {
				var fr, fp float64
				for _, s := range m.fric {
					if w := taper(s.f, limit); w > 0 {
						fr += w * math.Sin(2*math.Pi*s.f*t+s.phase)
						fp += w * w / 2
					}
				}
				v += talk[i] * burst[i] * fricRMS * fr / math.Sqrt(fp)
			}
		}
		sig[i] = v
	}
	return sig, talk
}

// settingsSignal is what one input rate feeds the encoder and is compared
// with.
type settingsSignal struct {
	rate   int
	input  []int16   // at rate, with the line noise: μ-law-coded at 8 kHz as from G.711, plain at 16 kHz
	ref    []float64 // input at refRate
	talk   []bool    // per 20 ms frame: inside a talk spurt
	active []bool    // per 20 ms frame of ref: speech, measured (above -45 dBFS)
}

const noiseRMS = 32768 * 0.001778279 // -55 dBFS

var settingsSignals = sync.OnceValue(func() map[int]*settingsSignal {
	m := theSpeechModel()
	out := map[int]*settingsSignal{}
	for _, rate := range []int{8000, 16000} {
		limit := 3800.0 // G.711's band
		if rate == 16000 {
			limit = 7600
		}
		s := &settingsSignal{rate: rate}
		in, talk := m.render(rate, limit)
		s.input = make([]int16, len(in))
		noise := rand.New(rand.NewPCG(13, 17))
		for i, v := range in {
			s.input[i] = int16(math.Round(max(-32768, min(32767, v+noiseRMS*noise.NormFloat64()))))
		}
		if rate == 8000 {
			ulaw := make([]byte, len(s.input))
			g711.EncodeUlaw(s.input, ulaw)
			g711.DecodeUlaw(ulaw, s.input)
		}
		if rate == refRate {
			s.ref = make([]float64, len(s.input))
			for i, v := range s.input {
				s.ref[i] = float64(v)
			}
		} else {
			s.ref = upsample2(s.input)
		}
		fs := rate / 50
		for f := range settingsFrames {
			var sum float64
			for _, v := range talk[f*fs : (f+1)*fs] {
				sum += v
			}
			s.talk = append(s.talk, sum > float64(fs)/2)
			var e float64
			for _, v := range s.ref[f*refFrame : (f+1)*refFrame] {
				e += v * v
			}
			s.active = append(s.active, 10*math.Log10(e/refFrame/(32768*32768)+1e-12) > -45)
		}
		out[rate] = s
	}
	return out
})

const refFrame = refRate / 50

// upsample2 doubles x's rate: a windowed-sinc (Blackman, 128 taps)
// interpolator, flat to about 3.8 kHz for an 8 kHz input.
func upsample2(x []int16) []float64 {
	const half = 64
	var h [2 * half]float64
	var sum float64
	for k := range h {
		d := float64(k-half) + 0.5 // the odd output's offset from input sample k
		w := 0.42 + 0.5*math.Cos(math.Pi*d/half) + 0.08*math.Cos(2*math.Pi*d/half)
		h[k] = math.Sin(math.Pi*d) / (math.Pi * d) * w
		sum += h[k]
	}
	y := make([]float64, 2*len(x))
	for n := range x {
		y[2*n] = float64(x[n])
		var v float64
		for k := range h {
			if j := n + k - half + 1; j >= 0 && j < len(x) {
				v += h[k] / sum * float64(x[j])
			}
		}
		y[2*n+1] = v
	}
	return y
}

// settingsCase is one benchmarked choice.
type settingsCase struct {
	name string
	rate int
	set  opusSettings
}

func settingsCases() []settingsCase {
	var cs []settingsCase
	onOff := map[bool]string{true: "on", false: "off"}
	add := func(rate int, set opusSettings, suffix string) {
		cs = append(cs, settingsCase{fmt.Sprintf("%dk/%dkbps/c%d/fec-%s/dtx-%s%s",
			rate/1000, set.bitrate/1000, set.complexity, onOff[set.fec], onOff[set.dtx], suffix), rate, set})
	}
	grid := map[int][]int{8000: {16000, 24000}, 16000: {24000, 28000}}
	sweep := map[int][]int{8000: {12000, 20000, 28000}, 16000: {16000, 20000, 32000}}
	for _, rate := range []int{8000, 16000} {
		// Complexity × FEC × DTX, at two bitrates.
		for _, br := range grid[rate] {
			for _, c := range []int{0, 1, 2, 3, 5, 8, 10} {
				for _, fec := range []bool{true, false} {
					for _, dtx := range []bool{false, true} {
						s := defaultOpusSettings(rate, c)
						s.bitrate, s.fec, s.dtx = br, fec, dtx
						add(rate, s, "")
					}
				}
			}
		}
		// More bitrates, FEC on and off.
		for _, br := range sweep[rate] {
			for _, fec := range []bool{true, false} {
				s := defaultOpusSettings(rate, OpusComplexityAuto)
				s.bitrate, s.fec = br, fec
				add(rate, s, "")
			}
		}
		// The bridge's settings before these measurements.
		add(rate, referenceOpusSettings(rate), "/loss10-previous")
		// The loss figure FEC is sized for.
		for _, loss := range []int{1, 5, 10, 20} {
			s := defaultOpusSettings(rate, OpusComplexityAuto)
			if s.lossPerc != loss {
				s.lossPerc = loss
				add(rate, s, fmt.Sprintf("/loss%d", loss))
			}
		}
		// The bandwidth cap, with the bridge's settings.
		for _, bw := range []opus.Bandwidth{opus.BandwidthNarrow, opus.BandwidthMedium, opus.BandwidthWide} {
			s := defaultOpusSettings(rate, OpusComplexityAuto)
			s.maxBandwidth = bw
			add(rate, s, "/max-"+bw.String())
		}
	}
	return cs
}

// settingsResult is what a case's one pass over the signal gave.
type settingsResult struct {
	kbps                     float64 // over the whole signal, pauses included
	pauseBytes               float64 // mean payload of a frame in a pause
	dtxFrames                int     // frames of 1 or 2 bytes (DTX: no audio coded)
	fecFrames                int     // frames carrying FEC (LBRR) data for the one before
	segSNR, lsd              float64 // no loss
	segSNRLoss, lsdLoss      float64 // 10 % loss, FEC or concealment
	pauseLevel, refPauseLvl  float64 // decoded and reference RMS in pause frames, dBFS
	lag                      int     // codec delay found, samples at refRate
	bandwidths               map[opus.Bandwidth]int
	packets                  [][]byte
	encodeErrors, decodeErrs int
}

var (
	settingsMu      sync.Mutex
	settingsResults = map[string]*settingsResult{}
)

// measureSettings encodes the whole signal with c's settings, decodes it at
// 16 kHz with and without loss, and measures (once per case).
func measureSettings(tb testing.TB, c settingsCase) *settingsResult {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	if r, ok := settingsResults[c.name]; ok {
		return r
	}
	sig := settingsSignals()[c.rate]
	enc, err := c.set.open(c.rate)
	if err != nil {
		tb.Fatal(err)
	}
	defer enc.Close()
	r := &settingsResult{bandwidths: map[opus.Bandwidth]int{}}
	fs := c.rate / 50
	buf := make([]byte, maxPacket)
	var bytes, pauseBytes, pauses int
	for f := range settingsFrames {
		n, err := enc.Encode(sig.input[f*fs:(f+1)*fs], buf)
		if err != nil || n < 1 {
			tb.Fatalf("frame %d: %d bytes, %v", f, n, err)
		}
		p := append([]byte(nil), buf[:n]...)
		r.packets = append(r.packets, p)
		bytes += n
		if n <= 2 {
			r.dtxFrames++
		}
		if !sig.talk[f] {
			pauseBytes += n
			pauses++
		}
		bw, _ := opus.PacketBandwidth(p)
		r.bandwidths[bw]++
	}
	r.kbps = float64(bytes) * 8 / settingsSeconds / 1000
	r.pauseBytes = float64(pauseBytes) / float64(pauses)

	clean := decodeSettings(tb, r.packets, nil)
	rng := rand.New(rand.NewPCG(3, 5))
	lost := make([]bool, len(r.packets))
	for i := range lost {
		lost[i] = i > 25 && rng.IntN(100) < lossDrawPercent
	}
	lossy := decodeSettings(tb, r.packets, lost)
	r.lag = alignLag(sig.ref, clean)
	r.segSNR, r.lsd = compareFrames(sig, clean, r.lag, c.rate)
	r.segSNRLoss, r.lsdLoss = compareFrames(sig, lossy, r.lag, c.rate)
	r.pauseLevel, r.refPauseLvl = pauseLevels(sig, clean, r.lag)
	r.fecFrames = countFEC(tb, r.packets)
	settingsResults[c.name] = r
	return r
}

// decodeSettings decodes packets at refRate; a lost packet is rebuilt from
// the next one's FEC when that one came, concealed otherwise.
func decodeSettings(tb testing.TB, pkts [][]byte, lost []bool) []int16 {
	dec, err := opus.NewDecoder(refRate)
	if err != nil {
		tb.Fatal(err)
	}
	defer dec.Close()
	out := make([]int16, len(pkts)*refFrame)
	for i, p := range pkts {
		fr := out[i*refFrame : (i+1)*refFrame]
		var n int
		switch {
		case lost == nil || !lost[i]:
			n, err = dec.Decode(p, fr)
		case i+1 < len(pkts) && !lost[i+1]:
			n, err = dec.DecodeFEC(pkts[i+1], fr)
		default:
			n, err = dec.Conceal(fr)
		}
		if err != nil || n != refFrame {
			tb.Fatalf("decode %d: %d samples, %v", i, n, err)
		}
	}
	return out
}

// alignLag finds the codec's delay: the lag (up to 50 ms) that best
// correlates the decoded stream with the reference.
func alignLag(ref []float64, dec []int16) int {
	best, bestLag := math.Inf(-1), 0
	n := 4 * refRate
	for lag := 0; lag < refRate/20; lag++ {
		var xy, yy float64
		for i := refRate / 2; i < n; i++ {
			y := float64(dec[i+lag])
			xy += ref[i] * y
			yy += y * y
		}
		if c := xy / math.Sqrt(yy+1); c > best {
			best, bestLag = c, lag
		}
	}
	return bestLag
}

// compareFrames returns the mean segmental SNR and log-spectral distance
// over the reference's frames of speech.
func compareFrames(sig *settingsSignal, dec []int16, lag, inRate int) (segSNR, lsd float64) {
	limit := float64(inRate/2) - 200
	edges := thirdOctaves(100, limit)
	var x, y [fftSize]complex128
	var frames int
	for f := 1; f < settingsFrames-2; f++ {
		if !sig.active[f] {
			continue
		}
		ref := sig.ref[f*refFrame : (f+1)*refFrame]
		got := dec[f*refFrame+lag : (f+1)*refFrame+lag]
		var s, e float64
		for i, v := range ref {
			d := v - float64(got[i])
			s += v * v
			e += d * d
		}
		segSNR += max(-10, min(35, 10*math.Log10(s/(e+1e-9))))
		for i := range fftSize {
			x[i], y[i] = 0, 0
			if i < refFrame {
				w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/refFrame)
				x[i], y[i] = complex(w*ref[i], 0), complex(w*float64(got[i]), 0)
			}
		}
		fft(x[:])
		fft(y[:])
		bx, by := bandPowers(x[:], edges), bandPowers(y[:], edges)
		floor := math.Inf(-1)
		for _, v := range bx {
			floor = max(floor, v)
		}
		floor -= 60 // bands 60 dB under the frame's loudest count as that
		var d2 float64
		for b := range bx {
			d := max(bx[b], floor) - max(by[b], floor)
			d2 += d * d
		}
		lsd += math.Sqrt(d2 / float64(len(bx)))
		frames++
	}
	return segSNR / float64(frames), lsd / float64(frames)
}

// pauseLevels returns the RMS (dBFS) of the decoded stream and of the
// encoder's input over the frames well inside pauses (the line noise): what
// the WhatsApp user hears between words, against what the PBX sent.
func pauseLevels(sig *settingsSignal, dec []int16, lag int) (got, want float64) {
	var g, w float64
	var ng, nw int
	fs := sig.rate / 50
	for f := 10; f < settingsFrames-2; f++ {
		if sig.talk[f-10] || sig.talk[f] || sig.talk[f+1] { // 200 ms into the pause
			continue
		}
		for _, v := range dec[f*refFrame+lag : (f+1)*refFrame+lag] {
			g += float64(v) * float64(v)
		}
		for _, v := range sig.input[f*fs : (f+1)*fs] {
			w += float64(v) * float64(v)
		}
		ng, nw = ng+refFrame, nw+fs
	}
	db := func(p float64, n int) float64 { return 10 * math.Log10(p/float64(n)/(32768*32768)+1e-12) }
	return db(g, ng), db(w, nw)
}

// countFEC counts the packets that carry FEC data: decoded as FEC by a
// fresh decoder, which has nothing to conceal from, they give sound.
func countFEC(tb testing.TB, pkts [][]byte) int {
	n := 0
	pcm := make([]int16, refFrame)
	for _, p := range pkts {
		dec, err := opus.NewDecoder(refRate)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := dec.DecodeFEC(p, pcm); err != nil {
			tb.Fatal(err)
		}
		dec.Close()
		for _, v := range pcm {
			if v != 0 {
				n++
				break
			}
		}
	}
	return n
}

const fftSize = 512

// fft transforms x in place (radix 2, len(x) a power of two).
func fft(x []complex128) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j |= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		w := cmplx.Exp(complex(0, -2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			wk := complex(1, 0)
			for k := range size / 2 {
				a, b := x[start+k], x[start+k+size/2]*wk
				x[start+k], x[start+k+size/2] = a+b, a-b
				wk *= w
			}
		}
	}
}

// thirdOctaves returns band edges a third of an octave apart from lo to hi.
func thirdOctaves(lo, hi float64) []float64 {
	edges := []float64{lo}
	for f := lo * math.Pow(2, 1.0/3); f < hi; f *= math.Pow(2, 1.0/3) {
		edges = append(edges, f)
	}
	return append(edges, hi)
}

// bandPowers returns the power (dB) in each band of spectrum x at refRate.
func bandPowers(x []complex128, edges []float64) []float64 {
	out := make([]float64, len(edges)-1)
	hz := float64(refRate) / float64(len(x))
	for b := range out {
		var p float64
		for k := int(math.Ceil(edges[b] / hz)); float64(k)*hz < edges[b+1]; k++ {
			p += real(x[k])*real(x[k]) + imag(x[k])*imag(x[k])
		}
		out[b] = 10 * math.Log10(p+1e-3)
	}
	return out
}

// referenceOpusSettings are the bridge's settings before these
// measurements (complexity 5, 16 kbit/s narrowband, 24 wideband, FEC on with
// a loss figure of 10), which the libopus floor in docs/performance.md was
// measured with: every case's cost is also given against them.
func referenceOpusSettings(rate int) opusSettings {
	s := opusSettings{complexity: 5, bitrate: 16000, fec: true, lossPerc: 10}
	if rate > 8000 {
		s.bitrate = 24000
	}
	return s
}

// BenchmarkOpusEncodeSettings: one op = one 20 ms frame of the speech-like
// signal (pauses included, played in a loop) encoded with the case's
// settings, then the same frame with referenceOpusSettings by an encoder
// of its own, each timed on the CPU clock of the benchmark's thread (which
// other processes on a shared machine disturb far less than the wall
// clock). ns/op counts both encodes and means nothing; the metrics are
//
//	us/frame      the case's CPU time per frame
//	ref-us/frame  the reference's, measured alongside
//	x-ref         their ratio: frame by frame the two run under the same
//	              conditions, so this holds when the machine's speed moves
//
// then the bitrate and the quality proxies of one pass over the signal (the
// file's top comment says what they are).
//
//	go test -run '^$' -bench OpusEncodeSettings -benchtime 500x -count 10 ./rtpbridge/
func BenchmarkOpusEncodeSettings(b *testing.B) {
	for _, c := range settingsCases() {
		b.Run(c.name, func(b *testing.B) {
			r := measureSettings(b, c)
			sig := settingsSignals()[c.rate]
			enc, err := c.set.open(c.rate)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			ref, err := referenceOpusSettings(c.rate).open(c.rate)
			if err != nil {
				b.Fatal(err)
			}
			defer ref.Close()
			fs := c.rate / 50
			out := make([]byte, maxPacket)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var caseCPU, refCPU time.Duration
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f := i % settingsFrames
				pcm := sig.input[f*fs : (f+1)*fs]
				first, second, firstCPU, secondCPU := enc, ref, &caseCPU, &refCPU
				if i%2 == 1 { // each goes first every other frame
					first, second, firstCPU, secondCPU = ref, enc, &refCPU, &caseCPU
				}
				t0 := threadCPU()
				if _, err := first.Encode(pcm, out); err != nil {
					b.Fatal(err)
				}
				t1 := threadCPU()
				if _, err := second.Encode(pcm, out); err != nil {
					b.Fatal(err)
				}
				*firstCPU += t1 - t0
				*secondCPU += threadCPU() - t1
				i++
			}
			if refCPU > 0 {
				b.ReportMetric(float64(caseCPU.Nanoseconds())/1e3/float64(b.N), "us/frame")
				b.ReportMetric(float64(refCPU.Nanoseconds())/1e3/float64(b.N), "ref-us/frame")
				b.ReportMetric(float64(caseCPU)/float64(refCPU), "x-ref")
			}
			b.ReportMetric(r.kbps, "kbit/s")
			b.ReportMetric(r.pauseBytes, "B/pause-frame")
			b.ReportMetric(r.segSNR, "segSNR-dB")
			b.ReportMetric(r.lsd, "LSD-dB")
			b.ReportMetric(r.segSNRLoss, "segSNR-loss10-dB")
			b.ReportMetric(r.lsdLoss, "LSD-loss10-dB")
			b.ReportMetric(r.pauseLevel-r.refPauseLvl, "pause-level-dB")
			b.ReportMetric(float64(r.fecFrames)*100/settingsFrames, "fec-frames-%")
			b.ReportMetric(float64(r.dtxFrames)*100/settingsFrames, "dtx-frames-%")
		})
	}
}

var opusSettingsAll = flag.Bool("opus-settings-all", false, "TestOpusSettingsMeasured: measure and log every case of BenchmarkOpusEncodeSettings")

// checked says whether TestOpusSettingsMeasured measures c without
// -opus-settings-all: the bridge's settings, with and without FEC and
// DTX, and complexity 0 and 10 beside them.
func (c settingsCase) checked() bool {
	def := defaultOpusSettings(c.rate, OpusComplexityAuto)
	return c.set.bitrate == def.bitrate && c.set.lossPerc == def.lossPerc && c.set.maxBandwidth == 0 &&
		(c.set.complexity == def.complexity || !c.set.dtx && (c.set.complexity == 0 || c.set.complexity == 10))
}

// Every case's stream decodes, its frames say the bandwidth libopus was
// allowed, and the proxies rank what they should: c10 no worse than c0, no
// FEC worse under loss than FEC. Logs every case's figures (-v).
func TestOpusSettingsMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes the signal with several settings")
	}
	res := map[string]*settingsResult{}
	for _, c := range settingsCases() {
		if !*opusSettingsAll && !c.checked() {
			continue
		}
		r := measureSettings(t, c)
		res[c.name] = r
		t.Logf("%-40s %5.1f kbit/s  pause %5.1f B  dtx %3d  fec %3d  segSNR %5.2f  LSD %5.2f  loss: segSNR %5.2f LSD %5.2f  pause %+5.1f dB (%.1f) lag %d  %v",
			c.name, r.kbps, r.pauseBytes, r.dtxFrames, r.fecFrames, r.segSNR, r.lsd, r.segSNRLoss, r.lsdLoss, r.pauseLevel-r.refPauseLvl, r.refPauseLvl, r.lag, r.bandwidths)
		for bw := range r.bandwidths {
			if c.rate == 8000 && bw != opus.BandwidthNarrow || c.set.maxBandwidth != 0 && bw > c.set.maxBandwidth {
				t.Errorf("%s: %v frames", c.name, bw)
			}
		}
		if c.set.dtx == (r.dtxFrames == 0) {
			t.Errorf("%s: %d DTX frames", c.name, r.dtxFrames)
		}
	}
	// With the bridge's settings, FEC is in the packets and pays off under
	// loss, and complexity 10 is no worse than 0.
	for _, rate := range []int{8000, 16000} {
		def := defaultOpusSettings(rate, OpusComplexityAuto)
		name := func(c int, fec bool) string {
			onOff := map[bool]string{true: "on", false: "off"}
			return fmt.Sprintf("%dk/%dkbps/c%d/fec-%s/dtx-off", rate/1000, def.bitrate/1000, c, onOff[fec])
		}
		c0, c10 := res[name(0, false)], res[name(10, false)]
		if c0 == nil || c10 == nil {
			t.Fatalf("%d Hz: the default bitrate is not in the grid", rate)
		}
		if c10.lsd > c0.lsd {
			t.Errorf("%d Hz: LSD %.2f at c10, %.2f at c0", rate, c10.lsd, c0.lsd)
		}
		fec, nofec := res[name(def.complexity, true)], res[name(def.complexity, false)]
		if fec.fecFrames < settingsFrames/2 || fec.lsdLoss >= nofec.lsdLoss {
			t.Errorf("%d Hz: %d FEC frames; under loss LSD %.2f with FEC, %.2f without", rate, fec.fecFrames, fec.lsdLoss, nofec.lsdLoss)
		}
	}
}

// What the encoder gives the pacer in silence, 20 ms after 20 ms (the
// pacer sends whatever it gives, every tick). With the bridge's settings
// (no DTX) digital silence still makes real frames of a few bytes. With
// DTX, after about 200 ms libopus gives 1-byte packets (the TOC alone: a
// frame of no data, RFC 6716 §3.2.1, which a decoder conceals or fills
// with comfort noise) with a refresh frame of a few bytes every 400 ms or
// so: packets still flow, but they carry no audio.
func TestOpusDTXInSilence(t *testing.T) {
	for _, rate := range []int{8000, 16000} {
		for _, dtx := range []bool{false, true} {
			s := defaultOpusSettings(rate, OpusComplexityAuto)
			s.dtx = dtx
			enc, err := s.open(rate)
			if err != nil {
				t.Fatal(err)
			}
			sig := settingsSignals()[rate]
			fs := rate / 50
			buf := make([]byte, maxPacket)
			for f := range 100 { // 2 s of speech first
				if _, err := enc.Encode(sig.input[f*fs:(f+1)*fs], buf); err != nil {
					t.Fatal(err)
				}
			}
			silence := make([]int16, fs)
			var sizes []int
			tiny, run, longest := 0, 0, 0
			for f := range 150 { // then 3 s of digital silence
				n, err := enc.Encode(silence, buf)
				if err != nil || n < 1 {
					t.Fatalf("%d Hz dtx %v: silent frame %d: %d bytes, %v", rate, dtx, f, n, err)
				}
				sizes = append(sizes, n)
				if n <= 2 {
					tiny, run = tiny+1, run+1
					longest = max(longest, run)
				} else {
					run = 0
				}
			}
			enc.Close()
			t.Logf("%d Hz, DTX %v: %d of 150 silent frames of 1-2 bytes, at most %d in a row; the first sizes %v", rate, dtx, tiny, longest, sizes[:45])
			switch {
			case !dtx && tiny > 0:
				t.Errorf("%d Hz without DTX: %d silent frames of 1-2 bytes", rate, tiny)
			case dtx && (tiny < 100 || longest > 25):
				t.Errorf("%d Hz with DTX: %d silent frames of 1-2 bytes, %d in a row", rate, tiny, longest)
			}
		}
	}
}

// OpusComplexityAuto picks the complexity by rate; any other value is used
// as given at both rates.
func TestOpusComplexityAuto(t *testing.T) {
	for rate, want := range map[int]int{8000: DefaultOpusComplexityNB, 16000: DefaultOpusComplexityWB} {
		if got := defaultOpusSettings(rate, OpusComplexityAuto).complexity; got != want {
			t.Errorf("%d Hz: auto gave complexity %d, want %d", rate, got, want)
		}
		if got := defaultOpusSettings(rate, 7).complexity; got != 7 {
			t.Errorf("%d Hz: complexity 7 became %d", rate, got)
		}
		enc, err := newOpusEncoder(rate, OpusComplexityAuto)
		if err != nil {
			t.Fatal(err)
		}
		enc.Close()
	}
}

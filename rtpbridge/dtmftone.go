package rtpbridge

import (
	"math"
	"time"
)

// In-band DTMF: tone pairs made (ITU-T Q.23) and found (Q.24) in PCM, for a
// PBX that takes or sends digits as audio. Both work on frames of any
// length at the SIP codec's PCM rate and allocate nothing.

// dtmfRows and dtmfCols are Q.23's low and high groups (Hz).
var (
	dtmfRows = [4]float64{697, 770, 852, 941}
	dtmfCols = [4]float64{1209, 1336, 1477, 1633}
)

// dtmfKeypad is each event code's (row, column) on the keypad:
//
//	1 2 3 A
//	4 5 6 B
//	7 8 9 C
//	* 0 # D
var dtmfKeypad = [16][2]uint8{
	0: {3, 1}, 1: {0, 0}, 2: {0, 1}, 3: {0, 2}, 4: {1, 0}, 5: {1, 1}, 6: {1, 2}, 7: {2, 0}, 8: {2, 1}, 9: {2, 2},
	10: {3, 0}, 11: {3, 2}, 12: {0, 3}, 13: {1, 3}, 14: {2, 3}, 15: {3, 3},
}

// keypadCode is the event code at (row, column).
func keypadCode(row, col int) uint8 {
	for code, rc := range dtmfKeypad {
		if int(rc[0]) == row && int(rc[1]) == col {
			return uint8(code)
		}
	}
	return 0
}

// dtmfToneAmp is the peak of each of the two sines: -10 dB below a
// full-scale sine, so the pair never clips.
var dtmfToneAmp = 32767 * math.Pow(10, -10.0/20)

// dtmfTone makes one digit's tone pair, continuous across frames.
type dtmfTone struct {
	rowStep, colStep   float64
	rowPhase, colPhase float64
}

// start sets up the tone of code at rate, from phase 0.
func (g *dtmfTone) start(code uint8, rate int) {
	rc := dtmfKeypad[code&15]
	g.rowStep = 2 * math.Pi * dtmfRows[rc[0]] / float64(rate)
	g.colStep = 2 * math.Pi * dtmfCols[rc[1]] / float64(rate)
	g.rowPhase, g.colPhase = 0, 0
}

// fill writes the next len(pcm) samples of the tone.
func (g *dtmfTone) fill(pcm []int16) {
	for i := range pcm {
		pcm[i] = int16(dtmfToneAmp * (math.Sin(g.rowPhase) + math.Sin(g.colPhase)))
		g.rowPhase += g.rowStep
		g.colPhase += g.colStep
	}
	g.rowPhase = math.Mod(g.rowPhase, 2*math.Pi)
	g.colPhase = math.Mod(g.colPhase, 2*math.Pi)
}

// Detector thresholds, in the spirit of Q.24: a tone pair is taken when
// both tones are present and loud enough, the two groups' levels are close
// enough (twist), each tone stands well above the other frequencies of its
// group, and the pair holds nearly all of the signal's energy (speech and
// music spread theirs). It must hold for detectMinBlocks blocks in a row
// (≥ 25.5 ms, so every tone of 40 ms or more is taken) and ends after
// detectGapBlocks blocks without it (a drop-out shorter than that does not
// split a digit).
const (
	detectBlockMs   = 12.75 // 102 samples at 8 kHz: frequency bins of 78 Hz
	detectMinLevel  = -32   // dB below a full-scale sine, per tone
	detectTwist     = 8     // dB, high group weaker than the low group
	detectRevTwist  = 4     // dB, high group stronger
	detectPeakRatio = 8     // dB above the group's other frequencies
	detectPurity    = 0.8   // share of the block's energy in the two tones
	detectMinBlocks = 2
	detectGapBlocks = 2
)

// dtmfDetect is what one block changed.
type dtmfDetect uint8

const (
	detectNone  dtmfDetect = iota
	detectBegin            // a digit has been present long enough: code says which
	detectEnd              // the digit ended: dur says how long it lasted
)

// dtmfDetector finds DTMF digits in PCM with eight Goertzel filters run
// sample by sample over fixed blocks.
type dtmfDetector struct {
	rate    int
	block   int        // samples per block
	coef    [8]float64 // 2·cos(2πf/rate): rows, then columns
	s1, s2  [8]float64
	energy  float64
	n       int
	minPow  float64 // Goertzel power of a sine at the minimum level
	blockMs float64

	cand, candBlocks int  // the digit the last blocks showed (-1: none) and for how many blocks
	active           bool // a digit is being reported
	code             uint8
	hitBlocks        int // blocks from the digit's first to its last block
	missBlocks       int // blocks since the digit was last seen
}

func newDTMFDetector(rate int) *dtmfDetector {
	d := &dtmfDetector{rate: rate, cand: -1}
	d.block = int(math.Round(float64(rate) * detectBlockMs / 1000))
	d.blockMs = float64(d.block) * 1000 / float64(rate)
	for i, f := range append(dtmfRows[:], dtmfCols[:]...) {
		d.coef[i] = 2 * math.Cos(2*math.Pi*f/float64(rate))
	}
	amp := 32768 * math.Pow(10, detectMinLevel/20.0)
	d.minPow = amp * amp * float64(d.block*d.block) / 4
	return d
}

func (d *dtmfDetector) String() string { return "dtmf detect (goertzel)" }

// feed takes samples from pcm until a block changes what is detected, and
// returns how many it took with the change (detectNone once pcm is used
// up). The caller loops until pcm is all taken.
func (d *dtmfDetector) feed(pcm []int16) (used int, what dtmfDetect, code uint8, dur time.Duration) {
	for i, x := range pcm {
		v := float64(x)
		d.energy += v * v
		for k := range d.coef {
			s0 := v + d.coef[k]*d.s1[k] - d.s2[k]
			d.s2[k], d.s1[k] = d.s1[k], s0
		}
		d.n++
		if d.n < d.block {
			continue
		}
		what, code, dur = d.endBlock()
		if what != detectNone {
			return i + 1, what, code, dur
		}
	}
	return len(pcm), detectNone, 0, 0
}

// endBlock judges the block just completed and moves the debouncing on.
func (d *dtmfDetector) endBlock() (dtmfDetect, uint8, time.Duration) {
	var pow [8]float64
	for k := range pow {
		pow[k] = d.s1[k]*d.s1[k] + d.s2[k]*d.s2[k] - d.coef[k]*d.s1[k]*d.s2[k]
	}
	seen := d.judge(&pow, d.energy)
	d.s1, d.s2, d.energy, d.n = [8]float64{}, [8]float64{}, 0, 0

	if seen == d.cand {
		d.candBlocks++
	} else {
		d.cand, d.candBlocks = seen, 1
	}
	if d.active {
		if seen == int(d.code) {
			d.hitBlocks += d.missBlocks + 1
			d.missBlocks = 0
			return detectNone, 0, 0
		}
		d.missBlocks++
		if d.missBlocks >= detectGapBlocks || seen >= 0 {
			d.active = false
			return detectEnd, d.code, d.blocksDur(d.hitBlocks)
		}
		return detectNone, 0, 0
	}
	if d.cand >= 0 && d.candBlocks >= detectMinBlocks {
		d.active, d.code, d.hitBlocks, d.missBlocks = true, uint8(d.cand), d.candBlocks, 0
		d.candBlocks = -1 << 30 // the same tone must stop before it counts again
		return detectBegin, d.code, d.blocksDur(d.hitBlocks)
	}
	return detectNone, 0, 0
}

func (d *dtmfDetector) blocksDur(n int) time.Duration {
	return time.Duration(float64(n) * d.blockMs * float64(time.Millisecond))
}

// judge returns the code of the digit a block holds, or -1.
func (d *dtmfDetector) judge(pow *[8]float64, energy float64) int {
	row, col := 0, 4
	for k := 1; k < 4; k++ {
		if pow[k] > pow[row] {
			row = k
		}
		if pow[4+k] > pow[col] {
			col = 4 + k
		}
	}
	pr, pc := pow[row], pow[col]
	if pr < d.minPow || pc < d.minPow {
		return -1
	}
	// Twist: the column tone may be up to detectTwist dB weaker than the
	// row tone, or up to detectRevTwist dB stronger.
	if pc < pr*twistLow || pc > pr*twistHigh {
		return -1
	}
	for k := 0; k < 4; k++ {
		if k != row && pow[k] > pr*peakRatio {
			return -1
		}
		if 4+k != col && pow[4+k] > pc*peakRatio {
			return -1
		}
	}
	// A sine of peak A over N samples has Goertzel power (A·N/2)² and
	// energy A²·N/2: the share of the energy at f is 2·power/(N·energy).
	if energy <= 0 || 2*(pr+pc)/(float64(d.block)*energy) < detectPurity {
		return -1
	}
	return int(keypadCode(row, col-4))
}

// The thresholds as power ratios.
var (
	twistLow  = dbRatio(-detectTwist)
	twistHigh = dbRatio(detectRevTwist)
	peakRatio = dbRatio(-detectPeakRatio)
)

func dbRatio(db float64) float64 { return math.Pow(10, db/10) }

// reset forgets any tone in progress (a new stream).
func (d *dtmfDetector) reset() {
	*d = dtmfDetector{rate: d.rate, block: d.block, coef: d.coef, minPow: d.minPow, blockMs: d.blockMs, cand: -1}
}

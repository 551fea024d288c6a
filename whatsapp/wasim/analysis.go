package wasim

import (
	"math"

	"github.com/wagateway/wagateway/rtpbridge/audio"
)

// The received audio is decoded at 16 kHz (Meta's audio is wideband) and
// kept for at most two minutes.
const (
	analysisRate       = 16000
	maxReceivedSamples = 120 * analysisRate
	analysisSkip       = analysisRate / 5  // the first 200 ms are not analysed
	analysisBlock      = analysisRate / 10 // 100 ms blocks: 10 Hz bins
	maxAnalysisBlocks  = 100
	silentDBFS         = -120.0
)

// analyse finds the dominant frequency (100–4000 Hz in 10 Hz steps, then
// refined to 1 Hz), its purity (share of the signal's power, 1 for a clean
// tone) and the level in dBFS of pcm after its first 200 ms.
//
// The Goertzel power is averaged over 100 ms blocks (at most 100 of them,
// spread over the call) so a tone between two 10 Hz steps still shows, and a
// long call costs no more than ten seconds of audio.
func analyse(pcm []int16, rate int) (freq, purity, level float64) {
	if len(pcm) <= analysisSkip {
		return 0, 0, silentDBFS
	}
	x := pcm[analysisSkip:]
	level = max(audio.RMS(x), silentDBFS)
	var blocks [][]int16
	if n := len(x) / analysisBlock; n == 0 {
		blocks = [][]int16{x}
	} else {
		stride := max(1, n/maxAnalysisBlocks)
		for i := 0; i < n && len(blocks) < maxAnalysisBlocks; i += stride {
			blocks = append(blocks, x[i*analysisBlock:(i+1)*analysisBlock])
		}
	}
	var energy float64
	var count int
	for _, b := range blocks {
		for _, v := range b {
			f := float64(v) / 32768
			energy += f * f
		}
		count += len(b)
	}
	if energy == 0 {
		return 0, 0, level
	}
	meanSquare := energy / float64(count)
	power := func(f float64) float64 {
		var p float64
		for _, b := range blocks {
			p += audio.Goertzel(b, rate, f)
		}
		return p / float64(len(blocks))
	}
	best := -1.0
	for f := 100.0; f <= 4000; f += 10 {
		if p := power(f); p > best {
			best, freq = p, f
		}
	}
	coarse := freq
	for f := max(100, coarse-9); f <= min(4000, coarse+9); f++ {
		if p := power(f); p > best {
			best, freq = p, f
		}
	}
	// A sine of peak A has mean power A²/2 and Goertzel power ≈ A².
	purity = math.Min(1, best/2/meanSquare)
	return freq, purity, level
}

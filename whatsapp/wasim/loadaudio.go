package wasim

import (
	"errors"
	"fmt"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// The audio of a load run is encoded once and shared by every call: a
// second of tone (50 frames of 20 ms) looped, and the same second with a
// latency marker in it: markerGapFrames frames of silence, then the tone
// again. The sender plays the marker second in place of a tone second every
// few seconds per call; the receiver times when the tone's return after the
// gap comes back (see loadRun.detect and the README, "Load and capacity").

const (
	loadFrameMs = 20
	loadFrames  = 1000 / loadFrameMs // frames in the looped second
	loadRate    = 48000              // the Opus RTP clock (RFC 7587)
	// The caller's audio as Meta's: 16 kHz wideband at about 20 kbit/s
	// (Meta, WhatsApp Cloud API Calling, media).
	loadPCMRate     = 16000
	loadBitrate     = 20000
	loadFrameTS     = loadRate * loadFrameMs / 1000
	markerGapFrames = 6 // 120 ms of silence before the onset
	detectRate      = 8000
	detectFrame     = detectRate * loadFrameMs / 1000
	// The onset detector: after at least detectQuietMs of samples under
	// detectQuiet, the first sample over detectLoud is the onset.
	detectQuiet   = 1000 // about -30 dBFS: over codec pre-echo, far under the tone
	detectLoud    = 2500 // under a third of the tone's peak
	detectQuietMs = 40
)

// loadAudio is the pre-encoded audio of a run.
type loadAudio struct {
	tone   [][]byte // 50 frames of tone, looped
	marker [][]byte // 50 frames: markerGapFrames of silence, then the tone
	// onset is the marker frame where the tone comes back.
	onset int
	// onsetDelay is where the detector finds the onset when the marker is
	// decoded here at detectRate, in samples after the start of frame
	// onset: the simulator's own encoder and decoder delay, taken off every
	// measured round trip of transcoded calls.
	onsetDelay int
	// g711 is the same tone and marker second in PCMU and PCMA (8 kHz, no
	// codec delay), for calls whose answer picked G.711 (g711.go).
	g711 map[string]*g711Audio
}

// g711Audio is a run's audio in one G.711 law: 50 frames of 160 bytes.
type g711Audio struct{ tone, marker [][]byte }

// loadG711FrameTS is a 20 ms G.711 frame's timestamp step (8 kHz clock).
const loadG711FrameTS = 8000 * loadFrameMs / 1000

// newG711Audio encodes the tone, and the marker (the same with
// markerGapFrames frames of silence first), at 8 kHz in both laws.
func newG711Audio(toneHz float64) map[string]*g711Audio {
	const spf = loadG711FrameTS
	tone := make([]int16, 8000)
	audio.NewTone(toneHz, 8000, toneAmplitude).Fill(tone)
	marked := append([]int16(nil), tone...)
	clear(marked[:markerGapFrames*spf])
	frames := func(law string, pcm []int16) [][]byte {
		out := make([][]byte, loadFrames)
		for i := range out {
			out[i] = make([]byte, spf)
			encodeG711(law, pcm[i*spf:(i+1)*spf], out[i])
		}
		return out
	}
	m := map[string]*g711Audio{}
	for _, law := range []string{"PCMU", "PCMA"} {
		m[law] = &g711Audio{tone: frames(law, tone), marker: frames(law, marked)}
	}
	return m
}

// newLoadAudio encodes the tone (two passes, keeping the second, so the
// encoder state runs on across the loop point) and then the marker second
// with the same encoder, so tone → marker is seamless too.
func newLoadAudio(toneHz float64) (*loadAudio, error) {
	if toneHz < 300 || toneHz > 2000 {
		return nil, fmt.Errorf("wasim: load tone %g Hz: want 300-2000 Hz (it must cross G.711 and Opus at 8 kHz cleanly)", toneHz)
	}
	spf := loadPCMRate * loadFrameMs / 1000
	tone := make([]int16, loadPCMRate)
	audio.NewTone(toneHz, loadPCMRate, toneAmplitude).Fill(tone)
	marked := append([]int16(nil), tone...)
	clear(marked[:markerGapFrames*spf])

	enc, err := opus.NewEncoder(loadPCMRate, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	if err := errors.Join(enc.SetInbandFEC(true), enc.SetComplexity(5), enc.SetBitrate(loadBitrate)); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	encode := func(pcm []int16) ([][]byte, error) {
		frames := make([][]byte, 0, loadFrames)
		for i := 0; i < loadFrames; i++ {
			n, err := enc.Encode(pcm[i*spf:(i+1)*spf], buf)
			if err != nil {
				return nil, fmt.Errorf("wasim: opus encode: %w", err)
			}
			frames = append(frames, append([]byte(nil), buf[:n]...))
		}
		return frames, nil
	}
	a := &loadAudio{onset: markerGapFrames}
	for pass := 0; pass < 2; pass++ {
		if a.tone, err = encode(tone); err != nil {
			return nil, err
		}
	}
	if a.marker, err = encode(marked); err != nil {
		return nil, err
	}
	if err := a.measureOnsetDelay(); err != nil {
		return nil, err
	}
	a.g711 = newG711Audio(toneHz)
	return a, nil
}

// measureOnsetDelay decodes tone, tone, marker here and finds the onset.
func (a *loadAudio) measureOnsetDelay() error {
	dec, err := opus.NewDecoder(detectRate)
	if err != nil {
		return err
	}
	defer dec.Close()
	pcm := make([]int16, detectFrame*6)
	var det onsetDetector
	for pass, frames := range [][][]byte{a.tone, a.tone, a.marker} {
		for i, f := range frames {
			n, err := dec.Decode(f, pcm)
			if err != nil {
				return fmt.Errorf("wasim: decode the marker: %w", err)
			}
			if pass < 2 {
				det.feed(pcm[:n])
				continue
			}
			if at, ok := det.feed(pcm[:n]); ok {
				if i < a.onset-1 {
					return fmt.Errorf("wasim: the marker's onset shows in frame %d, before its end of silence", i)
				}
				a.onsetDelay = (i-a.onset)*detectFrame + at
				return nil
			}
		}
	}
	return errors.New("wasim: the marker's onset is not found in its own decoding")
}

// onsetDetector finds a tone's return after silence in decoded audio: the
// first sample over detectLoud after at least detectQuietMs of samples
// under detectQuiet (a few samples of the rise in between are allowed).
type onsetDetector struct {
	quiet      int // quiet samples in a row, up to now
	lastRun    int // the length of the last quiet run
	sinceQuiet int // samples since it ended
}

// detectRise is how many samples (5 ms) the rise from quiet to loud may take.
const detectRise = 40

func (d *onsetDetector) reset() { *d = onsetDetector{} }

// feed scans pcm; it returns the index of the onset if there is one.
func (d *onsetDetector) feed(pcm []int16) (int, bool) {
	const need = detectRate * detectQuietMs / 1000
	for i, s := range pcm {
		v := int(s)
		if v < 0 {
			v = -v
		}
		switch {
		case v < detectQuiet:
			d.quiet++
			continue
		case v > detectLoud:
			if d.quiet >= need || (d.quiet == 0 && d.lastRun >= need && d.sinceQuiet < detectRise) {
				*d = onsetDetector{}
				return i, true
			}
		}
		if d.quiet > 0 {
			d.lastRun, d.sinceQuiet, d.quiet = d.quiet, 0, 0
		}
		d.sinceQuiet++
	}
	return 0, false
}

package rtpbridge

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// WhatsApp's stream loses 5 % of its packets at random plus a burst of 3:
// the PBX still gets one G.711 packet per 20 ms with no sequence or
// timestamp gap, and the tone. With FEC in the stream, the last lost frame
// of a gap comes back from the next packet's FEC (when libopus put FEC in
// it: for frames it took for speech); without, everything is concealed.
func TestWhatsAppLoss(t *testing.T) {
	for _, tc := range []struct {
		frameMs int
		fec     bool
	}{{20, true}, {20, false}, {10, true}} {
		t.Run(fmt.Sprintf("%dms/fec=%v", tc.frameMs, tc.fec), func(t *testing.T) {
			b, sip, _ := newDrivenBridge(t, pcmu)
			const amp, totalMs, depth = 9000, 5000, 0.45
			src := newWhatsAppSender(t, 1000, amp, tc.frameMs, tc.fec)
			src.depth = depth
			// Mean power of the modulated tone against the plain one.
			level := toneLevel(amp) + 10*math.Log10((1-depth)*(1-depth)+depth*depth/2)
			n := totalMs / tc.frameMs
			drop := make([]bool, n)
			rng := rand.New(rand.NewPCG(7, 11))
			burst := n / 2
			for i := range drop {
				// Keep the first packets (the stream's start) and the last one
				// (a loss at the very end is invisible), and space the random
				// losses off the burst.
				if i > 10 && i < n-1 && (i < burst-2 || i > burst+4) && rng.Float64() < 0.05 {
					drop[i] = true
				}
			}
			drop[burst], drop[burst+1], drop[burst+2] = true, true, true
			gaps, dropped := 0, 0
			for i, d := range drop {
				if d {
					dropped++
					if !drop[i-1] {
						gaps++
					}
				}
			}
			// A second bridge gets every packet: the reference.
			ref, refSIP, _ := newDrivenBridge(t, pcmu)
			withFEC := 0        // gaps followed by a packet with FEC
			var fecFrames []int // 20 ms frames rebuilt from FEC
			for i := 0; i < n; i++ {
				p := src.next()
				ref.handleWhatsAppPacket(p)
				if !drop[i] {
					if i > 0 && drop[i-1] && opusHasFEC(p[12:]) {
						withFEC++
						if tc.frameMs == 20 {
							fecFrames = append(fecFrames, i-1)
						}
					}
					b.handleWhatsAppPacket(p)
				}
			}

			pkts := unmarshal(t, sip.out)
			if len(pkts) != totalMs/20 {
				t.Fatalf("%d G.711 packets, want %d", len(pkts), totalMs/20)
			}
			checkStream(t, pkts, 0, 0x51b, 160, 160)
			checkTone(t, decodeG711(pkts[5:], false), 8000, 1000, level, 0.6)

			st := b.Stats().WhatsAppToSIP
			t.Logf("dropped %d in %d gaps, %d followed by FEC: %v", dropped, gaps, withFEC, st)
			if st.Lost != uint64(dropped) || st.FECRecovered+st.Concealed != st.Lost || st.Resets != 0 {
				t.Fatalf("lost %d fec %d plc %d resets %d, want lost %d = fec + plc", st.Lost, st.FECRecovered, st.Concealed, st.Resets, dropped)
			}
			if tc.fec {
				// One recovered frame per gap followed by FEC (the burst's
				// first two frames are concealed in any case).
				if st.FECRecovered != uint64(withFEC) || withFEC < gaps/3 {
					t.Fatalf("fec recovered %d, want %d (of %d gaps)", st.FECRecovered, withFEC, gaps)
				}
				// Rebuilt frames are the lost audio, in its place: most come
				// out close to the lossless stream (those after another loss
				// less so: the decoder's state has drifted).
				refPkts := unmarshal(t, refSIP.out)
				var snrs []float64
				for _, i := range fecFrames {
					snrs = append(snrs, snr(decodeG711(pkts[i:i+1], false), decodeG711(refPkts[i:i+1], false)))
				}
				slices.Sort(snrs)
				t.Logf("SNR of FEC-rebuilt frames against the lossless stream: %.1f dB", snrs)
				if len(snrs) > 0 && snrs[len(snrs)/2] < 15 {
					t.Fatalf("median SNR %.1f dB, want ≥ 15", snrs[len(snrs)/2])
				}
			} else if st.FECRecovered != 0 {
				t.Fatalf("fec recovered %d from a stream without FEC", st.FECRecovered)
			}
		})
	}
}

// snr is the ratio in dB of want's power to the power of got-want.
func snr(got, want []int16) float64 {
	var sig, noise float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		sig += float64(want[i]) * float64(want[i])
		noise += d * d
	}
	return 10 * math.Log10(sig/noise)
}

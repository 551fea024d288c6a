package rtpbridge

import (
	"fmt"
	"slices"
	"testing"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// opusHasFEC against libopus itself: two decoders with the same history
// rebuild a lost frame, one from the next packet's FEC, one by plain
// concealment. They differ exactly when the packet carries FEC, unless the
// packet switches mode or bandwidth (then the FEC call conceals at the new
// bandwidth, the plain one at the old): such packets are left out.
func TestOpusHasFECAgainstLibopus(t *testing.T) {
	for _, tc := range []struct {
		rate, frameMs int
		fec           bool
	}{
		{48000, 20, true}, {48000, 10, true}, {48000, 40, true}, {48000, 60, true},
		{48000, 20, false}, {8000, 20, true}, {16000, 20, true}, {8000, 20, false}, {8000, 60, false},
	} {
		t.Run(fmt.Sprintf("%dHz/%dms/fec=%v", tc.rate, tc.frameMs, tc.fec), func(t *testing.T) {
			pkts := encodeSpeechLike(t, tc.rate, tc.frameMs, tc.fec, 40)
			flagged, compared := 0, 0
			for i := 1; i < len(pkts); i++ {
				got := opusHasFEC(pkts[i])
				if got {
					flagged++
				}
				if pkts[i][0]>>3 != pkts[i-1][0]>>3 {
					continue
				}
				compared++
				if want := libopusUsesFEC(t, pkts[:i], pkts[i]); got != want {
					t.Fatalf("packet %d (toc %#x, first byte %#x): opusHasFEC %v, libopus %v", i, pkts[i][0], pkts[i][1], got, want)
				}
			}
			t.Logf("%d of %d packets carry FEC; %d compared with libopus", flagged, len(pkts)-1, compared)
			if tc.fec && flagged < len(pkts)/3 || !tc.fec && flagged > 0 || compared < len(pkts)*2/3 {
				t.Fatalf("%d packets with FEC", flagged)
			}
		})
	}
}

// encodeSpeechLike encodes n frames of an amplitude-modulated tone.
func encodeSpeechLike(t *testing.T, rate, frameMs int, fec bool, n int) [][]byte {
	t.Helper()
	enc, err := opus.NewEncoder(rate, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	must(t, enc.SetBitrate(24000))
	must(t, enc.SetInbandFEC(fec))
	must(t, enc.SetPacketLossPerc(10))
	tone := audio.NewTone(700, rate, 9000)
	pcm := make([]int16, rate*frameMs/1000)
	buf := make([]byte, 1500)
	var out [][]byte
	for i := 0; i < n; i++ {
		tone.Fill(pcm)
		if i%10 >= 7 { // 4-5 Hz syllables
			for j := range pcm {
				pcm[j] /= 4
			}
		}
		m, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, slices.Clone(buf[:m]))
	}
	return out
}

// libopusUsesFEC decodes history on two fresh decoders, then rebuilds the
// frame lost before next with FEC on one and concealment on the other.
func libopusUsesFEC(t *testing.T, history [][]byte, next []byte) bool {
	const rate = 8000
	var out [2][]int16
	lost, err := opus.PacketSamples(history[len(history)-1], rate)
	if err != nil {
		t.Fatal(err)
	}
	for k := range out {
		dec, err := opus.NewDecoder(rate)
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, rate*120/1000)
		for _, p := range history[:len(history)-1] {
			if _, err := dec.Decode(p, pcm); err != nil {
				t.Fatal(err)
			}
		}
		out[k] = make([]int16, lost)
		if k == 0 {
			_, err = dec.DecodeFEC(next, out[k])
		} else {
			_, err = dec.Conceal(out[k])
		}
		dec.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return !slices.Equal(out[0], out[1])
}

// The frame layouts of RFC 6716 §3.2: opusFirstFrame finds the first frame
// of each or refuses the packet.
func TestOpusFirstFrame(t *testing.T) {
	long := make([]byte, 300)
	long[0] = 0x02 // code 2 with a two-byte length: 252 + 4·1 = 256
	long[1], long[2] = 252, 1
	cases := []struct {
		name string
		p    []byte
		want []byte // nil: refused
	}{
		{"code 0", []byte{0x08, 1, 2, 3}, []byte{1, 2, 3}},
		{"code 1", []byte{0x09, 1, 2, 3, 4}, []byte{1, 2}},
		{"code 1 odd", []byte{0x09, 1, 2, 3}, nil},
		{"code 2", []byte{0x0a, 2, 1, 2, 3}, []byte{1, 2}},
		{"code 2 two-byte length", long, long[3:259]},
		{"code 2 too long", []byte{0x0a, 9, 1, 2}, nil},
		{"code 2 no length", []byte{0x0a}, nil},
		{"code 3 cbr", []byte{0x0b, 0x03, 1, 2, 3, 4, 5, 6}, []byte{1, 2}},
		{"code 3 cbr uneven", []byte{0x0b, 0x03, 1, 2, 3, 4}, nil},
		{"code 3 cbr padded", []byte{0x0b, 0x42, 2, 1, 2, 3, 4, 0, 0}, []byte{1, 2}},
		{"code 3 padding 255", append([]byte{0x0b, 0x41, 255, 0, 7}, make([]byte, 254)...), []byte{7}},
		{"code 3 vbr", []byte{0x0b, 0x83, 1, 2, 9, 8, 8, 7, 7, 7}, []byte{9}},
		{"code 3 vbr one frame", []byte{0x0b, 0x81, 5, 6}, []byte{5, 6}},
		{"code 3 vbr lengths cut", []byte{0x0b, 0x83, 1}, nil},
		{"code 3 vbr too long", []byte{0x0b, 0x82, 200, 1, 2}, nil},
		{"code 3 no frames", []byte{0x0b, 0x00}, nil},
		{"code 3 padding cut", []byte{0x0b, 0x41, 255}, nil},
		{"code 3 padding too long", []byte{0x0b, 0x41, 9, 1}, nil},
		{"code 3 no count", []byte{0x0b}, nil},
	}
	for _, c := range cases {
		got, ok := opusFirstFrame(c.p)
		if c.want == nil {
			if ok {
				t.Errorf("%s: accepted (% x)", c.name, got)
			}
			continue
		}
		if !ok || !slices.Equal(got, c.want) {
			t.Errorf("%s: % x %v, want % x", c.name, got, ok, c.want)
		}
	}
	// Every one of these is refused by opusHasFEC without a panic.
	for _, c := range cases {
		opusHasFEC(c.p)
	}
	if opusHasFEC(nil) || opusHasFEC([]byte{0x08}) || opusHasFEC([]byte{0xf8, 0xff}) {
		t.Fatal("FEC found in an empty, a bare TOC or a CELT packet")
	}
}

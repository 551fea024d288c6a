package opus

import (
	"math"
	"testing"

	"github.com/wagateway/wagateway/rtpbridge/audio"
)

// A 1 kHz tone encoded at 8 kHz and decoded at 48 kHz (and the other way
// round) keeps its frequency: the RTP clock is 48 kHz whatever the PCM rate.
func TestToneSurvivesAcrossRates(t *testing.T) {
	cases := []struct{ encRate, decRate int }{{8000, 8000}, {8000, 48000}, {48000, 8000}, {16000, 16000}}
	for _, c := range cases {
		enc, err := NewEncoder(c.encRate, AppVoIP)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := NewDecoder(c.decRate)
		if err != nil {
			t.Fatal(err)
		}
		tone := audio.NewTone(1000, c.encRate, 12000)
		in := make([]int16, c.encRate/50)
		pkt := make([]byte, 1500)
		out := make([]int16, c.decRate/50*3)
		var got []int16
		for i := 0; i < 25; i++ {
			tone.Fill(in)
			n, err := enc.Encode(in, pkt)
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := PacketSamples(pkt[:n], 48000); s != 960 {
				t.Fatalf("packet holds %d samples at 48 kHz, want 960", s)
			}
			m, err := dec.Decode(pkt[:n], out)
			if err != nil {
				t.Fatal(err)
			}
			if m != c.decRate/50 {
				t.Fatalf("decoded %d samples, want %d", m, c.decRate/50)
			}
			if i >= 5 { // skip the codec's start-up
				got = append(got, out[:m]...)
			}
		}
		f, purity := audio.DominantFrequency(got, c.decRate, 300, 3400, 10)
		if math.Abs(f-1000) > 10 || purity < 0.8 {
			t.Fatalf("%d→%d Hz: dominant %v Hz purity %.2f", c.encRate, c.decRate, f, purity)
		}
		enc.Close()
		dec.Close()
		enc.Close() // twice is safe
	}
}

func TestFECAndConcealment(t *testing.T) {
	enc, _ := NewEncoder(8000, AppVoIP)
	defer enc.Close()
	if err := enc.SetInbandFEC(true); err != nil {
		t.Fatal(err)
	}
	if err := enc.SetPacketLossPerc(10); err != nil {
		t.Fatal(err)
	}
	if err := enc.SetComplexity(11); err == nil {
		t.Fatal("complexity 11 accepted")
	}
	dec, _ := NewDecoder(8000)
	defer dec.Close()
	tone := audio.NewTone(700, 8000, 10000)
	in := make([]int16, 160)
	pkt := make([]byte, 400)
	out := make([]int16, 160)
	for i := 0; i < 20; i++ {
		tone.Fill(in)
		n, _ := enc.Encode(in, pkt)
		if _, err := dec.Decode(pkt[:n], out); err != nil {
			t.Fatal(err)
		}
	}
	// Packet 21 is lost: rebuild it from 22's FEC.
	tone.Fill(in)
	tone.Fill(in)
	n, _ := enc.Encode(in, pkt)
	if m, err := dec.DecodeFEC(pkt[:n], out); err != nil || m != 160 {
		t.Fatalf("fec: %d samples, %v", m, err)
	}
	if lvl := audio.RMS(out); lvl < -30 {
		t.Fatalf("FEC frame level %.1f dBFS, want the tone", lvl)
	}
	if m, err := dec.Conceal(out); err != nil || m != 160 {
		t.Fatalf("plc: %d samples, %v", m, err)
	}
	if _, err := dec.Decode([]byte{0xff, 0xff, 0xff}, out); err == nil {
		t.Fatal("garbage decoded without error")
	}
	if _, err := NewEncoder(44100, AppVoIP); err == nil {
		t.Fatal("44.1 kHz encoder accepted")
	}
}

// The packets say the bandwidth the encoder was allowed: 8 kHz input is
// narrowband whatever the cap, 16 kHz wideband unless capped.
func TestMaxBandwidth(t *testing.T) {
	for _, c := range []struct {
		rate      int
		max, want Bandwidth
	}{{8000, 0, BandwidthNarrow}, {8000, BandwidthWide, BandwidthNarrow}, {16000, 0, BandwidthWide}, {16000, BandwidthNarrow, BandwidthNarrow}, {16000, BandwidthMedium, BandwidthMedium}} {
		enc, err := NewEncoder(c.rate, AppVoIP)
		if err != nil {
			t.Fatal(err)
		}
		enc.SetBitrate(24000)
		if c.max != 0 {
			if err := enc.SetMaxBandwidth(c.max); err != nil {
				t.Fatal(err)
			}
		}
		in := make([]int16, c.rate/50)
		pkt := make([]byte, 400)
		tone := audio.NewTone(440, c.rate, 8000)
		var got Bandwidth
		for range 10 {
			tone.Fill(in)
			n, err := enc.Encode(in, pkt)
			if err != nil {
				t.Fatal(err)
			}
			if got, err = PacketBandwidth(pkt[:n]); err != nil {
				t.Fatal(err)
			}
		}
		enc.Close()
		if got != c.want {
			t.Errorf("%d Hz, max %v: %v packets, want %v", c.rate, c.max, got, c.want)
		}
	}
	if _, err := PacketBandwidth(nil); err == nil {
		t.Fatal("empty packet has a bandwidth")
	}
	if BandwidthWide.String() != "WB" || Bandwidth(7).String() != "Bandwidth(7)" {
		t.Fatal(BandwidthWide.String(), Bandwidth(7).String())
	}
}

// Bare libopus on 20 ms frames: the floor the bridge is compared against.
func BenchmarkLibopusEncode8k(b *testing.B) {
	enc, _ := NewEncoder(8000, AppVoIP)
	defer enc.Close()
	enc.SetComplexity(5)
	in := make([]int16, 160)
	audio.NewTone(440, 8000, 8000).Fill(in)
	pkt := make([]byte, 400)
	b.ReportAllocs()
	for b.Loop() {
		enc.Encode(in, pkt)
	}
}

func BenchmarkLibopusDecode8k(b *testing.B) {
	enc, _ := NewEncoder(48000, AppVoIP)
	in := make([]int16, 960)
	audio.NewTone(440, 48000, 8000).Fill(in)
	pkt := make([]byte, 400)
	n, _ := enc.Encode(in, pkt)
	enc.Close()
	dec, _ := NewDecoder(8000)
	defer dec.Close()
	out := make([]int16, 160)
	b.ReportAllocs()
	for b.Loop() {
		dec.Decode(pkt[:n], out)
	}
}

package g711

import "testing"

// Every code decodes to a value that encodes back to the same code (G.711 is
// idempotent after the first pass), and linear input stays within the law's
// quantisation step.
func TestRoundTrip(t *testing.T) {
	laws := []struct {
		name string
		enc  func([]int16, []byte)
		dec  func([]byte, []int16)
	}{{"ulaw", EncodeUlaw, DecodeUlaw}, {"alaw", EncodeAlaw, DecodeAlaw}}
	for _, law := range laws {
		codes := make([]byte, 256)
		for i := range codes {
			codes[i] = byte(i)
		}
		pcm := make([]int16, 256)
		law.dec(codes, pcm)
		again := make([]byte, 256)
		law.enc(pcm, again)
		for i := range codes {
			if again[i] != codes[i] {
				// μ-law has two codes for zero (0x7f and 0xff); both decode to 0.
				if law.name == "ulaw" && pcm[i] == 0 {
					continue
				}
				t.Fatalf("%s: code %#02x → %d → %#02x", law.name, codes[i], pcm[i], again[i])
			}
		}
		in := make([]int16, 0, 65536)
		for s := -32768; s < 32768; s += 7 {
			in = append(in, int16(s))
		}
		enc := make([]byte, len(in))
		out := make([]int16, len(in))
		law.enc(in, enc)
		law.dec(enc, out)
		for i := range in {
			d := int(in[i]) - int(out[i])
			if d < 0 {
				d = -d
			}
			// The largest segment's step is 1024 (μ-law) and 1024 (A-law); error ≤ half of it plus clipping.
			limit := abs(int(in[i]))/16 + 16
			if abs(int(in[i])) > 32000 {
				limit = 1200
			}
			if d > limit {
				t.Fatalf("%s: %d → %d (error %d > %d)", law.name, in[i], out[i], d, limit)
			}
		}
	}
}

func TestKnownCodes(t *testing.T) {
	out := make([]byte, 1)
	EncodeUlaw([]int16{0}, out)
	if out[0] != 0xff {
		t.Fatalf("μ-law silence = %#02x, want 0xff", out[0])
	}
	EncodeAlaw([]int16{0}, out)
	if out[0] != 0xd5 {
		t.Fatalf("A-law silence = %#02x, want 0xd5", out[0])
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func BenchmarkEncodeUlaw20ms(b *testing.B) {
	pcm := make([]int16, 160)
	for i := range pcm {
		pcm[i] = int16(i * 97)
	}
	out := make([]byte, 160)
	b.ReportAllocs()
	for b.Loop() {
		EncodeUlaw(pcm, out)
	}
}

func BenchmarkDecodeUlaw20ms(b *testing.B) {
	in := make([]byte, 160)
	pcm := make([]int16, 160)
	b.ReportAllocs()
	for b.Loop() {
		DecodeUlaw(in, pcm)
	}
}

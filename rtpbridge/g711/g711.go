// Package g711 converts between 16-bit linear PCM and G.711 μ-law (PCMU) and
// A-law (PCMA), ITU-T G.711, through lookup tables built once at start.
package g711

// Tables: decoding is a 256-entry table per law; encoding indexes a 16k-entry
// table with the sample's top 14 bits (G.711 keeps at most 13/14 bits).
var (
	ulawDecode [256]int16
	alawDecode [256]int16
	ulawEncode [1 << 14]byte
	alawEncode [1 << 14]byte
)

func init() {
	for i := 0; i < 256; i++ {
		ulawDecode[i] = ulawToLinear(byte(i))
		alawDecode[i] = alawToLinear(byte(i))
	}
	for i := 0; i < 1<<14; i++ {
		s := int16(uint16(i) << 2)
		ulawEncode[i] = linearToUlaw(s)
		alawEncode[i] = linearToAlaw(s)
	}
}

// EncodeUlaw writes len(pcm) μ-law bytes into out, which must be as long.
func EncodeUlaw(pcm []int16, out []byte) {
	out = out[:len(pcm)]
	for i, s := range pcm {
		out[i] = ulawEncode[uint16(s)>>2]
	}
}

// DecodeUlaw writes len(in) samples into pcm, which must be as long.
func DecodeUlaw(in []byte, pcm []int16) {
	pcm = pcm[:len(in)]
	for i, b := range in {
		pcm[i] = ulawDecode[b]
	}
}

// EncodeAlaw writes len(pcm) A-law bytes into out, which must be as long.
func EncodeAlaw(pcm []int16, out []byte) {
	out = out[:len(pcm)]
	for i, s := range pcm {
		out[i] = alawEncode[uint16(s)>>2]
	}
}

// DecodeAlaw writes len(in) samples into pcm, which must be as long.
func DecodeAlaw(in []byte, pcm []int16) {
	pcm = pcm[:len(in)]
	for i, b := range in {
		pcm[i] = alawDecode[b]
	}
}

const ulawBias = 0x84 // G.711 §3: bias added before the segment search
const ulawClip = 32635

func linearToUlaw(s int16) byte {
	v := int(s)
	sign := 0
	if v < 0 {
		v = -v
		sign = 0x80
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

func ulawToLinear(u byte) int16 {
	u = ^u
	sign := u & 0x80
	exp := int(u>>4) & 0x07
	mant := int(u & 0x0f)
	v := ((mant << 3) + ulawBias) << exp
	v -= ulawBias
	if sign != 0 {
		return int16(-v)
	}
	return int16(v)
}

func linearToAlaw(s int16) byte {
	v := int(s) >> 3 // A-law works on 13 bits
	sign := 0x80
	if v < 0 {
		v = -v - 1
		sign = 0
	}
	var out int
	if v < 32 {
		out = v >> 1
	} else {
		exp := 1
		for t := v >> 5; t > 1 && exp < 7; t >>= 1 {
			exp++
		}
		out = exp<<4 | (v>>exp)&0x0f
	}
	return byte((sign | out) ^ 0x55) // even bits inverted, G.711 §3.4
}

func alawToLinear(a byte) int16 {
	a ^= 0x55
	sign := a & 0x80
	exp := int(a>>4) & 0x07
	mant := int(a & 0x0f)
	var v int
	if exp == 0 {
		v = mant<<4 + 8
	} else {
		v = (mant<<4 + 0x108) << (exp - 1)
	}
	if sign != 0 {
		return int16(v)
	}
	return int16(-v)
}

package rtpbridge

import (
	"math"

	"github.com/gotranspile/g722"
	"github.com/pion/rtp"
)

// decodeG722 decodes a G.722 stream with one decoder of its own, as a PBX
// would.
func decodeG722(pkts []rtp.Packet) []int16 {
	dec := g722.NewDecoder(g722.Rate64000, 0)
	var pcm []int16
	for _, p := range pkts {
		s := make([]int16, 2*len(p.Payload))
		pcm = append(pcm, s[:dec.Decode(s, p.Payload)]...)
	}
	return pcm
}

func sinAt(freq float64, i, rate int) float64 { return math.Sin(2 * math.Pi * freq * float64(i) / float64(rate)) }

//go:build !linux

package rtpbridge

import "time"

// threadCPU is not measured here: BenchmarkOpusEncodeSettings reports no
// CPU times.
func threadCPU() time.Duration { return 0 }

package rtpbridge

import (
	"fmt"
	"time"
)

// framer cuts PCM of any length into fixed frames (WhatsApp→SIP: Opus
// packets of 10-120 ms become 20 ms G.711 packets). Its one goroutine
// decodes straight into its free space, then takes whole frames out; what is
// left (less than a frame) moves to the front. Not safe for concurrent use.
type framer struct {
	name  string
	buf   []int16
	r, w  int // unread samples are buf[r:w]
	frame int // samples per frame
}

// newFramer makes a framer of frame samples (lasting d) that takes up to
// maxWrite samples at a time.
func newFramer(frame int, d time.Duration, maxWrite int) *framer {
	return &framer{name: fmt.Sprintf("%v frames", d), buf: make([]int16, frame+maxWrite), frame: frame}
}

func (f *framer) String() string { return f.name }

// space returns n samples of free space to write into (then call wrote), or
// nil if n is more than the framer can take.
func (f *framer) space(n int) []int16 {
	if f.w+n > len(f.buf) {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
		if f.w+n > len(f.buf) {
			return nil
		}
	}
	return f.buf[f.w : f.w+n]
}

func (f *framer) wrote(n int) { f.w += n }

// next returns the next whole frame, valid until the next call to space.
func (f *framer) next() ([]int16, bool) {
	if f.w-f.r < f.frame {
		return nil, false
	}
	fr := f.buf[f.r : f.r+f.frame]
	f.r += f.frame
	return fr, true
}

// pending is the number of samples waiting for a whole frame.
func (f *framer) pending() int { return f.w - f.r }

// flush pads what is pending with silence to a whole frame and returns it
// with the number of padding samples; ok is false if nothing was pending.
func (f *framer) flush() (fr []int16, padding int, ok bool) {
	p := f.pending()
	if p == 0 {
		return nil, 0, false
	}
	if p >= f.frame {
		fr, _ = f.next()
		return fr, 0, true
	}
	padding = f.frame - p
	clear(f.space(padding))
	f.wrote(padding)
	fr, _ = f.next()
	return fr, padding, true
}

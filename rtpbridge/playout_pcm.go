package rtpbridge

import "math/bits"

// pcmRing is the playout buffer's store for a transcoded call: the PBX's
// decoded PCM on a ring indexed by timeline position (samples), with a bit
// per quantum (2.5 ms) telling which audio has been written. Reading a frame
// clears it, so a quantum never written reads as zeros (silence). The
// playout buffer's lock guards it.
type pcmRing struct {
	frame int64    // samples per frame
	q     int64    // samples per validity bit
	pcm   []int16  // indexed by timeline position modulo its length
	valid []uint64 // a bit per quantum of pcm
}

// configure makes the ring hold s's audio, empty.
func (r *pcmRing) configure(s *sipSetup) playGeometry {
	rate := int64(s.codec.pcmRate)
	r.frame = int64(s.frame.samples)
	r.q = rate / playQuantumDiv
	capacity := rate * playCapacityMs / 1000
	n := capacity + 2*r.frame
	n += (r.q*64 - n%(r.q*64)) % (r.q * 64) // whole words of quanta
	if int64(len(r.pcm)) != n {
		r.pcm = make([]int16, n)
		r.valid = make([]uint64, n/r.q/64)
	} else {
		clear(r.pcm)
		clear(r.valid)
	}
	return playGeometry{rate: rate, mul: rate / int64(s.codec.clock), frame: r.frame, capacity: capacity}
}

func (r *pcmRing) release() { r.pcm, r.valid = nil, nil }

// has reports whether all the audio from from to to is held already.
func (r *pcmRing) has(from, to int64) bool { return r.allValid(from, to) }

// write keeps pcm at timeline position from.
func (r *pcmRing) write(from int64, pcm []int16) {
	ring := int64(len(r.pcm))
	c := copy(r.pcm[from%ring:], pcm)
	copy(r.pcm, pcm[c:])
	r.setValid(from, from+int64(len(pcm)))
}

// play reads the frame at pos into pcm (zeros where none is held).
func (r *pcmRing) play(pos int64, pcm []int16, _ []byte) (playKind, int, int64) {
	if r.read(pos, pcm[:r.frame]) {
		return playAudio, 0, 0
	}
	return playSilence, 0, 0
}

// silence makes pcm a frame of silence.
func (r *pcmRing) silence(pcm []int16) { clear(pcm[:r.frame]) }

// read copies the held audio from pos into out (zeros where there is
// none), clears it from the ring and reports whether there was any.
func (r *pcmRing) read(pos int64, out []int16) bool {
	to := pos + int64(len(out))
	if !r.anyValid(pos, to) {
		clear(out)
		return false
	}
	ring := int64(len(r.pcm))
	c := copy(out, r.pcm[pos%ring:])
	copy(out[c:], r.pcm)
	// Quanta never written hold zeros: the ring is cleared as it is read.
	r.discard(pos, to)
	return true
}

// quiet reports whether the frame at pos holds nothing, or nothing loud.
func (r *pcmRing) quiet(pos int64) bool {
	n := r.frame
	if !r.anyValid(pos, pos+n) {
		return true
	}
	var sum int64
	ring := int64(len(r.pcm))
	for k := pos; k < pos+n; k++ {
		v := int64(r.pcm[k%ring])
		sum += v * v
	}
	return sum < n*playQuietLevel
}

// discard zeros the ring and its validity from from to to.
func (r *pcmRing) discard(from, to int64) {
	ring := int64(len(r.pcm))
	if to-from >= ring {
		clear(r.pcm)
		clear(r.valid)
		return
	}
	i, j := from%ring, to%ring
	if i < j {
		clear(r.pcm[i:j])
	} else {
		clear(r.pcm[i:])
		clear(r.pcm[:j])
	}
	for k := from / r.q; k*r.q < to; k++ {
		if k*r.q >= from { // a quantum only partly cleared keeps its bit
			w, m := r.bit(k * r.q)
			r.valid[w] &^= m
		}
	}
}

// held is the number of samples held (tests).
func (r *pcmRing) held() int {
	n := 0
	for _, w := range r.valid {
		n += bits.OnesCount64(w)
	}
	return n * int(r.q)
}

// The validity bits: one per quantum of the ring.

func (r *pcmRing) bit(pos int64) (word int, mask uint64) {
	b := pos / r.q % int64(len(r.valid)*64)
	return int(b / 64), 1 << (b % 64)
}

func (r *pcmRing) setValid(from, to int64) {
	for k := from / r.q; k*r.q < to; k++ {
		w, m := r.bit(k * r.q)
		r.valid[w] |= m
	}
}

func (r *pcmRing) allValid(from, to int64) bool {
	for k := from / r.q; k*r.q < to; k++ {
		if w, m := r.bit(k * r.q); r.valid[w]&m == 0 {
			return false
		}
	}
	return true
}

func (r *pcmRing) anyValid(from, to int64) bool {
	for k := from / r.q; k*r.q < to; k++ {
		if w, m := r.bit(k * r.q); r.valid[w]&m != 0 {
			return true
		}
	}
	return false
}

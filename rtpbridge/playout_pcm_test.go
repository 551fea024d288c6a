package rtpbridge

import (
	"slices"
	"testing"
)

func newTestRing(t *testing.T, codec Codec) (*pcmRing, playGeometry) {
	t.Helper()
	s, err := newSetup(codec, 0, 0, defaultFrame, opusWA(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	var r pcmRing
	return &r, r.configure(s)
}

// The ring's geometry: 8 kHz PCMU and G.722's 16 kHz audio on its 8 kHz
// RTP clock (RFC 3551 §4.5.2), a second held and whole words of quanta.
func TestPCMRingGeometry(t *testing.T) {
	for _, tc := range []struct {
		codec            Codec
		rate, mul, frame int64
	}{{pcmu, 8000, 1, 160}, {g722Codec, 16000, 2, 320}} {
		r, g := newTestRing(t, tc.codec)
		if g.rate != tc.rate || g.mul != tc.mul || g.frame != tc.frame || g.capacity != tc.rate || g.mid != 0 {
			t.Fatalf("%s: geometry %+v", tc.codec.Name, g)
		}
		if n := int64(len(r.pcm)); n < g.capacity+2*g.frame || n%(r.q*64) != 0 || int64(len(r.valid))*64*r.q != n {
			t.Fatalf("%s: ring of %d samples, %d words of validity", tc.codec.Name, n, len(r.valid))
		}
	}
}

// Audio written across the ring's end reads back whole, once: reading
// clears it.
func TestPCMRingWrapsAround(t *testing.T) {
	r, g := newTestRing(t, pcmu)
	pos := int64(len(r.pcm)) - g.frame/2 // the frame straddles the end
	r.write(pos, tagged(3))
	if !r.has(pos, pos+g.frame) || r.has(pos, pos+g.frame+1) || r.held() != int(g.frame) {
		t.Fatalf("held %d", r.held())
	}
	out, pcm := make([]int16, g.frame), tagged(3)
	if kind, _, _ := r.play(pos, out, nil); kind != playAudio || !slices.Equal(out, pcm) {
		t.Fatalf("played %v, not what was written", kind)
	}
	if kind, _, _ := r.play(pos, out, nil); kind != playSilence || slices.ContainsFunc(out, func(v int16) bool { return v != 0 }) || r.held() != 0 {
		t.Fatalf("read twice: %v, %d held", kind, r.held())
	}
}

// Half a frame written plays as audio with zeros where none came.
func TestPCMRingPartialFrame(t *testing.T) {
	r, g := newTestRing(t, pcmu)
	half := tagged(1)[:g.frame/2]
	r.write(g.frame/2, half)
	out := make([]int16, g.frame)
	for i := range out {
		out[i] = 99 // what a previous frame left
	}
	kind, _, _ := r.play(0, out, nil)
	if kind != playAudio || slices.ContainsFunc(out[:g.frame/2], func(v int16) bool { return v != 0 }) || !slices.Equal(out[g.frame/2:], half) {
		t.Fatalf("played %v %v", kind, out)
	}
}

// A discard that begins mid-quantum keeps that quantum's bit (its first
// samples are still held); the whole quanta after it go.
func TestPCMRingDiscard(t *testing.T) {
	r, g := newTestRing(t, pcmu)
	r.write(0, tagged(2))
	r.discard(r.q/2, g.frame)
	if r.held() != int(r.q) {
		t.Fatalf("%d held, want the first quantum's %d", r.held(), r.q)
	}
	r.discard(0, int64(len(r.pcm))+g.frame) // more than the ring: all of it
	if r.held() != 0 || slices.ContainsFunc(r.pcm, func(v int16) bool { return v != 0 }) {
		t.Fatalf("%d held after discarding everything", r.held())
	}
}

// A frame is quiet when nothing is held, or nothing loud (about -50 dBFS).
func TestPCMRingQuiet(t *testing.T) {
	r, g := newTestRing(t, pcmu)
	if !r.quiet(0) {
		t.Fatal("an empty frame is not quiet")
	}
	soft, loud := make([]int16, g.frame), make([]int16, g.frame)
	for i := range soft {
		soft[i], loud[i] = 50, 1000
	}
	r.write(0, soft)
	r.write(g.frame, loud)
	if !r.quiet(0) || r.quiet(g.frame) {
		t.Fatalf("quiet: soft %v, loud %v", r.quiet(0), r.quiet(g.frame))
	}
	out := make([]int16, g.frame)
	for i := range out {
		out[i] = 7
	}
	r.silence(out)
	if slices.ContainsFunc(out, func(v int16) bool { return v != 0 }) {
		t.Fatal("silence left audio")
	}
}

package webrtc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// entry is a test entry: n bytes that say which entry they are (seq) in
// every byte, so a torn, shifted or reordered entry shows.
func entry(seq uint64, n int) []byte {
	p := make([]byte, n)
	fillEntry(p, seq)
	return p
}

func fillEntry(p []byte, seq uint64) {
	x := seq*0x9e3779b97f4a7c15 + 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
	if len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, seq)
	}
}

func newRing(size int) *byteRing {
	r := &byteRing{}
	r.init(make([]byte, size))
	return r
}

// moveTo brings an empty ring's producer (and consumer) forward to pos,
// pushing and popping entries, without a wrap (pos past the producer by 0
// or at least ringHdr, at most the array's end).
func moveTo(t *testing.T, r *byteRing, pos int) {
	t.Helper()
	for d := pos - r.wpos; d > 0; d = pos - r.wpos {
		k := min(d, r.maxEntry()+ringHdr)
		if d-k == 1 {
			k--
		}
		if k < ringHdr || !r.push(make([]byte, k-ringHdr)) {
			t.Fatalf("cannot move the producer from %d to %d", r.wpos, pos)
		}
		r.front()
		r.pop()
	}
	if r.wpos != pos || r.rpos != pos || r.used() != 0 {
		t.Fatalf("moved to %d/%d with %d used, want %d", r.wpos, r.rpos, r.used(), pos)
	}
}

// popWant takes the oldest entry and checks it is want.
func popWant(t *testing.T, r *byteRing, want []byte) {
	t.Helper()
	got, ok := r.front()
	if !ok {
		t.Fatalf("ring empty, want an entry of %d bytes", len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("front = %d bytes %x, want %d bytes %x", len(got), got, len(want), want)
	}
	r.pop()
}

// Entries of mixed sizes go round a small ring many times, each end the
// producer skips marked or not (one byte left: too short for a mark), and
// come out whole and in order.
func TestRingWrapMixedSizes(t *testing.T) {
	for _, size := range []int{64, 67, 100, 257} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			r := newRing(size)
			var queued [][]byte
			var seq uint64
			rng := rand.New(rand.NewPCG(uint64(size), 1))
			for round := 0; round < 2000; round++ {
				// Fill to a random depth, then drain part of it.
				for k := rng.IntN(5); k >= 0; k-- {
					p := entry(seq, rng.IntN(r.maxEntry()+1))
					if !r.push(p) {
						break
					}
					seq++
					queued = append(queued, p)
				}
				for k := rng.IntN(len(queued) + 1); k > 0; k-- {
					popWant(t, r, queued[0])
					queued = queued[1:]
				}
				if r.used() < 0 || r.used() > size {
					t.Fatalf("used %d of %d", r.used(), size)
				}
			}
			for _, p := range queued {
				popWant(t, r, p)
			}
			if _, ok := r.front(); ok || r.used() != 0 {
				t.Fatalf("drained ring not empty (used %d)", r.used())
			}
			if r.tail.Load() < uint64(10*size) {
				t.Fatalf("only %d bytes went through a %d-byte ring: no wraps tested", r.tail.Load(), size)
			}
		})
	}
}

// Each way a wrap can fall: the end skipped with a mark, the one byte left
// skipped without one, and an entry ending exactly at the end.
func TestRingWrapEdges(t *testing.T) {
	for _, c := range []struct {
		name      string
		at        int // where the producer stands
		wantSkip  int
		wantMark  bool
		secondLen int
	}{
		{"marked end", 52, 60 - 52, true, 10},
		{"one byte left, no mark", 59, 1, false, 10},
		{"entry ends at the end", 60, 0, false, 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRing(60)
			moveTo(t, r, c.at)
			b := entry(2, c.secondLen)
			if !r.push(b) {
				t.Fatal("entry refused by an empty ring")
			}
			if got := r.used(); got != c.wantSkip+ringHdr+c.secondLen {
				t.Errorf("used %d, want %d skipped + %d", got, c.wantSkip, ringHdr+c.secondLen)
			}
			if c.wantMark && binary.LittleEndian.Uint16(r.buf[c.at:]) != ringWrap {
				t.Error("skipped end not marked")
			}
			if r.wpos != ringHdr+c.secondLen {
				t.Errorf("producer at %d, want %d (the entry at 0)", r.wpos, ringHdr+c.secondLen)
			}
			popWant(t, r, b)
			if r.used() != 0 {
				t.Errorf("used %d once drained", r.used())
			}
		})
	}
}

// An empty ring says so (and pop without front does nothing); a full one
// refuses the newest entry, keeps the ones it has, and takes entries again
// once the consumer makes room; an entry longer than maxEntry is never
// taken, one of maxEntry bytes always fits the empty ring.
func TestRingFullEmpty(t *testing.T) {
	r := newRing(100)
	if _, ok := r.front(); ok {
		t.Fatal("new ring not empty")
	}
	r.pop()
	if r.used() != 0 || r.rpos != 0 {
		t.Fatal("pop of an empty ring moved it")
	}
	// 10 entries of 8+2 bytes fill 100 bytes exactly.
	var in [][]byte
	for i := 0; i < 10; i++ {
		p := entry(uint64(i), 8)
		if !r.push(p) {
			t.Fatalf("entry %d refused with %d bytes used", i, r.used())
		}
		in = append(in, p)
	}
	if r.used() != 100 {
		t.Fatalf("used %d, want 100", r.used())
	}
	if r.push(nil) || r.push(entry(99, 1)) {
		t.Fatal("full ring took an entry")
	}
	popWant(t, r, in[0])
	if r.push(entry(99, 9)) {
		t.Fatal("took 11 bytes into 10 free")
	}
	last := entry(10, 8)
	if !r.push(last) {
		t.Fatal("refused 10 bytes into 10 free")
	}
	in = append(in[1:], last)
	for _, p := range in {
		popWant(t, r, p)
	}
	if _, ok := r.front(); ok {
		t.Fatal("drained ring not empty")
	}

	// Empty entries are entries.
	if !r.push(nil) {
		t.Fatal("empty entry refused")
	}
	if p, ok := r.front(); !ok || len(p) != 0 {
		t.Fatalf("front = %x, %v; want the empty entry", p, ok)
	}
	r.pop()

	// Longer than maxEntry: refused, empty ring or not, nothing moved.
	if got := r.maxEntry(); got != 48 {
		t.Fatalf("maxEntry of 100 bytes = %d, want 48", got)
	}
	tail := r.tail.Load()
	for _, n := range []int{49, 98, 99, 100, 1 << 16} {
		if r.push(make([]byte, n)) {
			t.Fatalf("entry of %d bytes taken by a 100-byte ring", n)
		}
	}
	if r.tail.Load() != tail {
		t.Fatal("a refused entry moved the tail")
	}
	// maxEntry fits the empty ring wherever the producer stands.
	for start := 0; start < 100; start++ {
		if start == 1 {
			continue // not reachable without a wrap
		}
		r := newRing(100)
		moveTo(t, r, start)
		big := entry(uint64(start), r.maxEntry())
		if !r.push(big) {
			t.Fatalf("empty ring, producer at %d: maxEntry refused", start)
		}
		popWant(t, r, big)
	}
	// The length prefix caps entries in a large ring.
	if got := newRing(1 << 18).maxEntry(); got != ringWrap-1 {
		t.Fatalf("maxEntry of a 256 KiB ring = %d, want %d", got, ringWrap-1)
	}
}

// The leg's ring holds what legRing promises: 16 KiB of entries wherever
// the producer stands, so 10 MTU-size packets and 105 of 154 bytes (2.1 s
// of 20 ms packets).
func TestLegRingCapacity(t *testing.T) {
	for _, c := range []struct{ size, want int }{{1500, 10}, {154, 105}, {100, 160}} {
		for start := 0; start < legRing; start += 97 {
			r := newRing(legRing)
			moveTo(t, r, start)
			n := 0
			for r.push(make([]byte, c.size)) {
				n++
			}
			if n < c.want {
				t.Fatalf("%d-byte packets: %d held with the producer at %d, want at least %d", c.size, n, start, c.want)
			}
		}
	}
}

// One producer and one consumer on their own goroutines move 100k entries
// of random sizes through a ring a few entries deep: every byte and the
// order arrive (run it with -race).
func TestRingConcurrent(t *testing.T) {
	const total = 100_000
	r := newRing(4099) // not a power of two; about 4 MTU-size entries
	sizes := rand.New(rand.NewPCG(7, 7))
	lengths := make([]int, total)
	for i := range lengths {
		switch sizes.IntN(10) {
		case 0:
			lengths[i] = sizes.IntN(maxDatagram + 1)
		default:
			lengths[i] = 40 + sizes.IntN(130) // WhatsApp's Opus
		}
	}
	done := make(chan struct{})
	var refused uint64
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for i := 0; i < total; i++ {
			p := buf[:lengths[i]]
			fillEntry(p, uint64(i))
			for !r.push(p) {
				refused++
				runtime.Gosched()
			}
		}
	}()
	want := make([]byte, maxDatagram)
	for i := 0; i < total; i++ {
		got, ok := r.front()
		for !ok {
			runtime.Gosched()
			got, ok = r.front()
		}
		w := want[:lengths[i]]
		fillEntry(w, uint64(i))
		if !bytes.Equal(got, w) {
			t.Fatalf("entry %d: got %d bytes, want %d (seq in it: %d)", i, len(got), len(w), seqOf(got))
		}
		r.pop()
	}
	<-done
	if _, ok := r.front(); ok {
		t.Fatal("an entry more than pushed")
	}
	t.Logf("%d entries, %d bytes; the producer found the ring full %d times", total, r.tail.Load(), refused)
}

func seqOf(p []byte) int64 {
	if len(p) < 8 {
		return -1
	}
	return int64(binary.LittleEndian.Uint64(p))
}

// FuzzRing runs the fuzzer's pushes and pops on a small ring against a
// model: which bytes of the array each entry (and the end skipped before
// it) takes. A push must succeed exactly when the bytes where the entry
// goes are free, there or at the array's start when it would cross the
// end; pops return the entries pushed, in order.
func FuzzRing(f *testing.F) {
	f.Add(uint8(64), []byte{10, 0x80, 30, 30, 0x80, 0x80, 1, 2, 3, 62})
	f.Add(uint8(31), []byte{27, 0x80, 5, 5, 5, 0x80, 0x80, 13, 13, 13, 0x80, 0x80, 0x80})
	f.Add(uint8(200), []byte{100, 98, 97, 0x80, 0x80, 50, 50, 50, 50})
	f.Fuzz(func(t *testing.T, sizeB uint8, ops []byte) {
		size := 4 + int(sizeB)
		r := newRing(size)
		type ent struct {
			data       []byte
			start, end int // its bytes in the array, the skipped end with it (end may wrap past size)
		}
		taken := make([]bool, size)
		var model []ent
		wpos := 0
		var seq uint64
		for _, op := range ops {
			if op&0x80 != 0 { // pop
				got, ok := r.front()
				if len(model) == 0 {
					if ok {
						t.Fatalf("front of an empty ring: %x", got)
					}
					r.pop()
					continue
				}
				if !ok || !bytes.Equal(got, model[0].data) {
					t.Fatalf("front = %x, %v; want %x", got, ok, model[0].data)
				}
				r.pop()
				for i := model[0].start; i < model[0].end; i++ {
					taken[i%size] = false
				}
				model = model[1:]
				continue
			}
			n := int(op)
			p := entry(seq, n)
			// Where the model puts it.
			want := n <= r.maxEntry()
			start, at := wpos, wpos
			if want && size-wpos < ringHdr+n {
				at = 0
			}
			end := at + ringHdr + n
			if at == 0 && start != 0 {
				end = size + ringHdr + n // the skipped end, then the entry from 0
			}
			for i := start; want && i < end; i++ {
				if taken[i%size] {
					want = false
				}
			}
			if want && end-start > size {
				want = false
			}
			got := r.push(p)
			if got != want {
				t.Fatalf("push of %d bytes at %d (%d used, %d entries): %v, want %v", n, wpos, r.used(), len(model), got, want)
			}
			if !got {
				continue
			}
			seq++
			for i := start; i < end; i++ {
				taken[i%size] = true
			}
			model = append(model, ent{p, start, end})
			wpos = at + ringHdr + n
			used := 0
			for _, b := range taken {
				if b {
					used++
				}
			}
			if r.used() != used {
				t.Fatalf("ring says %d bytes used, model %d", r.used(), used)
			}
		}
		for _, e := range model {
			popWant(t, r, e.data)
		}
		if _, ok := r.front(); ok {
			t.Fatal("entry left over")
		}
	})
}

// BenchmarkRing is one push and one pop of a 100-byte packet (a WhatsApp
// SRTP packet) through the leg's ring: no allocation.
func BenchmarkRing(b *testing.B) {
	r := newRing(legRing)
	p := entry(1, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if !r.push(p) {
			b.Fatal("full")
		}
		q, ok := r.front()
		if !ok || len(q) != len(p) {
			b.Fatal("lost")
		}
		r.pop()
	}
}

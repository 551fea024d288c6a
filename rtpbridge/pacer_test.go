package rtpbridge

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// newTestWorker starts a media worker of the test's own, apart from the
// package's (its goroutine outlives the test).
func newTestWorker() *worker {
	w := &worker{epoch: time.Now(), wake: make(chan struct{}, 1)}
	w.poll, _ = newPoller()
	go w.run()
	return w
}

// runPacer paces a stream on a worker of its own for about d with a send
// that takes work (and, on the stallAt-th frame, stall), and returns frames
// sent and skipped and the time elapsed.
func runPacer(d, work time.Duration, stallAt int, stall time.Duration) (sent, skipped int64, elapsed time.Duration) {
	start := time.Now()
	st := newTestWorker().startPacing(20*time.Millisecond, func(time.Duration) time.Duration {
		sent++
		time.Sleep(work)
		if sent == int64(stallAt) {
			time.Sleep(stall)
		}
		return 0
	}, func(n int64) { skipped += n })
	time.Sleep(d)
	st.stop() // waits out a send under way: sent and skipped are settled
	return sent, skipped, time.Since(start)
}

// Many streams on the package's workers: each gets its 50 frames a second
// whatever phase it started at, and none is sent to once stop returns.
func TestSharedPacersManyStreams(t *testing.T) {
	const streams = 300
	var sent [streams]atomic.Int64
	var stopped [streams]atomic.Bool
	var afterStop atomic.Int64
	started := make([]time.Time, streams)
	paced := make([]*pacedStream, streams)
	for i := range streams {
		started[i] = time.Now()
		paced[i] = pickWorker().startPacing(20*time.Millisecond, func(time.Duration) time.Duration {
			if stopped[i].Load() {
				afterStop.Add(1)
			}
			sent[i].Add(1)
			return 0
		}, func(int64) {})
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond) // phases spread over the grid
	}
	time.Sleep(400 * time.Millisecond)
	for i := range streams {
		paced[i].stop()
		elapsed := time.Since(started[i])
		stopped[i].Store(true)
		want := int64(elapsed/(20*time.Millisecond)) + 1
		if n := sent[i].Load(); n < want-3 || n > want+1 {
			t.Errorf("stream %d: %d frames in %v, want about %d", i, n, elapsed, want)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := afterStop.Load(); n != 0 {
		t.Fatalf("%d frames sent after stop returned", n)
	}
}

// The schedule is start + k·20 ms whatever each frame costs: frames that
// take 15 ms of work still go out at 50 a second (a sleep of 20 ms after
// the work would make it 29).
func TestPacerDoesNotDrift(t *testing.T) {
	sent, skipped, elapsed := runPacer(600*time.Millisecond, 15*time.Millisecond, 0, 0)
	want := int64(elapsed/(20*time.Millisecond)) + 1
	t.Logf("%d frames in %v, want %d", sent, elapsed, want)
	if sent < want-3 || sent > want+1 || skipped != 0 {
		t.Fatalf("%d frames (%d skipped) in %v, want about %d", sent, skipped, elapsed, want)
	}
}

// A stall shorter than 100 ms is made up at once; a longer one is skipped
// (and reported) rather than burst out.
func TestPacerStalls(t *testing.T) {
	{
		sent, skipped, elapsed := runPacer(400*time.Millisecond, 0, 3, 70*time.Millisecond)
		want := int64(elapsed/(20*time.Millisecond)) + 1
		t.Logf("short stall: %d frames, %d skipped in %v, want %d", sent, skipped, elapsed, want)
		if sent < want-3 || sent > want+1 || skipped != 0 {
			t.Fatalf("short stall: %d frames, %d skipped in %v, want about %d, none skipped", sent, skipped, elapsed, want)
		}

		sent, skipped, elapsed = runPacer(500*time.Millisecond, 0, 3, 200*time.Millisecond)
		want = int64(elapsed/(20*time.Millisecond)) + 1
		t.Logf("long stall: %d frames, %d skipped in %v, want %d in all", sent, skipped, elapsed, want)
		if skipped < 5 || skipped > 11 || sent+skipped < want-3 || sent+skipped > want+1 {
			t.Fatalf("long stall: %d frames, %d skipped in %v, want about %d in all", sent, skipped, elapsed, want)
		}
	}
}

// The schedule on a clock of the test's own: each frame is due a period
// after the one before plus the shift it asked for, a shift is kept under
// a period either way, and a frame is never sent before it is due.
func TestScheduleShifts(t *testing.T) {
	const P = 20 * time.Millisecond
	t0 := time.Unix(1000, 0)
	s := schedule{start: t0, period: P}
	asks := map[int]time.Duration{3: 3 * time.Millisecond, 6: -7 * time.Millisecond, 9: P - time.Microsecond, 12: 3 * P, 15: -3 * P}
	want := t0 // when frame k is due
	var sentAt []time.Time
	for k := range 20 {
		now := s.next()
		if !now.Equal(want) {
			t.Fatalf("frame %d due at %v, want %v", k, now.Sub(t0), want.Sub(t0))
		}
		if s.run(now.Add(-time.Nanosecond), func(time.Duration) time.Duration { t.Fatal("sent early"); return 0 }, nil); s.sent != int64(k) {
			t.Fatalf("frame %d: %d sent before its time", k, s.sent)
		}
		s.run(now, func(behind time.Duration) time.Duration {
			if behind != 0 {
				t.Fatalf("frame %d sent %v behind", k, behind)
			}
			sentAt = append(sentAt, now)
			return asks[k]
		}, nil)
		want = want.Add(P + min(max(asks[k], -P+1), P-1))
	}
	for k := 1; k < len(sentAt); k++ {
		if d := sentAt[k].Sub(sentAt[k-1]); d <= 0 || d >= 2*P {
			t.Fatalf("frames %d and %d %v apart", k-1, k, d)
		}
	}
}

// Late ticks on the test's clock: frames due are sent at once with how far
// behind each is (a shift asked on the way counts for the rest); after a
// stall of more than maxCatchUp frames all but the last are skipped; and
// however a send keeps asking for earlier frames, a run ends.
func TestScheduleCatchUp(t *testing.T) {
	const P = 20 * time.Millisecond
	t0 := time.Unix(1000, 0)
	s := schedule{start: t0, period: P}
	var behind []time.Duration
	send := func(b time.Duration) time.Duration { behind = append(behind, b); return 0 }
	s.run(t0.Add(70*time.Millisecond), send, func(int64) { t.Fatal("skipped after 70 ms") })
	if !slices.Equal(behind, []time.Duration{70 * time.Millisecond, 50 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond}) {
		t.Fatalf("behind %v", behind)
	}

	behind = nil
	s.run(t0.Add(75*time.Millisecond), func(b time.Duration) time.Duration { behind = append(behind, b); return 10 * time.Millisecond }, nil)
	if len(behind) != 0 {
		t.Fatalf("sent %v before its time", behind)
	}
	s.run(t0.Add(150*time.Millisecond), func(b time.Duration) time.Duration { behind = append(behind, b); return 10 * time.Millisecond }, nil)
	// Due at 80, then 110 (80 + 20 + 10), then 140: all three late.
	if !slices.Equal(behind, []time.Duration{70 * time.Millisecond, 40 * time.Millisecond, 10 * time.Millisecond}) {
		t.Fatalf("behind %v, want 70, 40, 10 ms", behind)
	}

	var skipped int64
	behind = nil
	s.run(s.next().Add(10*P), send, func(n int64) { skipped += n })
	if skipped != 10 || len(behind) != 1 {
		t.Fatalf("after a stall of 10 frames: %d skipped, %d sent", skipped, len(behind))
	}

	n := 0
	s.run(s.next().Add(3*P), func(time.Duration) time.Duration { n++; return -P }, func(int64) {})
	if n > maxCatchUp+1 {
		t.Fatalf("%d frames sent in one run", n)
	}
}

package rtpbridge

import (
	"testing"
	"time"
)

// runPacer runs pace for about d with a send that takes work (and, on the
// stallAt-th frame, stall), and returns frames sent and skipped and the
// time elapsed.
func runPacer(d, work time.Duration, stallAt int, stall time.Duration) (sent, skipped int64, elapsed time.Duration) {
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		pace(20*time.Millisecond, stop, func() {
			sent++
			time.Sleep(work)
			if sent == int64(stallAt) {
				time.Sleep(stall)
			}
		}, func(n int64) { skipped += n })
	}()
	time.Sleep(d)
	close(stop)
	<-done
	return sent, skipped, time.Since(start)
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

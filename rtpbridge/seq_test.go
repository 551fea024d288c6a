package rtpbridge

import "testing"

func TestSeqTracker(t *testing.T) {
	var tr seqTracker
	type step struct {
		seq     uint16
		ssrc    uint32
		want    seqVerdict
		missing int
	}
	steps := []step{
		{65530, 1, seqRestart, 0}, // first packet
		{65531, 1, seqNext, 0},
		{65535, 1, seqGap, 3}, // 65532-65534 missing
		{1, 1, seqGap, 1},     // across the wrap, 0 missing
		{1, 1, seqLate, 0},    // duplicate
		{65534, 1, seqLate, 0},
		{2, 2, seqRestart, 0},           // new SSRC
		{3 + 3000, 2, seqGap, 3000},     // the largest jump taken as loss
		{3004 - 100, 2, seqLate, 0},     // 100 behind the one expected: reordered
		{3004 - 101, 2, seqRestart, 0},  // further behind: the sender restarted
		{2904 + 3001, 2, seqRestart, 0}, // too far ahead: likewise
	}
	for i, s := range steps {
		v, missing := tr.check(s.seq, s.ssrc)
		if v != s.want || missing != s.missing {
			t.Fatalf("step %d (seq %d): %v/%d, want %v/%d", i, s.seq, v, missing, s.want, s.missing)
		}
		if v != seqLate {
			tr.accept(s.seq, s.ssrc, uint32(s.seq)*960, 960)
		}
	}
}

func TestSeqTrackerTimestamps(t *testing.T) {
	var tr seqTracker
	tr.accept(10, 1, 4294966336, 960) // the next one is expected at 0 (wrapped)
	if g := tr.tsGap(0); g != 0 {
		t.Fatalf("gap %d", g)
	}
	if g := tr.tsGap(1920); g != 1920 {
		t.Fatalf("gap %d", g)
	}
	if g := tr.tsGap(4294966336); g != -960 {
		t.Fatalf("gap %d", g)
	}
	// A telephone-event moves the sequence on, not the audio clock.
	tr.skip(11)
	if v, _ := tr.check(12, 1); v != seqNext || tr.tsGap(0) != 0 {
		t.Fatalf("after skip: %v, gap %d", v, tr.tsGap(0))
	}
}

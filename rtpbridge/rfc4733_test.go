package rtpbridge

import "testing"

func TestEventPayload(t *testing.T) {
	b := make([]byte, 4)
	for _, ev := range []eventPacket{{code: 5, volume: 10, dur: 800}, {code: 11, end: true, volume: 63, dur: 0xffff}, {}} {
		if n := putEvent(b, ev); n != 4 {
			t.Fatalf("%d bytes", n)
		}
		got, ok := parseEvent(b)
		if !ok || got != ev {
			t.Fatalf("%+v → % x → %+v", ev, b, got)
		}
	}
	// RFC 4733 §2.3: E is the top bit of the second byte, R must be ignored.
	if ev, _ := parseEvent([]byte{1, 0xca, 0x01, 0x40}); !ev.end || ev.volume != 10 || ev.dur != 320 || ev.code != 1 {
		t.Fatalf("%+v", ev)
	}
	if _, ok := parseEvent([]byte{1, 2, 3}); ok {
		t.Fatal("short payload parsed")
	}
}

func TestDigitCodes(t *testing.T) {
	for code := uint8(0); code < 16; code++ {
		r := codeDigit(code)
		if c, ok := digitCode(r); !ok || c != code {
			t.Fatalf("%d → %q → %d", code, r, c)
		}
	}
	if c, ok := digitCode('b'); !ok || c != 13 {
		t.Fatal("lower-case b")
	}
	for _, r := range "xE+ 9\x00"[:5] {
		if _, ok := digitCode(r); ok && r != '9' {
			t.Fatalf("%q accepted", r)
		}
	}
	if codeDigit(16) != 0 {
		t.Fatal("flash is not a digit")
	}
}

// The track tells events apart by timestamp, ignores retransmitted ends and
// reordered updates, and takes an event whose first packets were lost, or
// of which only the end arrived.
func TestEventTrack(t *testing.T) {
	var tr eventTrack
	steps := []struct {
		ts   uint32
		ev   eventPacket
		want eventNote
	}{
		{1000, eventPacket{code: 1, dur: 160}, evBegin},
		{1000, eventPacket{code: 1, dur: 320}, evUpdate},
		{1000, eventPacket{code: 1, dur: 320}, evIgnore}, // duplicate
		{1000, eventPacket{code: 1, dur: 160}, evIgnore}, // reordered
		{1000, eventPacket{code: 1, dur: 800, end: true}, evEnd},
		{1000, eventPacket{code: 1, dur: 800, end: true}, evIgnore},
		{1000, eventPacket{code: 1, dur: 800, end: true}, evIgnore},
		// First packets lost: the first seen is an update.
		{9000, eventPacket{code: 1, dur: 480}, evBegin},
		{9000, eventPacket{code: 1, dur: 800, end: true}, evEnd},
		// Only the ends arrive.
		{20000, eventPacket{code: 2, dur: 640, end: true}, evBegin},
		{20000, eventPacket{code: 2, dur: 640, end: true}, evIgnore},
		// A late packet of an older event.
		{9000, eventPacket{code: 1, dur: 800, end: true}, evIgnore},
		// The same code again, new timestamp: a new event. Then another
		// code at the same timestamp.
		{30000, eventPacket{code: 2, dur: 160}, evBegin},
		{30000, eventPacket{code: 3, dur: 160}, evBegin},
		// Timestamps wrap.
		{0x60000000, eventPacket{code: 4, dur: 160}, evBegin},
		{0xc0000000, eventPacket{code: 4, dur: 160}, evBegin},
		{0x100, eventPacket{code: 5, dur: 160}, evBegin},
	}
	for i, s := range steps {
		if got := tr.note(s.ts, s.ev); got != s.want {
			t.Fatalf("step %d (%+v at %d): %d, want %d", i, s.ev, s.ts, got, s.want)
		}
	}
	if !tr.open() {
		t.Fatal("last event should be open")
	}
	tr.close()
	if tr.open() || tr.note(0x100, eventPacket{code: 5, dur: 320}) != evIgnore {
		t.Fatal("closed event took an update")
	}
}

package wasim

import (
	"encoding/binary"
	"testing"
	"time"
)

// The caller's digits, packet by packet, are what RFC 4733 asks for, and the
// receiver reads them back one per event even when an event's first packets
// are lost.
func TestDTMFPlanAndReceiver(t *testing.T) {
	plan := newDTMFPlan("19#", time.Second, 20*time.Millisecond)
	var rx, lossy dtmfReceiver
	payload := make([]byte, 4)
	var eventTS uint32
	ends := 0
	for n := 1; n < 200; n++ {
		ts := uint32(n * 960)
		k, ok := plan.packet(n, payload)
		if !ok {
			continue
		}
		if n < 51 {
			t.Fatalf("DTMF at frame %d, before 1 s", n)
		}
		if k == 0 {
			eventTS = ts
		}
		dur := binary.BigEndian.Uint16(payload[2:])
		if end := payload[1]&0x80 != 0; end {
			ends++
			if dur != 800 {
				t.Fatalf("end packet duration %d, want 800 (100 ms in 8 kHz units)", dur)
			}
		} else if int(dur) != (k+1)*160 {
			t.Fatalf("update %d duration %d", k, dur)
		}
		rx.add(eventTS, payload)
		if k >= 2 { // the first two packets of every event are lost
			lossy.add(eventTS, payload)
		}
	}
	if ends != 9 {
		t.Fatalf("%d end packets, want 3 per digit", ends)
	}
	if got := string(rx.digits); got != "19#" {
		t.Fatalf("received %q", got)
	}
	if got := string(lossy.digits); got != "19#" {
		t.Fatalf("with lost starts received %q", got)
	}
	if err := validateDigits("12x"); err == nil {
		t.Fatal("x accepted as a digit")
	}
}

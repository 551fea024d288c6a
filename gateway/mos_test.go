package gateway

import (
	"math"
	"testing"
	"time"
)

func TestRToMOS(t *testing.T) {
	for _, c := range []struct{ r, mos float64 }{
		{-5, 1}, {0, 1}, {50, 2.58}, {70, 3.60}, {80, 4.02}, {93.2, 4.41}, {100, 4.5}, {120, 4.5},
	} {
		if got := rToMOS(c.r); math.Abs(got-c.mos) > 0.01 {
			t.Errorf("R %.1f: MOS %.3f, want %.2f", c.r, got, c.mos)
		}
	}
}

func TestEstimateMOS(t *testing.T) {
	// A clean G.711 leg alone (no Opus): R = 93.2 - 0.024*80 = 91.28.
	if got := estimateMOS(impG711, nil, 0, 0); math.Abs(got-rToMOS(93.2-0.024*80)) > 1e-9 {
		t.Errorf("clean G.711: %.3f", got)
	}
	// A clean transcoded call is good but below G.711 alone: Opus adds its Ie.
	clean := estimateMOS(impOpus, &impG711, 0, 0)
	if clean < 3.9 || clean > 4.2 {
		t.Errorf("clean opus+G.711: MOS %.2f, want about 4.05", clean)
	}
	// Loss and jitter only lower it, and steadily.
	prev := clean
	for _, loss := range []float64{0.5, 1, 2, 5, 10, 20} {
		m := estimateMOS(impOpus, &impG711, loss, 0)
		if m >= prev {
			t.Errorf("loss %.1f%%: MOS %.2f not below %.2f", loss, m, prev)
		}
		prev = m
	}
	if m := estimateMOS(impOpus, &impG711, 5, 0); m < 3.0 || m > 3.6 {
		t.Errorf("5%% loss: MOS %.2f, want about 3.3", m)
	}
	if m := estimateMOS(impOpus, &impG711, 0, 60); m >= clean || m < 3.5 {
		t.Errorf("60 ms jitter: MOS %.2f, want a little below %.2f", m, clean)
	}
	if m := estimateMOS(impOpus, &impG711, 100, 500); m != 1 {
		t.Errorf("everything lost: MOS %.2f, want 1", m)
	}
	// Out-of-range inputs are clamped, not propagated.
	if m := estimateMOS(impG711, nil, -3, -10); m != estimateMOS(impG711, nil, 0, 0) {
		t.Errorf("negative inputs: %.2f", m)
	}
}

func TestDirectionMOS(t *testing.T) {
	toSIP, toWA := directionMOS("PCMU", 0, 1, 4, 1)
	if toWA >= toSIP {
		t.Errorf("loss on the SIP leg should lower what the caller hears: to sip %.2f, to whatsapp %.2f", toSIP, toWA)
	}
	pt, _ := directionMOS("opus", 0, 0, 0, 0)
	tr, _ := directionMOS("PCMA", 0, 0, 0, 0)
	if pt < tr {
		t.Errorf("passthrough %.2f should be no worse than transcoding %.2f", pt, tr)
	}
	if lossPct(0, 0) != 0 || lossPct(90, 10) != 10 {
		t.Error("lossPct")
	}
}

type fakeReader struct{ pkts [][]byte }

func (f *fakeReader) ReadPacket(b []byte) (int, error) {
	p := f.pkts[0]
	f.pkts = f.pkts[1:]
	return copy(b, p), nil
}

func rtpHeader(pt uint8, seq uint16, ts, ssrc uint32) []byte {
	return []byte{0x80, pt, byte(seq >> 8), byte(seq), byte(ts >> 24), byte(ts >> 16), byte(ts >> 8), byte(ts),
		byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc), 0xff}
}

func TestJitterMeter(t *testing.T) {
	m := newJitterMeter(nil, 0, 8000)
	start := time.Unix(1000, 0)
	// Perfectly paced packets: no jitter.
	for i := range 50 {
		m.observe(uint32(i*160), 1, start.Add(time.Duration(i)*20*time.Millisecond))
	}
	if m.Jitter() != 0 {
		t.Fatalf("paced stream: jitter %v", m.Jitter())
	}
	// Arrivals alternating 10 ms early and late: |D| = 20 ms each time, so
	// the estimate converges on 20 ms.
	for i := 50; i < 400; i++ {
		off := 10 * time.Millisecond
		if i%2 == 0 {
			off = -off
		}
		m.observe(uint32(i*160), 1, start.Add(time.Duration(i)*20*time.Millisecond+off))
	}
	if j := m.Jitter(); j < 19*time.Millisecond || j > 21*time.Millisecond {
		t.Fatalf("alternating ±10 ms: jitter %v, want about 20 ms", j)
	}

	// Through ReadPacket: other payload types are not measured.
	r := &fakeReader{pkts: [][]byte{rtpHeader(0, 1, 0, 7), rtpHeader(101, 2, 0, 7), rtpHeader(0, 3, 160, 7)}}
	jm := newJitterMeter(r, 0, 8000)
	b := make([]byte, 1500)
	for range 3 {
		if _, err := jm.ReadPacket(b); err != nil {
			t.Fatal(err)
		}
	}
	if !jm.have || jm.lastTS != 160 {
		t.Fatalf("meter state after reads: have %v ts %d", jm.have, jm.lastTS)
	}
}

func TestCodecPathLabel(t *testing.T) {
	for in, want := range map[string]string{"PCMU": "opus-pcmu", "G722": "opus-g722", "opus": "opus-passthrough", "": ""} {
		if got := codecPath(in); got != want {
			t.Errorf("codecPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJitterMeterFollowsCodecSwitch(t *testing.T) {
	// PCMU (PT 0, 8 kHz) then G.722 (PT 9, clock 8000) then Opus (PT 111, 48 kHz).
	r := &fakeReader{}
	m := newJitterMeter(r, 0, 8000)
	b := make([]byte, 1500)
	r.pkts = append(r.pkts, rtpHeader(0, 1, 0, 5), rtpHeader(0, 2, 160, 5))
	m.ReadPacket(b)
	m.ReadPacket(b)
	if m.lastTS != 160 {
		t.Fatalf("PCMU not measured: ts %d", m.lastTS)
	}
	m.retarget(111, 48000)
	r.pkts = append(r.pkts, rtpHeader(0, 3, 320, 5), rtpHeader(111, 4, 96000, 5))
	m.ReadPacket(b) // the old payload type is no longer measured
	if m.have {
		t.Fatal("the switch did not restart the estimate")
	}
	m.ReadPacket(b)
	if !m.have || m.lastTS != 96000 || m.clock != 48000 || m.pt != 111 {
		t.Fatalf("after the switch: have %v ts %d clock %v pt %d", m.have, m.lastTS, m.clock, m.pt)
	}
}

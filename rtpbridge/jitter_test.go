package rtpbridge

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// A steady stream has no jitter; one whose packets come alternately 10 ms
// early and late has |D| = 20 ms each time, which the estimate converges on
// (RFC 3550 §6.4.1).
func TestInterarrivalJitter(t *testing.T) {
	var out atomic.Int64
	e := newInterarrivalJitter(8000, &out)
	ms := int64(time.Millisecond)
	for i := range 50 {
		e.observe(uint32(i*160), 1, int64(i)*20*ms)
	}
	if out.Load() != 0 {
		t.Fatalf("paced stream: jitter %v", time.Duration(out.Load()))
	}
	for i := 50; i < 400; i++ {
		off := 10 * ms
		if i%2 == 0 {
			off = -off
		}
		e.observe(uint32(i*160), 1, int64(i)*20*ms+off)
	}
	if j := time.Duration(out.Load()); j < 19*time.Millisecond || j > 21*time.Millisecond {
		t.Fatalf("alternating ±10 ms: jitter %v, want about 20 ms", j)
	}
	// A codec change to a 48 kHz clock: the estimate, a time, carries
	// over, and the first packet of the new timestamps is no sample (the
	// second, on time, is: D = 0).
	before := out.Load()
	e.setClock(48000)
	e.observe(7_000_000, 1, 400*20*ms)
	e.observe(7_000_000+960, 1, 401*20*ms)
	if j := out.Load(); math.Abs(float64(j)-float64(before)*15/16) > float64(time.Microsecond) {
		t.Fatalf("after the clock change: jitter %v, was %v", time.Duration(j), time.Duration(before))
	}
	// A timestamp jump of the same source is a restart, not jitter.
	before = out.Load()
	e.observe(900_000_000, 1, 402*20*ms)
	if out.Load() != before {
		t.Fatalf("timestamp restart moved the jitter to %v", time.Duration(out.Load()))
	}
	// A new SSRC starts the estimate afresh (jitter is per source).
	e.observe(5, 2, 403*20*ms)
	if out.Load() != 0 {
		t.Fatalf("new source: jitter %v", time.Duration(out.Load()))
	}
}

// jitterClock hands out arrival times alternately off ±off from a 20 ms
// schedule, one per packet read.
type jitterClock struct {
	i   int64
	off time.Duration
}

func (c *jitterClock) now() int64 {
	t := c.i * int64(20*time.Millisecond)
	if c.i%2 == 0 {
		t += int64(c.off)
	} else {
		t -= int64(c.off)
	}
	c.i++
	return t
}

// Through the bridge: each direction measures its input's audio packets
// with the clock read it makes per packet; telephone-events are not
// measured; a SIP codec change is followed.
func TestBridgeMeasuresJitter(t *testing.T) {
	b, _, _ := newDrivenBridgeWith(t, Config{SIPCodec: pcmu, SIPDTMFPayloadType: 101})
	waClock, sipClock := &jitterClock{off: 5 * time.Millisecond}, &jitterClock{off: 2 * time.Millisecond}
	b.w2s.now, b.s2w.now = waClock.now, sipClock.now

	src := newWhatsAppSender(t, 1000, 8000, 20, false)
	for range 300 {
		b.handleWhatsAppPacket(src.next())
	}
	pbx := newPBXSender(t, 101)
	for _, p := range pbxTone(t, pbx, pcmu, 1000, 300) {
		b.handleSIPPacket(p)
	}
	st := b.Stats()
	if j := st.WhatsAppToSIP.JitterMs; math.Abs(j-10) > 0.5 {
		t.Fatalf("whatsapp→sip jitter %.2f ms, want about 10", j)
	}
	if j := st.SIPToWhatsApp.JitterMs; math.Abs(j-4) > 0.3 {
		t.Fatalf("sip→whatsapp jitter %.2f ms, want about 4", j)
	}
	if st.MOS <= 1 || st.MOS > 4.5 || st.MOS != min(st.WhatsAppToSIP.MOS, st.SIPToWhatsApp.MOS) {
		t.Fatalf("MOS %v (directions %v, %v)", st.MOS, st.WhatsAppToSIP.MOS, st.SIPToWhatsApp.MOS)
	}

	// A telephone-event is not audio: it reads no clock for jitter.
	reads := waClock.i
	ev := src.next()
	ev[1] = metaDTMFPT
	binary.BigEndian.PutUint32(ev[12:], 0x0100_00a0) // digit 1, volume 0, duration 160
	b.handleWhatsAppPacket(ev[:16])
	if waClock.i != reads {
		t.Fatal("a telephone-event was measured")
	}

	// G.722 on PT 9 after a re-INVITE, the same source: its packets are
	// measured, the old payload type's are not audio any more.
	if err := b.SetSIPCodec(g722Codec, 101); err != nil {
		t.Fatal(err)
	}
	reads = sipClock.i
	b.handleSIPPacket(pbxTone(t, pbx, pcmu, 1000, 1)[0])
	if sipClock.i != reads {
		t.Fatal("the old payload type was measured")
	}
	for _, p := range pbxTone(t, pbx, g722Codec, 1000, 10) {
		b.handleSIPPacket(p)
	}
	if sipClock.i != reads+10 {
		t.Fatalf("%d G.722 packets measured, want 10", sipClock.i-reads)
	}
	// Then Opus on its 48 kHz clock: the estimate follows the clock (on
	// the old one the same jitter would read six times larger).
	if err := b.SetSIPCodec(opusSIP, 101); err != nil {
		t.Fatal(err)
	}
	pbx.frame = 960
	for _, p := range pbxTone(t, pbx, opusSIP, 1000, 100) {
		b.handleSIPPacket(p)
	}
	if j := b.Stats().SIPToWhatsApp.JitterMs; math.Abs(j-4) > 0.3 {
		t.Fatalf("sip→whatsapp jitter %.2f ms on Opus, want about 4", j)
	}
}

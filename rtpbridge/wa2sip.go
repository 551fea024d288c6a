package rtpbridge

import (
	"fmt"
	"sync/atomic"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// WhatsApp → SIP: Opus packets of any duration (10-60 ms in practice, up to
// libopus's 120 ms) in, 20 ms packets of the SIP codec out, one per 20 ms
// of audio, with the bridge's own SSRC, sequence and timestamps. Loss is
// filled from in-band FEC or by concealment so the PBX hears no gap; pauses
// in WhatsApp's stream (DTX, telephone-events) become a timestamp jump with
// the marker bit. Packets ahead of a gap wait a moment in a small reorder
// window. When the PBX speaks Opus too, packets pass through with new
// headers only; so do G.711 packets from a WhatsApp leg that negotiated
// the PBX's G.711 codec. Telephone-events go on as RFC 4733 events, as
// tones, or only to OnDigit (wa2sip_dtmf.go). One goroutine (the WhatsApp
// reader) runs it all.

const (
	opusClock = 48000 // RTP clock of Opus whatever the PCM rate (RFC 7587 §4.1)
	// maxConcealMs bounds concealment: a longer gap is not made up but
	// jumped over (timestamp jump, marker bit).
	maxConcealMs = 100
	// maxOpusMs is the longest Opus packet (RFC 6716 §3.2.5).
	maxOpusMs = 120
	// maxJumpMs bounds the timestamp jump that bridges a pause; beyond it
	// the timestamps are not believed and only the marker bit is set.
	maxJumpMs = 10_000
)

// opusDecodeStage decodes Opus at the SIP codec's PCM rate and fills gaps.
type opusDecodeStage struct {
	dec  *opus.Decoder
	rate int
}

func (s *opusDecodeStage) String() string {
	return fmt.Sprintf("opus decode %dk (fec/plc)", s.rate/1000)
}

type waToSIP struct {
	src     label
	wa      *waCodec                  // WhatsApp's codec and payload type, as its offer negotiated them
	eventPT uint8                     // 0: none negotiated
	pub     *atomic.Pointer[sipSetup] // the setup to use; taken up at the next packet
	setup   *sipSetup                 // the setup in use
	reorder reorderWindow
	track   seqTracker
	out     *rtpSender
	c       *dirCounters
	now     func() int64 // the bridge's monotonic clock, ns
	jitter  interarrivalJitter

	// Transcoding, from the setup.
	dec        *opusDecodeStage
	frames     *framer
	codec      *sipCodec
	tsPerFrame uint32 // SIP RTP timestamp units per frame
	ratio      int    // Opus clock units per PCM sample (6 at 8 kHz)
	quantum    int    // samples in 2.5 ms, the unit of concealment
	maxConceal int32  // longest gap concealed, in Opus clock units
	maxJump    int32  // longest pause bridged by a timestamp jump, in WhatsApp clock units

	// Passthrough: SIP timestamp = WhatsApp timestamp + passOff.
	passOff    uint32
	passSynced bool

	dtmf toSIPDTMF
}

func newWAToSIP(wa *waCodec, eventPT uint8, pub *atomic.Pointer[sipSetup], dtmf toSIPDTMF, now func() int64, out *rtpSender, c *dirCounters) *waToSIP {
	d := &waToSIP{
		src:        label(fmt.Sprintf("whatsapp %s/%d", wa.name, wa.clock)),
		wa:         wa,
		eventPT:    eventPT,
		pub:        pub,
		out:        out,
		c:          c,
		now:        now,
		jitter:     newInterarrivalJitter(wa.clock, &c.jitterNs),
		dtmf:       dtmf,
		maxConceal: opusClock * maxConcealMs / 1000,
		maxJump:    int32(wa.clock / 1000 * maxJumpMs),
	}
	d.reorder.span = int32(wa.clock * reorderMs / 1000)
	d.adopt(pub.Load())
	return d
}

// chainOf prints the direction as it runs with setup s.
func (d *waToSIP) chainOf(s *sipSetup) chain {
	c := chain{d.src, &d.reorder}
	if st := d.dtmf.stage(s); st != nil {
		c = append(c, st)
	}
	return append(append(c, s.w2sStages...), d.out)
}

// adopt takes up setup s: what is pending in the old codec's framer goes
// out first; the stream toward the PBX keeps its SSRC, sequence and
// timestamps, and marks the change.
func (d *waToSIP) adopt(s *sipSetup) {
	if d.setup != nil {
		d.dtmf.finish(d)
		if !d.codec.passthrough {
			if fr, _, ok := d.frames.flush(); ok {
				d.emit(fr)
			}
		}
		d.out.mark()
	}
	d.setup, d.codec = s, s.codec
	d.passSynced = false
	d.dtmf.adopt(s)
	if s.codec.passthrough {
		d.dec, d.frames = nil, nil
		return
	}
	rate := s.codec.pcmRate
	d.dec, d.frames = s.decStage, s.frames
	d.tsPerFrame = s.frame.sipTS
	d.ratio = opusClock / rate
	d.quantum = rate / 400
}

// handle takes one RTP packet from WhatsApp.
func (d *waToSIP) handle(pkt []byte) {
	c := d.c
	c.packetsIn.Add(1)
	c.bytesIn.Add(uint64(len(pkt)))
	if s := d.pub.Load(); s != d.setup {
		d.adopt(s)
	}
	h, payload, ok := parseRTP(pkt)
	if !ok {
		c.malformed.Add(1)
		return
	}
	var dur uint32
	switch {
	case h.pt == d.wa.pt:
		var ok bool
		if dur, ok = d.wa.units(payload); !ok {
			c.malformed.Add(1)
			return
		}
		d.jitter.observe(h.ts, h.ssrc, d.now())
	case d.isEvent(h.pt):
		c.telephoneEvents.Add(1)
		if len(payload) < eventPayloadLen {
			c.malformed.Add(1)
			return
		}
	default:
		c.otherPT.Add(1)
		return
	}
	d.arrive(h, payload, dur)
}

// isEvent reports whether pt is WhatsApp's telephone-event payload type.
func (d *waToSIP) isEvent(pt uint8) bool { return d.eventPT != 0 && pt == d.eventPT }

// arrive puts a packet through the reorder window: the expected packet
// goes on at once (and with it any held ones that now follow), one ahead
// of a gap waits until the window gives up on the gap.
func (d *waToSIP) arrive(h rtpHeader, payload []byte, dur uint32) {
	switch v, _ := d.track.check(h.seq, h.ssrc); v {
	case seqNext:
		if d.reorder.n > 0 {
			d.c.reordered.Add(1) // later packets came before it
		}
		d.process(h, payload, dur)
		d.releaseReady()
	case seqLate:
		d.c.late.Add(1)
	case seqGap:
		if d.reorder.holds(h.seq) || !d.reorder.put(h, payload, dur) {
			d.c.late.Add(1) // a duplicate of a held packet
			return
		}
		for d.reorder.n > 0 && d.reorder.full(d.track.nextTS) {
			d.releaseFirst()
		}
	case seqRestart:
		for d.reorder.n > 0 {
			d.releaseFirst()
		}
		d.process(h, payload, dur)
	}
}

// releaseReady processes held packets for as long as the next one expected
// is among them.
func (d *waToSIP) releaseReady() {
	for d.reorder.n > 0 {
		p, ok := d.reorder.take(d.track.next)
		if !ok {
			return
		}
		d.process(p.h, p.payload(), p.dur)
	}
}

// releaseFirst gives up on the gap before the first held packet: it goes
// on as after a loss, then whatever follows it.
func (d *waToSIP) releaseFirst() {
	if p, ok := d.reorder.takeFirst(d.track.next); ok {
		d.process(p.h, p.payload(), p.dur)
	}
	d.releaseReady()
}

// process handles one packet in sequence order.
func (d *waToSIP) process(h rtpHeader, payload []byte, dur uint32) {
	v, missing := d.track.check(h.seq, h.ssrc)
	if v == seqLate { // cannot happen: the window passes packets on in order
		d.c.late.Add(1)
		return
	}
	if d.isEvent(h.pt) {
		d.telephoneEvent(h, payload, v, missing)
		return
	}
	if d.dtmf.takesAudio(d, h, v, missing) {
		return
	}
	if d.codec.passthrough {
		d.forward(h, payload, dur, v, missing)
		return
	}
	c := d.c
	samples := int(dur) / d.ratio
	switch v {
	case seqRestart:
		if d.track.started {
			c.resets.Add(1)
		}
		d.discontinuity(0)
	case seqGap:
		c.lost.Add(uint64(missing))
		d.fillGap(h.ts, missing, payload)
	case seqNext:
		// Contiguous sequence but a later timestamp: the sender paused
		// (DTX, or telephone-events in place of audio).
		if gap := d.track.tsGap(h.ts); gap >= int32(d.quantum*d.ratio) {
			c.discontinuities.Add(1)
			d.discontinuity(gap)
		}
	}
	d.track.accept(h.seq, h.ssrc, h.ts, dur)
	d.decode(payload, samples)
}

// consume moves the sequence on over a packet that carries no audio for
// the PBX (a telephone-event, or audio an event replaces).
func (d *waToSIP) consume(h rtpHeader, v seqVerdict, missing int) {
	switch v {
	case seqGap:
		d.c.lost.Add(uint64(missing))
		d.track.skip(h.seq)
	case seqNext:
		d.track.skip(h.seq)
	}
}

// forward sends a packet on to a PBX of the same codec (Opus, or the
// WhatsApp leg's G.711): new payload type, SSRC, sequence number and
// timestamp, same payload; both sides' clocks are the codec's. Loss stays
// visible as a sequence gap (the PBX's FEC and PLC need to see it);
// WhatsApp's pauses stay timestamp jumps; a new WhatsApp stream continues
// the PBX's timeline where it was.
func (d *waToSIP) forward(h rtpHeader, payload []byte, dur uint32, v seqVerdict, missing int) {
	c := d.c
	switch v {
	case seqRestart:
		if d.track.started {
			c.resets.Add(1)
		}
		d.passSynced = false
	case seqGap:
		c.lost.Add(uint64(missing))
		d.out.skipSeq(uint16(missing))
	}
	d.track.accept(h.seq, h.ssrc, h.ts, dur)
	if !d.passSynced {
		d.passOff = d.out.ts - h.ts
		d.passSynced = true
		d.out.mark()
	}
	ts := h.ts + d.passOff
	if d.dtmf.hold && int32(d.dtmf.holdUntil-ts) > 0 {
		// An event was relayed at the current time: the audio after it
		// moves behind it.
		d.passOff += d.dtmf.holdUntil - ts
		ts = d.dtmf.holdUntil
		d.out.mark()
	}
	d.dtmf.hold = false
	d.out.setTS(ts)
	if d.dtmf.slot(d, nil, dur) {
		return
	}
	n := copy(d.out.payload(), payload)
	d.out.send(d.codec.pt, n, dur)
}

// fillGap makes up for missing packets before an Opus packet stamped ts:
// their duration comes from the timestamps (the missing packets may have
// been telephone-events, which hold no audio). The last lost frame comes
// from the packet's in-band FEC when it has some; the rest is concealed.
func (d *waToSIP) fillGap(ts uint32, missing int, payload []byte) {
	c := d.c
	gap := d.track.tsGap(ts)
	if gap < 0 || int64(gap) > int64(missing)*int64(opusClock*maxOpusMs/1000) {
		// The timestamps do not fit the sequence numbers: start afresh.
		c.resets.Add(1)
		d.discontinuity(0)
		return
	}
	if gap > d.maxConceal {
		c.resets.Add(1)
		d.discontinuity(gap)
		return
	}
	n := int(gap) / d.ratio
	n -= n % d.quantum
	if n == 0 {
		return
	}
	buf := d.frames.space(n)
	if opusHasFEC(payload) {
		if m, err := d.dec.dec.DecodeFEC(payload, buf); err == nil && m == n {
			d.frames.wrote(n)
			c.fecRecovered.Add(1)
			c.concealed.Add(uint64(missing - 1))
			d.drain()
			return
		}
	}
	if m, err := d.dec.dec.Conceal(buf); err == nil && m == n {
		d.frames.wrote(n)
		c.concealed.Add(uint64(missing))
		d.drain()
	}
}

// discontinuity ends the current run of audio: what is pending goes out
// padded with silence, the timestamp jumps over the pause (gap Opus clock
// units, 0 if unknown) and the next packet carries the marker bit.
func (d *waToSIP) discontinuity(gap int32) {
	if d.codec.passthrough {
		return
	}
	if fr, padding, ok := d.frames.flush(); ok {
		d.emit(fr)
		gap -= int32(padding * d.ratio)
	}
	if gap > 0 && gap <= d.maxJump {
		d.out.skip(uint32(int64(gap) * int64(d.codec.clock) / opusClock))
	}
	d.out.mark()
}

// decode decodes one Opus packet of samples samples and sends every whole
// frame. A packet libopus refuses is concealed instead, so the stream stays
// whole.
func (d *waToSIP) decode(payload []byte, samples int) {
	buf := d.frames.space(samples)
	if buf == nil { // cannot happen: the framer holds the longest packet
		d.c.malformed.Add(1)
		return
	}
	m, err := d.dec.dec.Decode(payload, buf)
	if err != nil || m != samples {
		d.c.malformed.Add(1)
		n := samples - samples%d.quantum
		if n == 0 {
			return
		}
		if m, err = d.dec.dec.Conceal(buf[:n]); err != nil || m != n {
			return
		}
		d.c.concealed.Add(1)
		samples = n
	}
	d.frames.wrote(samples)
	d.drain()
}

// drain sends every whole frame waiting in the framer.
func (d *waToSIP) drain() {
	for {
		fr, ok := d.frames.next()
		if !ok {
			return
		}
		d.emit(fr)
	}
}

// emit sends one frame of audio to the PBX, unless a digit takes its place
// (as an event, or as a tone written over it), and never before the end of
// an event relayed at the current time.
func (d *waToSIP) emit(fr []int16) {
	if d.dtmf.hold {
		if lag := int32(d.dtmf.holdUntil - d.out.ts); lag > 0 {
			d.out.skip(uint32(lag))
			d.out.mark()
		}
		d.dtmf.hold = false
	}
	if d.dtmf.slot(d, fr, d.tsPerFrame*d.wa.clock/d.codec.clock) {
		return
	}
	d.encodeSend(fr)
}

// encodeSend encodes one frame and sends it.
func (d *waToSIP) encodeSend(fr []int16) {
	n := d.codec.bytesFor(len(fr))
	d.codec.encode(fr, d.out.payload()[:n])
	d.out.send(d.codec.pt, n, d.tsPerFrame)
}

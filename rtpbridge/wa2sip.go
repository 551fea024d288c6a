package rtpbridge

import (
	"fmt"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// WhatsApp → SIP: Opus packets of any duration (10-60 ms in practice, up to
// libopus's 120 ms) in, 20 ms G.711 packets out, one per 20 ms of audio, with
// the bridge's own SSRC, sequence and timestamps. Loss is filled from
// in-band FEC or by concealment so the PBX hears no gap; pauses in WhatsApp's
// stream (DTX, telephone-events) become a timestamp jump with the marker bit.
// One goroutine (the WhatsApp reader) runs it all.

const (
	opusClock        = 48000 // RTP clock of Opus whatever the PCM rate (RFC 7587 §4.1)
	telephoneEventPT = 126   // WhatsApp's RFC 4733 payload type
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
	src    label
	opusPT uint8
	track  seqTracker
	dec    opusDecodeStage
	frames *framer
	enc    codecStage
	out    *rtpSender
	c      *dirCounters

	codec      *sipCodec
	tsPerFrame uint32 // SIP RTP timestamp units per frame
	ratio      int    // Opus clock units per PCM sample (6 at 8 kHz)
	quantum    int    // samples in 2.5 ms, the unit of concealment
	maxSamples int    // samples in the longest Opus packet
	maxConceal int32  // longest gap concealed, in Opus clock units
	maxJump    int32  // longest pause bridged by a timestamp jump, in Opus clock units
}

func newWAToSIP(opusPT uint8, dec *opus.Decoder, codec *sipCodec, f frameSpec, out *rtpSender, c *dirCounters) *waToSIP {
	rate := codec.pcmRate
	maxSamples := rate * maxOpusMs / 1000
	return &waToSIP{
		src:        label("whatsapp opus/48000"),
		opusPT:     opusPT,
		dec:        opusDecodeStage{dec: dec, rate: rate},
		frames:     newFramer(f.samples, f.d, max(maxSamples, rate*maxConcealMs/1000)),
		enc:        codecStage{c: codec, op: "encode"},
		out:        out,
		c:          c,
		codec:      codec,
		tsPerFrame: f.sipTS,
		ratio:      opusClock / rate,
		quantum:    rate / 400,
		maxSamples: maxSamples,
		maxConceal: opusClock * maxConcealMs / 1000,
		maxJump:    opusClock / 1000 * maxJumpMs,
	}
}

func (d *waToSIP) chain() chain {
	return chain{d.src, &d.dec, d.frames, d.enc, d.out}
}

// handle takes one RTP packet from WhatsApp.
func (d *waToSIP) handle(pkt []byte) {
	c := d.c
	c.packetsIn.Add(1)
	c.bytesIn.Add(uint64(len(pkt)))
	h, payload, ok := parseRTP(pkt)
	if !ok {
		c.malformed.Add(1)
		return
	}
	switch h.pt {
	case d.opusPT:
	case telephoneEventPT:
		c.telephoneEvents.Add(1)
		d.telephoneEvent(h, payload)
		return
	default:
		c.otherPT.Add(1)
		return
	}
	if len(payload) == 0 {
		c.malformed.Add(1)
		return
	}
	samples, err := opus.PacketSamples(payload, d.codec.pcmRate)
	if err != nil || samples <= 0 || samples > d.maxSamples {
		c.malformed.Add(1)
		return
	}

	switch v, missing := d.track.check(h.seq, h.ssrc); v {
	case seqLate:
		c.late.Add(1)
		return
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
	d.track.accept(h.seq, h.ssrc, h.ts, uint32(samples*d.ratio))
	d.decode(payload, samples)
}

// telephoneEvent takes an RFC 4733 packet. WhatsApp sends them in the audio
// packets' sequence space, so they move the expected sequence number on
// (they are not losses); their digits are not relayed yet.
func (d *waToSIP) telephoneEvent(h rtpHeader, _ []byte) {
	switch v, missing := d.track.check(h.seq, h.ssrc); v {
	case seqGap:
		d.c.lost.Add(uint64(missing))
		d.track.skip(h.seq)
	case seqNext:
		d.track.skip(h.seq)
	}
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

// emit encodes one frame and sends it to the PBX.
func (d *waToSIP) emit(fr []int16) {
	n := d.codec.bytesFor(len(fr))
	d.codec.encode(fr, d.out.payload()[:n])
	d.out.send(d.codec.pt, n, d.tsPerFrame)
}

package rtpbridge

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// SIP → WhatsApp: the SIP reader decodes the PBX's packets (any ptime) into
// the playout buffer (Opus from an Opus-speaking PBX, or G.711 toward a
// WhatsApp leg of the same law, goes in as it is); the pacer takes one
// frame from it every 20 ms (silence when it holds none), encodes it to
// Opus and sends it with the one WhatsApp SSRC, sequence +1, timestamp
// +960 (+160 for G.711's 8 kHz clock). Whatever the PBX does (new SSRC on transfer or music on
// hold, a codec change, comfort noise, silence suppression, hold) the
// stream toward WhatsApp goes on unbroken. The playout buffer and the digit
// queue are the only state the two goroutines share.

const (
	// Opus encoder settings toward WhatsApp, chosen from
	// BenchmarkOpusEncodeSettings (docs/media.md, "Opus settings toward
	// WhatsApp"). libopus 1.3 puts in-band FEC into the packets only above
	// a bitrate that grows with the loss figure and the bandwidth: at 16
	// kbit/s narrowband it put none in (FEC "on" changed nothing), so
	// narrowband (from G.711) gets 24 kbit/s and wideband (from G.722) 28,
	// where FEC is in every speech frame; WhatsApp itself sends 20-30 kbit/s
	// with FEC. A loss figure of 5 rather than 10 scored better with and
	// without loss at both rates, and at 5 % or less libopus never narrows
	// the bandwidth to make room for FEC (above 5 % it drops wideband to
	// mediumband when the bitrate is short). The loss figure must not be 0:
	// libopus adds no FEC then.
	opusBitrateNB    = 24000
	opusBitrateWB    = 28000
	opusLossPercent  = 5
	maxSIPPayloadLen = maxPacket
	maxPCMRate       = 16000 // G.722
)

// opusEncodeStage encodes one frame per pacer tick.
type opusEncodeStage struct {
	enc   *opus.Encoder
	rate  int
	frame frameSpec
}

func (s *opusEncodeStage) String() string {
	return fmt.Sprintf("opus encode %dk (%v pacer)", s.rate/1000, s.frame.d)
}

type sipToWhatsApp struct {
	// The SIP reader's side.
	pub     *atomic.Pointer[sipSetup]
	setup   *sipSetup // the setup the SIP reader uses
	track   seqTracker
	scratch []int16      // one decoded packet; made for the first one (none on a passthrough call)
	now     func() int64 // the bridge's monotonic clock, ns
	jitter  interarrivalJitter

	play *playout

	// The pacer's side. Every packet toward WhatsApp goes through out, from
	// the pacer goroutine, telephone-events included, so all share the
	// SSRC's one sequence space (RFC 3550 §5.1), as Meta's WhatsApp Cloud
	// API calling documentation asks of the media.
	pcm  []int16 // one frame
	out  *rtpSender
	wa   *waCodec // its payload type, clock and silence frame
	waTS uint32   // WhatsApp clock units per frame

	dtmf toWADTMF

	c *dirCounters
}

func newSIPToWhatsApp(pub *atomic.Pointer[sipSetup], wa *waCodec, dtmf toWADTMF, now func() int64, out *rtpSender, c *dirCounters) *sipToWhatsApp {
	d := &sipToWhatsApp{
		pub:  pub,
		now:  now,
		play: newPlayout(c),
		pcm:  make([]int16, maxPCMRate/50),
		out:  out,
		wa:   wa,
		waTS: pub.Load().frame.waTS,
		dtmf: dtmf,
		c:    c,
	}
	d.setup = pub.Load()
	d.jitter = newInterarrivalJitter(d.setup.codec.clock, &c.jitterNs)
	d.play.configure(d.setup)
	d.dtmf.adopt(d.setup)
	return d
}

// chainOf prints the direction as it runs with setup s.
func (d *sipToWhatsApp) chainOf(s *sipSetup) chain {
	c := chain{s.s2wSource, s.s2wDecode}
	if d.dtmf.detects(s) {
		c = append(c, d.dtmf.detector(s))
	}
	c = append(c, d.play, s.s2wEncode)
	if st := d.dtmf.stage(s); st != nil {
		c = append(c, st)
	}
	return append(c, d.out)
}

// adopt takes up a new setup on the SIP reader's side: the playout buffer
// starts afresh if the audio's form changes, and so does the stream.
func (d *sipToWhatsApp) adopt(s *sipSetup) {
	old := d.setup
	d.setup = s
	d.play.mu.Lock()
	if old.codec.passthrough != s.codec.passthrough || old.codec.pcmRate != s.codec.pcmRate {
		d.play.configureLocked(s)
	} else {
		d.play.setup = s
	}
	d.play.mu.Unlock()
	d.track = seqTracker{}
	d.jitter.setClock(s.codec.clock)
	d.dtmf.adopt(s)
}

// handle takes one RTP packet from the PBX (the SIP reader goroutine).
func (d *sipToWhatsApp) handle(pkt []byte) {
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
	switch {
	case h.pt == d.setup.codec.pt:
	case h.pt == ptComfortNoise && !d.setup.codec.isOpus():
		// The PBX went quiet (RFC 3389): the pacer plays silence until
		// audio comes again. The packet keeps its place in the sequence.
		c.comfortNoise.Add(1)
		d.consume(h)
		return
	case h.pt == d.setup.dtmfPT && d.setup.dtmfPT != 0:
		c.telephoneEvents.Add(1)
		d.consume(h)
		d.dtmf.event(d, h, payload)
		return
	default:
		c.otherPT.Add(1)
		return
	}
	if len(payload) == 0 || len(payload) > maxSIPPayloadLen {
		c.malformed.Add(1)
		return
	}
	var dur uint32 // RTP timestamp units
	if d.setup.codec.passthrough {
		var ok bool
		if dur, ok = payloadUnits(d.setup.codec.isOpus(), payload); !ok {
			c.malformed.Add(1)
			return
		}
	} else {
		dur = d.setup.codec.tsUnits(d.setup.codec.samplesIn(len(payload)))
	}
	now := d.now()
	d.jitter.observe(h.ts, h.ssrc, now)
	v, missing := d.track.check(h.seq, h.ssrc)
	switch v {
	case seqRestart:
		if d.track.started {
			c.resets.Add(1)
		}
		if d.setup.codec.reset != nil {
			d.setup.codec.reset() // a new stream: the ADPCM state starts afresh
		}
		d.dtmf.restart(d)
	case seqGap:
		c.lost.Add(uint64(missing))
	}
	if v != seqLate {
		d.track.accept(h.seq, h.ssrc, h.ts, dur)
	}
	d.dtmf.audio(d, h)
	var res putResult
	if d.setup.codec.passthrough {
		res = d.play.putPacket(h, payload, int64(dur), now)
	} else {
		n := d.setup.codec.samplesIn(len(payload))
		if n > len(d.scratch) { // the call's first decoded packet, or a codec with more samples a byte
			d.scratch = make([]int16, d.setup.codec.samplesIn(maxSIPPayloadLen))
		}
		pcm := d.scratch[:n]
		d.setup.codec.decode(payload, pcm)
		d.dtmf.detect(d, h, pcm)
		res = d.play.putPCM(h, pcm, now)
	}
	if v == seqLate {
		if res == putOK {
			// Out of order, but in time: it fills the hole it left.
			c.reordered.Add(1)
			c.lost.Add(^uint64(0))
		} else if res == putDuplicate {
			c.late.Add(1)
		}
	}
}

// consume moves the sequence on over a packet that holds no audio.
func (d *sipToWhatsApp) consume(h rtpHeader) {
	switch v, missing := d.track.check(h.seq, h.ssrc); v {
	case seqGap:
		d.c.lost.Add(uint64(missing))
		d.track.skip(h.seq)
	case seqNext:
		d.track.skip(h.seq)
	}
}

// sendFrame sends one packet toward WhatsApp (the pacer goroutine): the
// playout buffer's next frame, or a telephone-event in its place. behind
// is how late the pacer is with it; the result is the shift the buffer
// asks of the pacer's next tick.
func (d *sipToWhatsApp) sendFrame(behind time.Duration) (shift time.Duration) {
	// The buffer says which setup its audio belongs to: a codec change
	// reaches the pacer with the first audio of the new codec. It is given
	// the frame's due time, not now: its slack figures count from the
	// schedule, which a late tick does not move.
	// A passthrough packet goes straight into the sender's buffer (a
	// telephone-event sent in its place overwrites it).
	kind, n, dur, s, shift := d.play.get(d.now()-int64(behind), d.pcm, d.out.payload())
	if d.dtmf.slot(d) {
		return shift
	}
	f := s.frame
	if s.codec.passthrough {
		switch kind {
		case playPacket:
			d.out.send(d.wa.pt, n, uint32(dur))
		case playCovered: // the last packet lasts over this frame too
		default:
			d.c.silenceFrames.Add(1)
			d.out.send(d.wa.pt, copy(d.out.payload(), d.wa.silence), f.waTS)
		}
		return shift
	}
	pcm := d.pcm[:f.samples]
	if kind == playSilence {
		d.c.silenceFrames.Add(1)
	}
	n, err := s.enc.Encode(pcm, d.out.payload())
	if err != nil {
		d.c.encodeErrors.Add(1)
		d.out.skip(f.waTS)
		return shift
	}
	d.out.send(d.wa.pt, n, f.waTS)
	return shift
}

package rtpbridge

import (
	"fmt"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// SIP → WhatsApp: the SIP reader decodes G.711 packets of any ptime into a
// bounded PCM ring; the pacer takes one frame from it every 20 ms (silence
// when there is not enough), encodes it to Opus and sends it with the one
// WhatsApp SSRC, sequence +1, timestamp +960. The ring is the only state the
// two goroutines share.

const (
	// Opus encoder settings toward WhatsApp. The audio is narrowband (it
	// comes from G.711), for which 16 kbit/s is plenty; the loss figure makes
	// libopus actually put in-band FEC into the packets (it adds none at 0 %).
	opusBitrate      = 16000
	opusLossPercent  = 10
	bufferMs         = 100 // depth of the SIP→WhatsApp PCM ring
	maxSIPPayloadLen = maxPacket
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
	src     label
	codec   *sipCodec
	track   seqTracker
	dec     codecStage
	scratch []int16 // one decoded packet

	ring *pcmRing

	// The pacer's side. Every packet toward WhatsApp goes through out, from
	// the pacer goroutine: telephone-events (PT 126), when DTMF is relayed,
	// are to be sent from there too so they share its sequence numbers
	// (whatsapp-calling.md, media rules).
	enc    opusEncodeStage
	pcm    []int16 // one frame
	out    *rtpSender
	opusPT uint8

	c *dirCounters
}

func newSIPToWhatsApp(codec *sipCodec, enc *opus.Encoder, f frameSpec, opusPT uint8, out *rtpSender, c *dirCounters) *sipToWhatsApp {
	return &sipToWhatsApp{
		src:     label(fmt.Sprintf("sip %s/%d", codec.name, codec.clock)),
		codec:   codec,
		dec:     codecStage{c: codec, op: "decode"},
		scratch: make([]int16, codec.samplesIn(maxSIPPayloadLen)),
		ring:    newPCMRing(codec.pcmRate*bufferMs/1000, time.Duration(bufferMs)*time.Millisecond),
		enc:     opusEncodeStage{enc: enc, rate: codec.pcmRate, frame: f},
		pcm:     make([]int16, f.samples),
		out:     out,
		opusPT:  opusPT,
		c:       c,
	}
}

func (d *sipToWhatsApp) chain() chain {
	return chain{d.src, d.dec, d.ring, &d.enc, d.out}
}

// handle takes one RTP packet from the PBX (the SIP reader goroutine).
func (d *sipToWhatsApp) handle(pkt []byte) {
	c := d.c
	c.packetsIn.Add(1)
	c.bytesIn.Add(uint64(len(pkt)))
	h, payload, ok := parseRTP(pkt)
	if !ok {
		c.malformed.Add(1)
		return
	}
	switch h.pt {
	case d.codec.pt:
	case ptComfortNoise:
		// The PBX went quiet: the pacer sends silence once the ring runs dry.
		c.comfortNoise.Add(1)
		return
	default:
		c.otherPT.Add(1) // telephone-events too, until DTMF is relayed
		return
	}
	if len(payload) == 0 || len(payload) > maxSIPPayloadLen {
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
	case seqGap:
		c.lost.Add(uint64(missing))
	}
	n := d.codec.samplesIn(len(payload))
	d.track.accept(h.seq, h.ssrc, h.ts, uint32(n))
	pcm := d.scratch[:n]
	d.codec.decode(payload, pcm)
	if d.ring.push(pcm) > 0 {
		c.overruns.Add(1)
	}
}

// sendFrame sends one Opus packet toward WhatsApp (the pacer goroutine).
func (d *sipToWhatsApp) sendFrame() {
	if !d.ring.pop(d.pcm) {
		clear(d.pcm)
		d.c.silenceFrames.Add(1)
	}
	n, err := d.enc.enc.Encode(d.pcm, d.out.payload())
	if err != nil {
		d.c.encodeErrors.Add(1)
		d.out.skip(d.enc.frame.opusTS)
		return
	}
	d.out.send(d.opusPT, n, d.enc.frame.opusTS)
}

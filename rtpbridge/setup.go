package rtpbridge

import (
	"fmt"
	"strings"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// The SIP side's setup (codec, telephone-event payload type) can change in
// mid-call: a re-INVITE may move the PBX from PCMU to G.722 or to Opus.
// A setup is built whole beforehand (codec state for both directions, Opus
// encoder and decoder at the new PCM rate, the stages it prints), published
// with one atomic store, and never changed afterwards. Each goroutine takes
// the new one up between two packets or frames, so none ever sees half a
// change and no lock is taken per packet: the WhatsApp reader at its next
// packet, the SIP reader at its next packet (it hands it on to the pacer
// through the playout buffer, with the first audio of the new setup).

// sipSetup is one negotiated SIP setup and everything that depends on it.
type sipSetup struct {
	codec  *sipCodec
	dtmfPT uint8 // SIP telephone-event payload type, 0 if none
	frame  frameSpec

	// Transcoding only (nil in passthrough). Opus runs only on the
	// WhatsApp side: a G.711 WhatsApp leg is always passed through.
	dec *opus.Decoder // WhatsApp → SIP, at the codec's PCM rate
	enc *opus.Encoder // SIP → WhatsApp, likewise

	// The stages each direction runs with this setup, for the chains.
	w2sStages []fmt.Stringer // between the reorder window and the SIP sender
	s2wSource label
	s2wDecode fmt.Stringer // "pcmu decode", or "opus passthrough"
	s2wEncode fmt.Stringer // "opus encode 8k (20ms pacer)", or the passthrough pacer
	decStage  *opusDecodeStage
	frames    *framer
}

// passthroughStage names a passthrough (Opus, or G.711 both sides) in
// both directions.
type passthroughStage struct {
	codec string
	pacer time.Duration
}

func (s passthroughStage) String() string {
	if s.pacer != 0 {
		return fmt.Sprintf("%s passthrough (%v pacer)", s.codec, s.pacer)
	}
	return s.codec + " passthrough"
}

// newSetup builds the setup for codec c toward a WhatsApp leg of wa. The
// Opus encoder and decoder of prev are kept when the PCM rate stays the
// same (PCMU ↔ PCMA), so their state carries over; otherwise new ones are
// opened. A G.711 WhatsApp leg takes only its own codec (passthrough).
func newSetup(c Codec, dtmfPT uint8, complexity int, d time.Duration, wa *waCodec, prev *sipSetup) (*sipSetup, error) {
	if dtmfPT > 127 {
		return nil, fmt.Errorf("rtpbridge: telephone-event payload type %d is not within 0-127", dtmfPT)
	}
	codec, err := lookupCodec(c)
	if err != nil {
		return nil, err
	}
	if dtmfPT != 0 && dtmfPT == codec.pt {
		return nil, fmt.Errorf("rtpbridge: telephone-event and %s share payload type %d", codec.name, dtmfPT)
	}
	codec.passthrough = wa.passthroughWith(codec)
	if !codec.passthrough && !wa.isOpus() {
		return nil, fmt.Errorf("rtpbridge: SIP codec %s cannot be bridged to WhatsApp's %s: a G.711 WhatsApp leg is passed through to the same codec only", codec.name, wa.name)
	}
	ms := uint32(d / time.Millisecond)
	s := &sipSetup{codec: codec, dtmfPT: dtmfPT}
	s.frame = frameSpec{d: d, sipTS: codec.clock * ms / 1000, waTS: wa.clock * ms / 1000}
	s.s2wSource = label(fmt.Sprintf("sip %s/%d", codec.name, codec.clock))
	if codec.passthrough {
		s.w2sStages = []fmt.Stringer{passthroughStage{codec: codec.name}}
		s.s2wDecode = passthroughStage{codec: codec.name}
		s.s2wEncode = passthroughStage{codec: codec.name, pacer: d}
		return s, nil
	}
	s.frame.samples = codec.pcmRate * int(ms) / 1000
	if prev != nil && prev.dec != nil && prev.codec.pcmRate == codec.pcmRate {
		s.dec, s.enc = prev.dec, prev.enc
	} else {
		if s.dec, err = opus.NewDecoder(codec.pcmRate); err != nil {
			return nil, fmt.Errorf("rtpbridge: %w", err)
		}
		if s.enc, err = newOpusEncoder(codec.pcmRate, complexity); err != nil {
			s.dec.Close()
			return nil, fmt.Errorf("rtpbridge: %w", err)
		}
	}
	s.decStage = &opusDecodeStage{dec: s.dec, rate: codec.pcmRate}
	maxSamples := codec.pcmRate * maxOpusMs / 1000
	s.frames = newFramer(s.frame.samples, d, max(maxSamples, codec.pcmRate*maxConcealMs/1000))
	s.w2sStages = []fmt.Stringer{s.decStage, s.frames, codecStage{c: codec, op: "encode"}}
	s.s2wDecode = codecStage{c: codec, op: "decode"}
	s.s2wEncode = &opusEncodeStage{enc: s.enc, rate: codec.pcmRate, frame: s.frame}
	return s, nil
}

// same reports whether c and dtmfPT are what s already is.
func (s *sipSetup) same(c Codec, dtmfPT uint8) bool {
	clock := c.ClockRate
	if clock == 0 {
		clock = s.codec.clock
	}
	return strings.EqualFold(c.Name, s.codec.name) && c.PayloadType == s.codec.pt && clock == s.codec.clock && dtmfPT == s.dtmfPT
}

// close frees the Opus state (Close is idempotent, so setups sharing it
// may all close it).
func (s *sipSetup) close() {
	if s.dec != nil {
		s.dec.Close()
	}
	if s.enc != nil {
		s.enc.Close()
	}
}

// Package rtpbridge is the gateway's media core: it bridges one call
// between WhatsApp's Opus (WebRTC leg) and the PBX's codec (SIP leg): G.711
// (PCMU, PCMA) and G.722 are transcoded, Opus is passed through; a
// WhatsApp leg that negotiated G.711 is passed through to the same codec.
//
// It knows nothing of WebRTC or SIP: each leg hands it whole, decrypted RTP
// packets through PacketReader and takes packets through PacketWriter. A
// Bridge runs three stages: the WhatsApp side (Opus → SIP codec, driven by
// WhatsApp's packets), the SIP side (SIP codec → a playout buffer) and the
// pacer (playout buffer → Opus toward WhatsApp, one packet every 20 ms,
// always), all on the media worker the call is placed on (worker.go); a
// leg that cannot be polled is read by a goroutine. DTMF goes both ways: RFC 4733 events, in-band
// tones, or SIP INFO through the gateway (OnDigit, SendDigitToWhatsApp).
// Stats gives each direction's counters and the quality of its input:
// interarrival jitter (RFC 3550), loss and an E-model MOS (ITU-T G.107).
//
// Per packet the bridge allocates nothing, logs nothing, starts no goroutine
// and takes no lock but its worker's (held by the worker's own tick) and the
// playout buffer's, which only its own SIP side and pacer take.
// Opus runs at the SIP codec's PCM rate, so there is no resampler (RFC 7587:
// the Opus RTP clock stays 48 kHz).
package rtpbridge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// PacketReader yields one whole RTP packet per call (already decrypted),
// like net.PacketConn. It returns an error once the leg is closed. A leg
// that is also a SocketReader or a SignalingReader (worker.go) is read by
// its call's media worker instead of a goroutine of its own.
type PacketReader interface{ ReadPacket(b []byte) (int, error) }

// PacketWriter sends one whole RTP packet. The bridge reuses b once
// WritePacket returns.
type PacketWriter interface{ WritePacket(b []byte) error }

// Codec is the SIP side codec as negotiated, e.g. {"PCMU", 0, 8000}.
type Codec struct {
	Name        string // case-insensitive: PCMU, PCMA, G722, opus
	PayloadType uint8
	ClockRate   uint32 // 0 means the codec's own (8000; 48000 for opus; 8000 for G722, RFC 3551 §4.5.2)
}

// Config describes one call's media.
type Config struct {
	WhatsAppIn   PacketReader // Opus on WhatsAppOpusPT (48 kHz RTP clock) or WhatsAppCodec's G.711 (8 kHz), telephone-event on WhatsAppDTMFPT
	WhatsAppOut  PacketWriter
	WhatsAppSSRC uint32 // the one SSRC toward WhatsApp for the whole call (given by the WebRTC leg)
	// WhatsAppOpusPT is the payload type of opus/48000/2 in WhatsApp's
	// offer (required, dynamic: 96-127, RFC 3551 §3). WhatsAppDTMFPT is
	// that of its telephone-event/8000 (dynamic too, another one); 0 if the
	// offer has none: the PBX's digits are then only reported (OnDigit,
	// Stats.SIPToWhatsApp.DigitsUnsent) and SendDigitToWhatsApp fails.
	WhatsAppOpusPT uint8
	WhatsAppDTMFPT uint8
	// WhatsAppCodec is the WhatsApp leg's audio codec when it is not
	// Opus: PCMU or PCMA on the payload type the leg negotiated (Meta
	// offers them beside Opus when the number's audio.additional_codecs
	// lists them), with WhatsAppOpusPT 0. Such a leg is passed through:
	// SIPCodec must be the same codec, timestamps toward WhatsApp run at
	// 8 kHz. The zero value is Opus on WhatsAppOpusPT.
	WhatsAppCodec Codec

	SIPIn    PacketReader
	SIPOut   PacketWriter
	SIPCodec Codec  // PCMU, PCMA, G722 (transcoded) or opus (passed through)
	SIPSSRC  uint32 // 0 = random

	// SIPDTMFPayloadType is the PBX's telephone-event payload type as
	// negotiated; 0 if it negotiated none. SIPDTMFClockRate is its clock
	// (0 = 8000).
	SIPDTMFPayloadType uint8
	SIPDTMFClockRate   uint32
	// DTMFMode says how digits cross to the PBX (dtmfmode.go); the zero
	// value is DTMFModeRFC4733. RFC 4733 events from the PBX go to
	// WhatsApp in every mode.
	DTMFMode DTMFMode
	// OnDigit, if set, is called once per digit the bridge finds: from
	// "whatsapp" (its telephone-events) or "sip" (the PBX's events or
	// tones). It is called on the media goroutines and must not block.
	OnDigit func(from string, digit rune)

	OpusComplexity int           // 0 (cheapest) to 10, used as given at either rate; OpusComplexityAuto: the default for the rate
	Frame          time.Duration // 0 = 20 ms, the only frame supported now
}

// OpusComplexityAuto as Config.OpusComplexity picks the complexity by the
// PBX codec's PCM rate: DefaultOpusComplexityNB at 8 kHz (G.711),
// DefaultOpusComplexityWB at 16 kHz (G.722), as the codec changes.
const OpusComplexityAuto = -1

// The default complexities: the cheapest whose quality proxies are within
// 0.15 dB of complexity 10's with the bridge's bitrates and FEC
// (BenchmarkOpusEncodeSettings; docs/media.md, "Opus settings toward
// WhatsApp"). At 8 kHz that is 2, but 2 runs libopus's cheapest pitch
// search, which the benchmark's synthetic voice does not put to the test:
// 3 costs 9 % more. At 16 kHz 3 is 0.35 dB short; 8-10 cost twice 5. Below
// 2, libopus puts no FEC in at these bitrates.
const (
	DefaultOpusComplexityNB = 3
	DefaultOpusComplexityWB = 5
)

// defaultOpusComplexity is OpusComplexityAuto's choice for audio at rate.
func defaultOpusComplexity(rate int) int {
	if rate > 8000 {
		return DefaultOpusComplexityWB
	}
	return DefaultOpusComplexityNB
}

const defaultFrame = 20 * time.Millisecond

// The dynamic payload types (RFC 3551 §3), where a negotiated codec's is.
const (
	minDynamicPT = 96
	maxDynamicPT = 127
)

// frameSpec is the frame period in the units each side counts it in.
type frameSpec struct {
	d       time.Duration
	samples int    // PCM samples at the SIP codec's rate (0 in passthrough)
	sipTS   uint32 // SIP RTP timestamp units
	waTS    uint32 // WhatsApp RTP timestamp units (48 kHz for Opus, 8 kHz for G.711)
}

// Bridge bridges one call. Its methods are safe for concurrent use.
type Bridge struct {
	w2s   *waToSIP
	s2w   *sipToWhatsApp
	waIn  PacketReader
	sipIn PacketReader

	setup      atomic.Pointer[sipSetup] // the SIP setup in force
	wa         *waCodec                 // the WhatsApp leg's codec, for the whole call
	complexity int
	frame      time.Duration
	mode       DTMFMode
	toSIP      chan digitRequest
	toWA       chan waDigit

	w2sCount dirCounters
	s2wCount dirCounters

	worker *worker // runs the call's pacing, and reads the legs it can poll

	mu         sync.Mutex // guards the fields below, not the media
	setups     []*sipSetup
	sipStarted bool
	started    bool
	closed     bool
	pacing     *pacedStream // the stream toward WhatsApp on its worker
	polled     *polledCall  // the legs the worker reads (under worker.mu)
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

// New checks cfg and prepares the codecs; nothing runs until Start (or
// StartSIPReceive).
func New(cfg Config) (*Bridge, error) {
	if cfg.WhatsAppIn == nil || cfg.WhatsAppOut == nil || cfg.SIPIn == nil || cfg.SIPOut == nil {
		return nil, errors.New("rtpbridge: WhatsAppIn, WhatsAppOut, SIPIn and SIPOut are all required")
	}
	if cfg.Frame == 0 {
		cfg.Frame = defaultFrame
	}
	if cfg.Frame != defaultFrame {
		return nil, fmt.Errorf("rtpbridge: frame %v is not supported (only %v)", cfg.Frame, defaultFrame)
	}
	wa, err := newWACodec(cfg.WhatsAppCodec, cfg.WhatsAppOpusPT, cfg.WhatsAppDTMFPT)
	if err != nil {
		return nil, err
	}
	if (cfg.OpusComplexity < 0 || cfg.OpusComplexity > 10) && cfg.OpusComplexity != OpusComplexityAuto {
		return nil, fmt.Errorf("rtpbridge: Opus complexity %d is not within 0-10", cfg.OpusComplexity)
	}
	if !cfg.DTMFMode.valid() {
		return nil, fmt.Errorf("rtpbridge: DTMF mode %v is not one of %v, %v, %v", cfg.DTMFMode, DTMFModeRFC4733, DTMFModeInfo, DTMFModeInband)
	}
	if cfg.SIPDTMFClockRate == 0 {
		cfg.SIPDTMFClockRate = 8000
	}
	if cfg.SIPDTMFClockRate < 8000 || cfg.SIPDTMFClockRate > opusClock {
		return nil, fmt.Errorf("rtpbridge: telephone-event clock %d Hz is not within 8000-48000", cfg.SIPDTMFClockRate)
	}
	setup, err := newSetup(cfg.SIPCodec, cfg.SIPDTMFPayloadType, cfg.OpusComplexity, cfg.Frame, wa, nil)
	if err != nil {
		return nil, err
	}
	for cfg.SIPSSRC == 0 {
		cfg.SIPSSRC = rand.Uint32()
	}

	b := &Bridge{
		worker: pickWorker(),
		waIn:   cfg.WhatsAppIn, sipIn: cfg.SIPIn, complexity: cfg.OpusComplexity, frame: cfg.Frame, mode: cfg.DTMFMode,
		toSIP: make(chan digitRequest, digitQueueLen), toWA: make(chan waDigit, digitQueueLen),
		setups: []*sipSetup{setup}, wa: wa,
	}
	b.setup.Store(setup)
	epoch := time.Now()
	now := func() int64 { return int64(time.Since(epoch)) }
	// Sequence numbers and timestamps start at random values (RFC 3550 §5.1).
	sipOut := newRTPSender("sip", cfg.SIPOut, cfg.SIPSSRC, uint16(rand.Uint32()), rand.Uint32(), &b.w2sCount)
	waOut := newRTPSender("whatsapp", cfg.WhatsAppOut, cfg.WhatsAppSSRC, uint16(rand.Uint32()), rand.Uint32(), &b.s2wCount)
	b.w2s = newWAToSIP(wa, cfg.WhatsAppDTMFPT, &b.setup,
		toSIPDTMF{mode: cfg.DTMFMode, dtmfClock: cfg.SIPDTMFClockRate, onDigit: cfg.OnDigit, queue: b.toSIP},
		now, sipOut, &b.w2sCount)
	b.s2w = newSIPToWhatsApp(&b.setup, wa,
		toWADTMF{mode: cfg.DTMFMode, eventPT: cfg.WhatsAppDTMFPT, dtmfClock: cfg.SIPDTMFClockRate, onDigit: cfg.OnDigit, queue: b.toWA},
		now, waOut, &b.s2wCount)
	return b, nil
}

// checkWhatsAppPTs checks the payload types of WhatsApp's offer.
func checkWhatsAppPTs(opusPT, dtmfPT uint8) error {
	switch {
	case opusPT == 0:
		return errors.New("rtpbridge: WhatsAppOpusPT is required (the offer's opus/48000/2 payload type)")
	case opusPT < minDynamicPT || opusPT > maxDynamicPT:
		return fmt.Errorf("rtpbridge: WhatsApp Opus payload type %d is not dynamic (%d-%d)", opusPT, minDynamicPT, maxDynamicPT)
	case dtmfPT != 0 && (dtmfPT < minDynamicPT || dtmfPT > maxDynamicPT):
		return fmt.Errorf("rtpbridge: WhatsApp telephone-event payload type %d is not dynamic (%d-%d)", dtmfPT, minDynamicPT, maxDynamicPT)
	case dtmfPT == opusPT:
		return fmt.Errorf("rtpbridge: WhatsApp Opus and telephone-event share payload type %d", opusPT)
	}
	return nil
}

// opusSettings are the encoder's settings toward WhatsApp.
type opusSettings struct {
	complexity   int
	bitrate      int // bit/s
	fec          bool
	lossPerc     int            // expected loss: sizes in-band FEC (libopus adds none at 0)
	dtx          bool           // discontinuous transmission
	maxBandwidth opus.Bandwidth // 0: libopus's choice (capped by the input rate)
}

// defaultOpusSettings are the settings the bridge uses for audio at rate
// with complexity (OpusComplexityAuto: the default for rate).
func defaultOpusSettings(rate, complexity int) opusSettings {
	if complexity == OpusComplexityAuto {
		complexity = defaultOpusComplexity(rate)
	}
	return opusSettings{complexity: complexity, bitrate: opusBitrate(rate), fec: true, lossPerc: opusLossPercent}
}

// open opens an encoder for audio at rate with s.
func (s opusSettings) open(rate int) (*opus.Encoder, error) {
	enc, err := opus.NewEncoder(rate, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	sets := []func() error{
		func() error { return enc.SetComplexity(s.complexity) },
		func() error { return enc.SetBitrate(s.bitrate) },
		func() error { return enc.SetInbandFEC(s.fec) },
		func() error { return enc.SetPacketLossPerc(s.lossPerc) },
		func() error { return enc.SetDTX(s.dtx) },
		func() error { return enc.SetSignalVoice() },
	}
	if s.maxBandwidth != 0 {
		sets = append(sets, func() error { return enc.SetMaxBandwidth(s.maxBandwidth) })
	}
	for _, set := range sets {
		if err := set(); err != nil {
			enc.Close()
			return nil, err
		}
	}
	return enc, nil
}

func newOpusEncoder(rate, complexity int) (*opus.Encoder, error) {
	return defaultOpusSettings(rate, complexity).open(rate)
}

// opusBitrate is the bit rate toward WhatsApp for audio at rate.
func opusBitrate(rate int) int {
	if rate > 8000 {
		return opusBitrateWB
	}
	return opusBitrateNB
}

// opusSilence is one 20 ms Opus frame of silence, encoded once: what the
// pacer sends in passthrough while the PBX sends nothing.
var opusSilence = sync.OnceValues(func() ([]byte, error) {
	enc, err := opus.NewEncoder(opusClock, opus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("rtpbridge: %w", err)
	}
	defer enc.Close()
	out := make([]byte, 256)
	n, err := enc.Encode(make([]int16, opusClock/50), out)
	if err != nil {
		return nil, fmt.Errorf("rtpbridge: %w", err)
	}
	return out[:n], nil
})

// StartSIPReceive starts the SIP reader alone: the PBX's audio is kept
// (up to a second, the oldest dropped beyond) until Start, which plays it
// from its start. The gateway calls it once the PBX answers, so an IVR
// greeting that begins while the WhatsApp leg is being accepted is not
// clipped; nothing goes to WhatsApp before Start, as none may before the
// call is accepted. It does nothing after the first call, after Start or
// after Close.
func (b *Bridge) StartSIPReceive() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sipStarted || b.closed {
		return
	}
	b.sipStarted = true
	b.readSIP()
}

// Start launches the WhatsApp→SIP reader, the SIP→WhatsApp reader (unless
// StartSIPReceive did) and the pacer that sends one packet toward WhatsApp
// every 20 ms from now on. It does nothing after the first call or after
// Close.
func (b *Bridge) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	if !b.sipStarted {
		b.sipStarted = true
		b.readSIP()
	}
	if r, ok := b.waIn.(SignalingReader); !ok || !b.worker.pollWhatsApp(b, r) {
		b.wg.Add(1)
		go b.readLoop(b.waIn, b.handleWhatsAppPacket)
	}
	b.pacing = b.worker.startPacing(b.frame, b.s2w.sendFrame, func(frames int64) {
		b.s2wCount.pacerResyncs.Add(1)
		b.s2w.out.skip(uint32(frames) * b.s2w.waTS)
		b.s2w.play.skip(frames)
	})
}

// readSIP has the worker read the PBX's leg, or a goroutine if it cannot.
func (b *Bridge) readSIP() {
	if r, ok := b.sipIn.(SocketReader); ok && b.worker.pollSIP(b, r) {
		return
	}
	b.wg.Add(1)
	go b.readLoop(b.sipIn, b.handleSIPPacket)
}

// readLoop feeds one leg's packets to handle until the leg fails.
func (b *Bridge) readLoop(in PacketReader, handle func([]byte)) {
	defer b.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, err := in.ReadPacket(buf)
		if err != nil {
			return
		}
		if n < 0 || n > len(buf) {
			n = 0 // a broken reader: counted as malformed
		}
		handle(buf[:n])
	}
}

// Close takes the call off its worker and waits for the reader goroutines,
// if any, to end. They end when their ReadPacket returns an error, so the
// caller closes the legs before (or while) calling Close. Close is idempotent; the codecs are freed
// once everything has stopped.
func (b *Bridge) Close() {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		pacing := b.pacing
		b.mu.Unlock()
		if pacing != nil {
			pacing.stop()
		}
		b.worker.release(b)
		b.wg.Wait()
		for _, s := range b.setups {
			s.close()
		}
	})
}

// SetSIPCodec changes the SIP side's codec and telephone-event payload type
// after a re-INVITE. It is safe while the bridge runs: the new setup is
// prepared here and taken up by the readers at their next packet (the
// pacer with the first audio of the new codec). The stream toward WhatsApp
// keeps its SSRC, sequence and timestamps; toward the PBX likewise, with
// the marker bit. Setting what is already in force does nothing. A G.711
// WhatsApp leg takes only its own codec: another is an error, and the
// setup in force stays.
func (b *Bridge) SetSIPCodec(c Codec, dtmfPT uint8) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("rtpbridge: bridge closed")
	}
	cur := b.setup.Load()
	if cur.same(c, dtmfPT) {
		return nil
	}
	s, err := newSetup(c, dtmfPT, b.complexity, b.frame, b.wa, cur)
	if err != nil {
		return err
	}
	b.setups = append(b.setups, s)
	b.setup.Store(s)
	return nil
}

// SendDigitToWhatsApp queues a digit (0-9, *, #, A-D) to be sent to
// WhatsApp as telephone-events lasting d (0: 100 ms; at least 40 ms, at
// most 5 s): a SIP INFO digit from the PBX, say. It returns at once; the
// pacer sends the digit in place of audio. It fails if WhatsApp's offer
// negotiated no telephone-event (Config.WhatsAppDTMFPT 0).
func (b *Bridge) SendDigitToWhatsApp(digit rune, d time.Duration) error {
	code, dur, err := b.digit(digit, d)
	if err != nil {
		return err
	}
	if b.s2w.dtmf.eventPT == 0 {
		return errors.New("rtpbridge: WhatsApp negotiated no telephone-event")
	}
	select {
	case b.toWA <- waDigit{code: code, begin: true, end: true, dur: dur}:
		return nil
	default:
		return errors.New("rtpbridge: too many digits queued toward WhatsApp")
	}
}

// SendDigitToSIP queues a digit to be sent to the PBX lasting d (as for
// SendDigitToWhatsApp): as the DTMF mode says, and in modes that send
// nothing in the media (info, or rfc4733 without a negotiated
// telephone-event) as events if the PBX negotiated them, else as tones.
// The WhatsApp reader plays it in the next frames of the stream.
func (b *Bridge) SendDigitToSIP(digit rune, d time.Duration) error {
	code, dur, err := b.digit(digit, d)
	if err != nil {
		return err
	}
	if sendMethodToSIP(b.mode, b.setup.Load()) == dtmfNone {
		return errors.New("rtpbridge: the PBX takes no telephone-event and Opus carries no tones")
	}
	select {
	case b.toSIP <- digitRequest{code: code, dur: dur}:
		return nil
	default:
		return errors.New("rtpbridge: too many digits queued toward the PBX")
	}
}

// digit checks a digit to send and its duration (in 8 kHz units).
func (b *Bridge) digit(digit rune, d time.Duration) (uint8, uint32, error) {
	code, ok := digitCode(digit)
	if !ok {
		return 0, 0, fmt.Errorf("rtpbridge: %q is not a DTMF digit", digit)
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return 0, 0, errors.New("rtpbridge: bridge closed")
	}
	if d <= 0 {
		d = defaultDigitMs * time.Millisecond
	}
	d = min(max(d, minDigitMs*time.Millisecond), maxDigitMs*time.Millisecond)
	return code, uint32(d/time.Millisecond) * dtmfUnitsPerMs, nil
}

// Stats returns a snapshot of both directions' counters and quality
// estimates (jitter, loss, MOS), taken with atomic loads: callable from any
// goroutine while the bridge runs.
func (b *Bridge) Stats() Stats {
	return statsOf(&b.w2sCount, &b.s2wCount, b.setup.Load().codec)
}

// SIPPacketsIn is Stats().SIPToWhatsApp.PacketsIn alone, one atomic load:
// for a watch that asks often whether the PBX still sends.
func (b *Bridge) SIPPacketsIn() uint64 { return b.s2wCount.packetsIn.Load() }

// WhatsAppPacketsIn is the number of packets read from WhatsApp so far (a
// business-initiated call learns from the first that the user answered).
func (b *Bridge) WhatsAppPacketsIn() uint64 { return b.w2sCount.packetsIn.Load() }

// String prints both directions' chains of stages as they run with the SIP
// setup in force, for logs.
func (b *Bridge) String() string {
	s := b.setup.Load()
	return b.w2s.chainOf(s).String() + " | " + b.s2w.chainOf(s).String()
}

// The per-packet work, callable without goroutines (tests and benchmarks).

// handleWhatsAppPacket runs one packet from WhatsApp through to the PBX.
func (b *Bridge) handleWhatsAppPacket(pkt []byte) { b.w2s.handle(pkt) }

// handleSIPPacket takes one packet from the PBX into the playout buffer.
func (b *Bridge) handleSIPPacket(pkt []byte) { b.s2w.handle(pkt) }

// sendFrameToWhatsApp sends the next pacer frame toward WhatsApp, on time,
// and returns the shift the playout buffer asks of the next.
func (b *Bridge) sendFrameToWhatsApp() time.Duration { return b.s2w.sendFrame(0) }

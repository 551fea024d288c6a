// Package rtpbridge is the gateway's media core: it transcodes one call
// between WhatsApp's Opus (WebRTC leg) and the PBX's G.711 (SIP leg).
//
// It knows nothing of WebRTC or SIP: each leg hands it whole, decrypted RTP
// packets through PacketReader and takes packets through PacketWriter. A
// Bridge runs three goroutines: the WhatsApp reader (Opus → G.711, driven by
// WhatsApp's packets), the SIP reader (G.711 → a bounded PCM ring) and the
// pacer (ring → Opus toward WhatsApp, one packet every 20 ms, always).
//
// Per packet the bridge allocates nothing, logs nothing, starts no goroutine
// and takes no lock other than the one its own SIP reader and pacer share.
// Opus runs at the SIP codec's PCM rate, so there is no resampler (RFC 7587:
// the Opus RTP clock stays 48 kHz).
package rtpbridge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/opus"
)

// PacketReader yields one whole RTP packet per call (already decrypted),
// like net.PacketConn. It returns an error once the leg is closed.
type PacketReader interface{ ReadPacket(b []byte) (int, error) }

// PacketWriter sends one whole RTP packet. The bridge reuses b once
// WritePacket returns.
type PacketWriter interface{ WritePacket(b []byte) error }

// Codec is the SIP side codec as negotiated, e.g. {"PCMU", 0, 8000}.
type Codec struct {
	Name        string // case-insensitive: PCMU, PCMA
	PayloadType uint8
	ClockRate   uint32 // 0 means the codec's own
}

// Config describes one call's media.
type Config struct {
	WhatsAppIn     PacketReader // Opus on WhatsAppOpusPT, telephone-event on PT 126, 48 kHz RTP clock
	WhatsAppOut    PacketWriter
	WhatsAppSSRC   uint32 // the one SSRC toward WhatsApp for the whole call (given by the WebRTC leg)
	WhatsAppOpusPT uint8  // default 111

	SIPIn    PacketReader
	SIPOut   PacketWriter
	SIPCodec Codec  // PCMU or PCMA
	SIPSSRC  uint32 // 0 = random

	OpusComplexity int           // 0 (cheapest) to 10, used as given; DefaultOpusComplexity is a good start
	Frame          time.Duration // 0 = 20 ms, the only frame supported now
}

// DefaultOpusComplexity balances cost and quality for 8 kHz voice
// (media-stack.md: 73 µs per frame at 5 against 118 µs at 10).
const DefaultOpusComplexity = 5

const (
	defaultOpusPT = 111
	defaultFrame  = 20 * time.Millisecond
)

// frameSpec is the frame period in the units each side counts it in.
type frameSpec struct {
	d       time.Duration
	samples int    // PCM samples at the SIP codec's rate
	sipTS   uint32 // SIP RTP timestamp units
	opusTS  uint32 // Opus RTP timestamp units (48 kHz clock)
}

// Bridge transcodes one call. Its methods are safe for concurrent use.
type Bridge struct {
	w2s   *waToSIP
	s2w   *sipToWhatsApp
	waIn  PacketReader
	sipIn PacketReader
	frame frameSpec

	dec *opus.Decoder
	enc *opus.Encoder

	w2sCount dirCounters
	s2wCount dirCounters

	mu        sync.Mutex // guards started/closed, not the media
	started   bool
	closed    bool
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New checks cfg and prepares the codecs; nothing runs until Start.
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
	if cfg.WhatsAppOpusPT == 0 {
		cfg.WhatsAppOpusPT = defaultOpusPT
	}
	if cfg.WhatsAppOpusPT > 127 || cfg.WhatsAppOpusPT == telephoneEventPT {
		return nil, fmt.Errorf("rtpbridge: Opus payload type %d is not usable", cfg.WhatsAppOpusPT)
	}
	if cfg.OpusComplexity < 0 || cfg.OpusComplexity > 10 {
		return nil, fmt.Errorf("rtpbridge: Opus complexity %d is not within 0-10", cfg.OpusComplexity)
	}
	codec, err := lookupCodec(cfg.SIPCodec)
	if err != nil {
		return nil, err
	}
	for cfg.SIPSSRC == 0 {
		cfg.SIPSSRC = rand.Uint32()
	}
	f := frameSpec{
		d:       cfg.Frame,
		samples: codec.pcmRate * int(cfg.Frame/time.Millisecond) / 1000,
		sipTS:   codec.clock * uint32(cfg.Frame/time.Millisecond) / 1000,
		opusTS:  opusClock * uint32(cfg.Frame/time.Millisecond) / 1000,
	}

	dec, err := opus.NewDecoder(codec.pcmRate)
	if err != nil {
		return nil, fmt.Errorf("rtpbridge: %w", err)
	}
	enc, err := newOpusEncoder(codec.pcmRate, cfg.OpusComplexity)
	if err != nil {
		dec.Close()
		return nil, fmt.Errorf("rtpbridge: %w", err)
	}

	b := &Bridge{waIn: cfg.WhatsAppIn, sipIn: cfg.SIPIn, frame: f, dec: dec, enc: enc, stop: make(chan struct{})}
	// Sequence numbers and timestamps start at random values (RFC 3550 §5.1).
	sipOut := newRTPSender("sip", cfg.SIPOut, cfg.SIPSSRC, uint16(rand.Uint32()), rand.Uint32(), &b.w2sCount)
	waOut := newRTPSender("whatsapp", cfg.WhatsAppOut, cfg.WhatsAppSSRC, uint16(rand.Uint32()), rand.Uint32(), &b.s2wCount)
	b.w2s = newWAToSIP(cfg.WhatsAppOpusPT, dec, codec, f, sipOut, &b.w2sCount)
	b.s2w = newSIPToWhatsApp(codec, enc, f, cfg.WhatsAppOpusPT, waOut, &b.s2wCount)
	return b, nil
}

func newOpusEncoder(rate, complexity int) (*opus.Encoder, error) {
	enc, err := opus.NewEncoder(rate, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	for _, set := range []func() error{
		func() error { return enc.SetComplexity(complexity) },
		func() error { return enc.SetBitrate(opusBitrate) },
		func() error { return enc.SetInbandFEC(true) },
		func() error { return enc.SetPacketLossPerc(opusLossPercent) },
		func() error { return enc.SetSignalVoice() },
	} {
		if err := set(); err != nil {
			enc.Close()
			return nil, err
		}
	}
	return enc, nil
}

// Start launches the WhatsApp→SIP reader, the SIP→WhatsApp reader and the
// pacer that sends one Opus packet toward WhatsApp every 20 ms. It does
// nothing after the first call or after Close.
func (b *Bridge) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	b.wg.Add(3)
	go b.readLoop(b.waIn, b.handleWhatsAppPacket)
	go b.readLoop(b.sipIn, b.handleSIPPacket)
	go func() {
		defer b.wg.Done()
		pace(b.frame.d, b.stop, b.sendFrameToWhatsApp, func(frames int64) {
			b.s2wCount.pacerResyncs.Add(1)
			b.s2w.out.skip(uint32(frames) * b.frame.opusTS)
		})
	}()
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

// Close stops the pacer and waits for the goroutines to end. The readers end
// when their ReadPacket returns an error, so the caller closes the legs
// before (or while) calling Close. Close is idempotent; the codecs are freed
// once everything has stopped.
func (b *Bridge) Close() {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.stop)
		b.mu.Unlock()
		b.wg.Wait()
		b.enc.Close()
		b.dec.Close()
	})
}

// Stats returns a snapshot of both directions' counters.
func (b *Bridge) Stats() Stats {
	return Stats{WhatsAppToSIP: b.w2sCount.snapshot(), SIPToWhatsApp: b.s2wCount.snapshot()}
}

// String prints both directions' chains of stages, for logs.
func (b *Bridge) String() string {
	return b.w2s.chain().String() + " | " + b.s2w.chain().String()
}

// The per-packet work, callable without goroutines (tests and benchmarks).

// handleWhatsAppPacket runs one packet from WhatsApp through to the PBX.
func (b *Bridge) handleWhatsAppPacket(pkt []byte) { b.w2s.handle(pkt) }

// handleSIPPacket takes one packet from the PBX into the PCM ring.
func (b *Bridge) handleSIPPacket(pkt []byte) { b.s2w.handle(pkt) }

// sendFrameToWhatsApp sends the next pacer frame toward WhatsApp.
func (b *Bridge) sendFrameToWhatsApp() { b.s2w.sendFrame() }

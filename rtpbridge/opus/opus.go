// Package opus is a small cgo binding to libopus: just what the bridge needs.
//
// Encoders and decoders are opened at the SIP codec's rate (8 kHz for G.711,
// 16 kHz for G.722) so no resampler is needed; the Opus RTP clock stays 48 kHz
// whatever rate libopus runs at (RFC 7587 §4.1).
package opus

/*
#cgo pkg-config: opus
#include <opus.h>

static int wag_enc_ctl_int(OpusEncoder *e, int req, int v) {
	switch (req) {
	case 0: return opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(v));
	case 1: return opus_encoder_ctl(e, OPUS_SET_BITRATE(v));
	case 2: return opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(v));
	case 3: return opus_encoder_ctl(e, OPUS_SET_PACKET_LOSS_PERC(v));
	case 4: return opus_encoder_ctl(e, OPUS_SET_DTX(v));
	case 5: return opus_encoder_ctl(e, OPUS_SET_SIGNAL(v));
	case 6: return opus_encoder_ctl(e, OPUS_SET_MAX_BANDWIDTH(v));
	}
	return OPUS_BAD_ARG;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Application selects libopus's tuning.
type Application int

const (
	AppVoIP     Application = C.OPUS_APPLICATION_VOIP
	AppAudio    Application = C.OPUS_APPLICATION_AUDIO
	AppLowDelay Application = C.OPUS_APPLICATION_RESTRICTED_LOWDELAY
)

// Bandwidth is an Opus audio bandwidth (RFC 6716 §2).
type Bandwidth int

const (
	BandwidthNarrow    Bandwidth = C.OPUS_BANDWIDTH_NARROWBAND    // 4 kHz passband
	BandwidthMedium    Bandwidth = C.OPUS_BANDWIDTH_MEDIUMBAND    // 6 kHz
	BandwidthWide      Bandwidth = C.OPUS_BANDWIDTH_WIDEBAND      // 8 kHz
	BandwidthSuperWide Bandwidth = C.OPUS_BANDWIDTH_SUPERWIDEBAND // 12 kHz
	BandwidthFull      Bandwidth = C.OPUS_BANDWIDTH_FULLBAND      // 20 kHz
)

func (b Bandwidth) String() string {
	switch b {
	case BandwidthNarrow:
		return "NB"
	case BandwidthMedium:
		return "MB"
	case BandwidthWide:
		return "WB"
	case BandwidthSuperWide:
		return "SWB"
	case BandwidthFull:
		return "FB"
	}
	return fmt.Sprintf("Bandwidth(%d)", int(b))
}

// Error is a libopus error code.
type Error int

func (e Error) Error() string { return "opus: " + C.GoString(C.opus_strerror(C.int(e))) }

var errEmpty = errors.New("opus: empty buffer")

// Encoder encodes mono 16-bit PCM into Opus packets. Not safe for concurrent use.
type Encoder struct {
	st         *C.OpusEncoder
	sampleRate int
}

// NewEncoder opens a mono encoder at sampleRate (8000, 12000, 16000, 24000 or 48000).
func NewEncoder(sampleRate int, app Application) (*Encoder, error) {
	var cerr C.int
	st := C.opus_encoder_create(C.opus_int32(sampleRate), 1, C.int(app), &cerr)
	if cerr != C.OPUS_OK {
		return nil, fmt.Errorf("opus encoder at %d Hz: %w", sampleRate, Error(cerr))
	}
	return &Encoder{st: st, sampleRate: sampleRate}, nil
}

// SampleRate is the PCM rate the encoder was opened at.
func (e *Encoder) SampleRate() int { return e.sampleRate }

func (e *Encoder) ctl(req, v int, name string) error {
	if rc := C.wag_enc_ctl_int(e.st, C.int(req), C.int(v)); rc != C.OPUS_OK {
		return fmt.Errorf("opus set %s=%d: %w", name, v, Error(rc))
	}
	return nil
}

// SetComplexity sets the encoder complexity, 0 (cheapest) to 10.
func (e *Encoder) SetComplexity(c int) error { return e.ctl(0, c, "complexity") }

// SetBitrate sets the target bitrate in bit/s.
func (e *Encoder) SetBitrate(bps int) error { return e.ctl(1, bps, "bitrate") }

// SetInbandFEC turns in-band forward error correction on or off.
func (e *Encoder) SetInbandFEC(on bool) error { return e.ctl(2, b2i(on), "inband_fec") }

// SetPacketLossPerc tells the encoder the expected loss (0-100), which sizes FEC.
func (e *Encoder) SetPacketLossPerc(p int) error { return e.ctl(3, p, "packet_loss_perc") }

// SetDTX turns discontinuous transmission on or off.
func (e *Encoder) SetDTX(on bool) error { return e.ctl(4, b2i(on), "dtx") }

// SetSignalVoice hints that the input is speech.
func (e *Encoder) SetSignalVoice() error { return e.ctl(5, C.OPUS_SIGNAL_VOICE, "signal") }

// SetMaxBandwidth caps the bandwidth libopus may choose. The input's rate
// caps it already (8 kHz input is narrowband whatever this says).
func (e *Encoder) SetMaxBandwidth(bw Bandwidth) error { return e.ctl(6, int(bw), "max_bandwidth") }

// Encode encodes one frame of pcm (2.5 to 60 ms at the encoder's rate) into out
// and returns the packet length.
func (e *Encoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) == 0 || len(out) == 0 {
		return 0, errEmpty
	}
	n := C.opus_encode(e.st, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)),
		(*C.uchar)(unsafe.Pointer(&out[0])), C.opus_int32(len(out)))
	if n < 0 {
		return 0, Error(n)
	}
	return int(n), nil
}

// Close frees the encoder. It is safe to call twice.
func (e *Encoder) Close() {
	if e.st != nil {
		C.opus_encoder_destroy(e.st)
		e.st = nil
	}
}

// Decoder decodes Opus packets into mono 16-bit PCM. Not safe for concurrent use.
type Decoder struct {
	st         *C.OpusDecoder
	sampleRate int
}

// NewDecoder opens a mono decoder whose output runs at sampleRate.
func NewDecoder(sampleRate int) (*Decoder, error) {
	var cerr C.int
	st := C.opus_decoder_create(C.opus_int32(sampleRate), 1, &cerr)
	if cerr != C.OPUS_OK {
		return nil, fmt.Errorf("opus decoder at %d Hz: %w", sampleRate, Error(cerr))
	}
	return &Decoder{st: st, sampleRate: sampleRate}, nil
}

// SampleRate is the PCM rate the decoder outputs.
func (d *Decoder) SampleRate() int { return d.sampleRate }

// Decode decodes one packet into pcm and returns the samples written. pcm must
// hold the packet's whole duration (up to 120 ms).
func (d *Decoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 || len(pcm) == 0 {
		return 0, errEmpty
	}
	n := C.opus_decode(d.st, (*C.uchar)(unsafe.Pointer(&packet[0])), C.opus_int32(len(packet)),
		(*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)), 0)
	if n < 0 {
		return 0, Error(n)
	}
	return int(n), nil
}

// DecodeFEC rebuilds the frame lost just before packet from packet's in-band
// FEC data (RFC 6716 §2.1.7). len(pcm) must be exactly the lost frame's length.
// When packet has no FEC data libopus conceals instead.
func (d *Decoder) DecodeFEC(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 || len(pcm) == 0 {
		return 0, errEmpty
	}
	n := C.opus_decode(d.st, (*C.uchar)(unsafe.Pointer(&packet[0])), C.opus_int32(len(packet)),
		(*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)), 1)
	if n < 0 {
		return 0, Error(n)
	}
	return int(n), nil
}

// Conceal fills pcm with packet-loss concealment; len(pcm) is the gap's length
// (a multiple of 2.5 ms).
func (d *Decoder) Conceal(pcm []int16) (int, error) {
	if len(pcm) == 0 {
		return 0, errEmpty
	}
	n := C.opus_decode(d.st, nil, 0, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)), 0)
	if n < 0 {
		return 0, Error(n)
	}
	return int(n), nil
}

// Close frees the decoder. It is safe to call twice.
func (d *Decoder) Close() {
	if d.st != nil {
		C.opus_decoder_destroy(d.st)
		d.st = nil
	}
}

// PacketSamples returns how many samples at sampleRate the packet holds,
// reading only its TOC byte(s) (RFC 6716 §3.1).
func PacketSamples(packet []byte, sampleRate int) (int, error) {
	if len(packet) == 0 {
		return 0, errEmpty
	}
	n := C.opus_packet_get_nb_samples((*C.uchar)(unsafe.Pointer(&packet[0])), C.opus_int32(len(packet)), C.opus_int32(sampleRate))
	if n < 0 {
		return 0, Error(n)
	}
	return int(n), nil
}

// PacketBandwidth returns the bandwidth the packet's TOC byte says it codes.
func PacketBandwidth(packet []byte) (Bandwidth, error) {
	if len(packet) == 0 {
		return 0, errEmpty
	}
	n := C.opus_packet_get_bandwidth((*C.uchar)(unsafe.Pointer(&packet[0])))
	if n < 0 {
		return 0, Error(n)
	}
	return Bandwidth(n), nil
}

// EncoderStateSize and DecoderStateSize report libopus's state sizes for one
// mono channel, for memory accounting.
func EncoderStateSize() int { return int(C.opus_encoder_get_size(1)) }
func DecoderStateSize() int { return int(C.opus_decoder_get_size(1)) }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

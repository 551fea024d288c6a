package rtpbridge

import (
	"fmt"
	"sync/atomic"
	"time"
)

// DirectionStats counts one direction of the bridge. Packet counts are RTP
// packets; a field that does not apply to a direction stays 0.
type DirectionStats struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`

	Lost         uint64 `json:"lost"`          // packets missing from the input sequence (gaps)
	FECRecovered uint64 `json:"fec_recovered"` // lost packets rebuilt from the next packet's in-band FEC
	Concealed    uint64 `json:"concealed"`     // lost (or undecodable) packets filled by packet-loss concealment
	Late         uint64 `json:"late"`          // duplicate or out-of-order packets discarded
	Malformed    uint64 `json:"malformed"`     // not RTP, empty payload, or a payload the codec rejects
	Resets       uint64 `json:"resets"`        // stream restarts: new SSRC, sequence jump, gap too long to conceal

	TelephoneEvents uint64 `json:"telephone_events"` // RFC 4733 packets received
	ComfortNoise    uint64 `json:"comfort_noise"`    // CN packets received (treated as silence)
	OtherPT         uint64 `json:"other_pt"`         // packets of any other payload type, ignored

	SilenceFrames   uint64 `json:"silence_frames"`  // frames sent as silence for want of input
	Overruns        uint64 `json:"overruns"`        // times the bounded PCM buffer dropped its oldest audio
	PacerResyncs    uint64 `json:"pacer_resyncs"`   // times the pacer fell too far behind and skipped frames
	EncodeErrors    uint64 `json:"encode_errors"`   // frames the encoder refused (none expected)
	WriteErrors     uint64 `json:"write_errors"`    // packets the output leg refused
	Discontinuities uint64 `json:"discontinuities"` // pauses in the input (DTX, DTMF) bridged by a timestamp jump

	Digits     uint64 `json:"digits"`      // DTMF digits found in the input (telephone-events, or tones in the PBX's audio)
	DigitsSent uint64 `json:"digits_sent"` // digits sent on (as events or tones), SendDigitTo… ones included
	// DigitsUnsent counts the PBX's digits that could not go on to
	// WhatsApp, its offer having negotiated no telephone-event (they are
	// still reported through OnDigit).
	DigitsUnsent uint64 `json:"digits_unsent"`
	Reordered    uint64 `json:"reordered"` // packets that came out of order and were put back in place

	// The playout buffer toward WhatsApp.
	Underruns      uint64 `json:"underruns"`        // packets that came after their time had begun to play (the delay then grows)
	CatchUps       uint64 `json:"catch_ups"`        // stretches of audio skipped to bring the delay back down
	PlayoutDelayMs uint64 `json:"playout_delay_ms"` // the delay it aims at now

	// Quality of the direction, from its input (quality.go). Each is
	// rounded to the hundredth.
	JitterMs float64 `json:"jitter_ms"` // interarrival jitter of the input's audio packets (RFC 3550 §6.4.1), current source
	LossPct  float64 `json:"loss_pct"`  // Lost as a share of the packets expected (PacketsIn + Lost), 0-100
	MOS      float64 `json:"mos"`       // estimated MOS (E-model, ITU-T G.107) from LossPct, JitterMs and the codecs the audio went through; 0 while nothing was received
}

// Stats is a snapshot of both directions.
type Stats struct {
	WhatsAppToSIP DirectionStats `json:"whatsapp_to_sip"`
	SIPToWhatsApp DirectionStats `json:"sip_to_whatsapp"`
	MOS           float64        `json:"mos"` // the call's estimated MOS: the worse direction's of those that received audio (0: none did)
}

func (s DirectionStats) String() string {
	return fmt.Sprintf("in %d pkts/%d B, out %d pkts/%d B, lost %d (fec %d, plc %d), late %d, malformed %d, resets %d, pauses %d, dtmf %d, cn %d, other pt %d, silence %d, overruns %d, pacer resyncs %d, encode errors %d, write errors %d, digits %d (sent %d, unsent %d), reordered %d, underruns %d, catch-ups %d, playout %d ms, jitter %.2f ms, loss %.2f%%, mos %.2f",
		s.PacketsIn, s.BytesIn, s.PacketsOut, s.BytesOut, s.Lost, s.FECRecovered, s.Concealed,
		s.Late, s.Malformed, s.Resets, s.Discontinuities, s.TelephoneEvents, s.ComfortNoise, s.OtherPT,
		s.SilenceFrames, s.Overruns, s.PacerResyncs, s.EncodeErrors, s.WriteErrors,
		s.Digits, s.DigitsSent, s.DigitsUnsent, s.Reordered, s.Underruns, s.CatchUps, s.PlayoutDelayMs, s.JitterMs, s.LossPct, s.MOS)
}

func (s Stats) String() string {
	return fmt.Sprintf("whatsapp→sip: %v | sip→whatsapp: %v | mos %.2f", s.WhatsAppToSIP, s.SIPToWhatsApp, s.MOS)
}

// dirCounters are the live counters of one direction. Each counter has one
// writer goroutine (digitsSent toward the PBX: the WhatsApp reader; the
// playout buffer's: whichever of the SIP reader and the pacer holds its
// lock); Stats reads them from any goroutine.
type dirCounters struct {
	packetsIn, bytesIn, packetsOut, bytesOut    atomic.Uint64
	lost, fecRecovered, concealed, late         atomic.Uint64
	malformed, resets                           atomic.Uint64
	telephoneEvents, comfortNoise, otherPT      atomic.Uint64
	silenceFrames, overruns, pacerResyncs       atomic.Uint64
	encodeErrors, writeErrors, discontinuities  atomic.Uint64
	digits, digitsSent, digitsUnsent, reordered atomic.Uint64
	underruns, catchUps, playoutDelayMs         atomic.Uint64
	jitterNs                                    atomic.Int64 // interarrivalJitter's estimate
	_                                           [64]byte     // keep the other direction's counters off this cache line
}

func (c *dirCounters) snapshot() DirectionStats {
	return DirectionStats{
		PacketsIn:       c.packetsIn.Load(),
		BytesIn:         c.bytesIn.Load(),
		PacketsOut:      c.packetsOut.Load(),
		BytesOut:        c.bytesOut.Load(),
		Lost:            c.lost.Load(),
		FECRecovered:    c.fecRecovered.Load(),
		Concealed:       c.concealed.Load(),
		Late:            c.late.Load(),
		Malformed:       c.malformed.Load(),
		Resets:          c.resets.Load(),
		TelephoneEvents: c.telephoneEvents.Load(),
		ComfortNoise:    c.comfortNoise.Load(),
		OtherPT:         c.otherPT.Load(),
		SilenceFrames:   c.silenceFrames.Load(),
		Overruns:        c.overruns.Load(),
		PacerResyncs:    c.pacerResyncs.Load(),
		EncodeErrors:    c.encodeErrors.Load(),
		WriteErrors:     c.writeErrors.Load(),
		Discontinuities: c.discontinuities.Load(),
		Digits:          c.digits.Load(),
		DigitsSent:      c.digitsSent.Load(),
		DigitsUnsent:    c.digitsUnsent.Load(),
		Reordered:       c.reordered.Load(),
		Underruns:       c.underruns.Load(),
		CatchUps:        c.catchUps.Load(),
		PlayoutDelayMs:  c.playoutDelayMs.Load(),
		JitterMs:        round2(float64(c.jitterNs.Load()) / float64(time.Millisecond)),
	}
}

// statsOf makes the snapshot of both directions' counters, with their
// quality estimates; sip is the SIP codec in force.
func statsOf(w2s, s2w *dirCounters, sip *sipCodec) Stats {
	st := Stats{WhatsAppToSIP: w2s.snapshot(), SIPToWhatsApp: s2w.snapshot()}
	a, b := &st.WhatsAppToSIP, &st.SIPToWhatsApp
	a.LossPct, b.LossPct = lossPct(a.PacketsIn, a.Lost), lossPct(b.PacketsIn, b.Lost)
	toSIP, toWA := directionMOS(sip.passthrough, sip.isOpus(), a.LossPct, a.JitterMs, b.LossPct, b.JitterMs)
	// A direction that received nothing has no quality to estimate: its MOS
	// stays 0 (unknown), and the call's is the other direction's, if any.
	if a.PacketsIn > 0 {
		a.MOS = round2(toSIP)
	}
	if b.PacketsIn > 0 {
		b.MOS = round2(toWA)
	}
	switch {
	case a.MOS > 0 && b.MOS > 0:
		st.MOS = min(a.MOS, b.MOS)
	default:
		st.MOS = max(a.MOS, b.MOS)
	}
	a.LossPct, b.LossPct = round2(a.LossPct), round2(b.LossPct)
	return st
}

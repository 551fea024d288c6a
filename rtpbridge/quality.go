package rtpbridge

import "math"

// Estimated MOS by the E-model (ITU-T G.107), narrowband scale.
//
// A call's quality is estimated per direction from what the bridge measured
// on that direction's input (packet loss and interarrival jitter) and from
// the codecs the audio went through:
//
//	R   = R0 − Id − Ie,eff                      (Is = 0, A = 0, R0 = 93.2: G.107 defaults)
//	Id  = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)  (G.107 simplified delay impairment)
//	d   = 80 ms + 2·jitter                      (assumed one-way mouth-to-ear delay: framing,
//	                                             network and a jitter buffer of twice the jitter)
//	Ie,eff = Ie + (95 − Ie)·Ppl / (Ppl + Bpl)   (random loss, BurstR = 1), for the codec whose
//	                                             packets were lost; Ie of the other codec of a
//	                                             transcoded path is added (G.113: tandem Ie add up)
//	MOS = 1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶, clamped to [1, 4.5]
//
// Codec values (Ie, Bpl): G.711 with PLC (0, 25.1) and G.722 taken as the
// same on this narrowband scale, from G.113 Appendix I; Opus as WhatsApp
// uses it (about 20 kbit/s, in-band FEC) (10, 20): an assumption, G.113
// lists no Opus value. The result is an estimate for comparing calls and
// spotting bad ones, not a listening test: the bridge cannot see loss
// beyond its own inputs, nor the real network delay.
const (
	mosR0        = 93.2
	mosBaseDelay = 80.0 // ms
)

type codecImpairment struct{ ie, bpl float64 }

var (
	impOpus = codecImpairment{ie: 10, bpl: 20}
	impG711 = codecImpairment{ie: 0, bpl: 25.1}
)

// estimateMOS rates one direction of a call. lossPct (0-100) is the loss
// seen on the input of that direction, coded with lossy; other is the codec
// the audio also went through (nil for a passthrough path).
func estimateMOS(lossy codecImpairment, other *codecImpairment, lossPct, jitterMs float64) float64 {
	lossPct = math.Max(0, math.Min(100, lossPct))
	jitterMs = math.Max(0, jitterMs)
	d := mosBaseDelay + 2*jitterMs
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ie := lossy.ie + (95-lossy.ie)*lossPct/(lossPct+lossy.bpl)
	if other != nil {
		ie += other.ie
	}
	return rToMOS(mosR0 - id - ie)
}

// rToMOS is G.107's conversion of the rating factor R to MOS.
func rToMOS(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	mos := 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
	return math.Max(1, math.Min(4.5, mos))
}

// directionMOS estimates both directions of a call through the bridge:
// WhatsApp → SIP (what the PBX's side hears: losses on the WhatsApp leg
// hit Opus) and SIP → WhatsApp (what the caller hears: losses on the SIP
// leg hit the SIP codec). passthrough is one codec end to end, no second
// one: Opus (an Opus-speaking PBX) or, when not opus, G.711 (a WhatsApp
// leg that negotiated the PBX's G.711).
func directionMOS(passthrough, opus bool, waLossPct, waJitterMs, sipLossPct, sipJitterMs float64) (toSIP, toWA float64) {
	if passthrough {
		imp := impOpus
		if !opus {
			imp = impG711
		}
		return estimateMOS(imp, nil, waLossPct, waJitterMs), estimateMOS(imp, nil, sipLossPct, sipJitterMs)
	}
	// G.711 and G.722 alike.
	sip := impG711
	return estimateMOS(impOpus, &sip, waLossPct, waJitterMs), estimateMOS(sip, &impOpus, sipLossPct, sipJitterMs)
}

// lossPct is the share of expected packets that never came.
func lossPct(received, lost uint64) float64 {
	if received+lost == 0 {
		return 0
	}
	return 100 * float64(lost) / float64(received+lost)
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

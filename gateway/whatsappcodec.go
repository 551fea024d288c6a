package gateway

import (
	"strings"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// The WhatsApp leg's codec (a trunk's whatsapp_codec). Meta offers PCMU and
// PCMA beside Opus when the number's calling settings list them in
// audio.additional_codecs (Meta, Cloud API Calling, call settings). On a
// g711 trunk a call whose offer has them offers the PBX that G.711 first;
// if the PBX answers with one Meta offered, the WhatsApp leg answers with it
// too and the bridge passes G.711 through: no Opus at all. Otherwise the
// leg runs Opus, transcoded as on an opus trunk.
//
// The price: Meta's answer must carry the chosen codec, and pre_accept and
// accept must carry the same answer (Meta, Cloud API Calling), so such a
// call answers Meta only once the PBX answered: the INVITE goes out first,
// and pre_accept, ICE and DTLS come after the 200 OK instead of while the
// PBX rings (the PBX's first audio is held meanwhile, as always before
// accept).

// trunkMedia is a trunk's media policy: how digits cross to it, and whether
// its calls may run G.711 on the WhatsApp leg.
type trunkMedia struct {
	dtmf dtmfPolicy
	g711 bool // whatsapp_codec: g711
}

// g711ToOffer is the G.711 codecs both Meta's offer and the trunk have, in
// the trunk's order (nil: none, or the offer does not parse; Answer then
// says why).
func g711ToOffer(offerSDP string, trunkCodecs []string) []string {
	offered, err := webrtc.OfferedCodecs(offerSDP)
	if err != nil {
		return nil
	}
	var out []string
	for _, name := range trunkCodecs {
		for _, c := range offered {
			if c.IsG711() && strings.EqualFold(c.Name, name) {
				out = append(out, c.Name)
				break
			}
		}
	}
	return out
}

// sipOfferCodecs is the INVITE's codec list: first, then the trunk's
// others in its order.
func sipOfferCodecs(first, trunkCodecs []string) []string {
	out := append([]string(nil), first...)
	for _, name := range trunkCodecs {
		dup := false
		for _, f := range first {
			dup = dup || strings.EqualFold(f, name)
		}
		if !dup {
			out = append(out, name)
		}
	}
	return out
}

// trunkCodecs is the trunk's codec list (its default if it names none).
func trunkCodecs(t *sip.Trunk) []string {
	if len(t.Codecs) == 0 {
		return sip.DefaultTrunkCodecs
	}
	return t.Codecs
}

// answerCodec is the WhatsApp leg's codec once the PBX answered with pbx,
// Meta having offered g711: that codec when Meta offered it, else Opus;
// and why, for the log.
func answerCodec(g711 []string, pbx sip.Codec) (codec, why string) {
	for _, name := range g711 {
		if strings.EqualFold(name, pbx.Name) {
			return name, "meta offered " + name + " and the pbx answered it: passthrough"
		}
	}
	return webrtc.CodecOpus, "the pbx answered " + pbx.Name + ", not the G.711 meta offered (" + strings.Join(g711, ", ") + "): opus, transcoded"
}

// g711Name is the webrtc name of a SIP codec that is G.711, "" for others.
func g711Name(sipCodec string) string {
	switch {
	case strings.EqualFold(sipCodec, webrtc.CodecPCMU):
		return webrtc.CodecPCMU
	case strings.EqualFold(sipCodec, webrtc.CodecPCMA):
		return webrtc.CodecPCMA
	}
	return ""
}

// logCodecChoice logs once per call on a g711 trunk which codec the
// WhatsApp leg runs, and why.
func logCodecChoice(log *zap.Logger, codec, why string) {
	log.Info("whatsapp codec chosen", zap.String("whatsapp_codec", codec), zap.String("why", why))
}

// bridgeWACodec is the WhatsApp leg's codec as the bridge names it: zero
// for Opus (on WhatsAppOpusPT), else the G.711 codec.
func bridgeWACodec(c webrtc.Codec) rtpbridge.Codec {
	if !c.IsG711() {
		return rtpbridge.Codec{}
	}
	return rtpbridge.Codec{Name: c.Name, PayloadType: c.PayloadType, ClockRate: c.ClockRate}
}

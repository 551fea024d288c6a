package gateway

import (
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
)

// buildBridge joins the two legs once the PBX answered. The PBX may start
// its greeting right after its 200 OK: that audio is held and played once
// Meta accepts (nothing may go to WhatsApp before).
func (c *call) buildBridge() error {
	log, pbx, leg := c.log, c.pbx, c.leg
	codec := pbx.Codec()
	info := newInfoSender(pbx, c.dtmf == rtpbridge.DTMFModeInfo, log)
	watch := newPBXRTPWatch(*c.g.cfg.Media.PBXRTPTimeout)
	c.pbxRTP = watch
	c.info = info
	bridge, err := rtpbridge.New(rtpbridge.Config{
		WhatsAppIn:         leg,
		WhatsAppOut:        leg,
		WhatsAppSSRC:       leg.SSRC(),
		WhatsAppOpusPT:     leg.OpusPayloadType(),
		WhatsAppDTMFPT:     leg.DTMFPayloadType(),
		SIPIn:              pbx,
		SIPOut:             pbx,
		SIPCodec:           bridgeCodec(codec),
		SIPDTMFPayloadType: pbx.DTMFPayloadType(),
		DTMFMode:           c.dtmf,
		OnDigit: func(from string, d rune) {
			log.Info("dtmf digit", zap.String("from", from), zap.String("digit", string(d)))
			if from == "whatsapp" {
				info.send(d)
			}
		},
		OpusComplexity: *c.g.cfg.Media.OpusComplexity,
	})
	if err != nil {
		return err
	}
	c.bridge = bridge
	c.ops.setBridge(bridge)
	bridge.StartSIPReceive()
	// Digits the PBX sends by SIP INFO reach the caller whatever the mode.
	pbx.SetOnInfoDigit(func(d rune, dur time.Duration) {
		log.Info("dtmf digit", zap.String("from", "sip-info"), zap.String("digit", string(d)))
		if err := bridge.SendDigitToWhatsApp(d, dur); err != nil {
			log.Warn("dtmf digit not forwarded", zap.Error(err))
		}
	})
	pbx.SetOnMediaChange(func(mc sip.MediaChange) {
		log.Info("pbx changed the media", zap.String("direction", mc.Direction), zap.String("codec", mc.Codec.Name),
			zap.Stringer("rtp_remote", mc.RemoteRTPAddr))
		watch.setHeld(mc.Direction) // a hold may send no RTP
		if err := bridge.SetSIPCodec(bridgeCodec(mc.Codec), mc.DTMFPayloadType); err != nil {
			log.Warn("cannot switch the bridge to the new codec", zap.Error(err))
			return
		}
		c.ops.codecChanged(c.g.ops.metrics, mc.Codec) // metrics and call record follow
	})
	return nil
}

// bridgeCodec is the SIP leg's codec as the bridge names it.
func bridgeCodec(c sip.Codec) rtpbridge.Codec {
	return rtpbridge.Codec{Name: c.Name, PayloadType: c.PayloadType, ClockRate: c.ClockRate}
}

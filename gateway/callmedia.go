package gateway

import (
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
)

// buildBridge joins the WhatsApp leg to the PBX's media: the answered
// call's, or its early media (a route with early_media: answer). The PBX
// may start its greeting at once: that audio is held and played once Meta
// accepts (nothing may go to WhatsApp before).
func (c *call) buildBridge(media pbxMedia) error {
	log, leg := c.log, c.leg
	codec, waCodec := media.Codec(), leg.Codec()
	mode, fellBack := c.dtmf.forPBX(media.DTMFPayloadType())
	switch {
	case fellBack:
		log.Warn("the PBX accepted no telephone-event (RFC 4733): caller digits go by the trunk's dtmf_fallback",
			zap.Stringer("dtmf_fallback", mode))
	case c.dtmf.drop && c.dtmf.mode == rtpbridge.DTMFModeRFC4733 && media.DTMFPayloadType() == 0:
		log.Warn("the PBX accepted no telephone-event (RFC 4733) and dtmf_fallback is none: caller digits are dropped")
	}
	info := newInfoSender(mode == rtpbridge.DTMFModeInfo, log)
	watch := newPBXRTPWatch(*c.g.cfg.Media.PBXRTPTimeout)
	c.pbxRTP = watch
	c.info = info
	c.ops.setDTMF(mode, fellBack)
	c.ops.setWhatsAppCodec(waCodec.Name)
	bridge, err := rtpbridge.New(rtpbridge.Config{
		WhatsAppIn:         leg,
		WhatsAppOut:        leg,
		WhatsAppSSRC:       leg.SSRC(),
		WhatsAppOpusPT:     leg.OpusPayloadType(),
		WhatsAppDTMFPT:     leg.DTMFPayloadType(),
		WhatsAppCodec:      bridgeWACodec(waCodec), // G.711: passed through to the same codec
		SIPIn:              media,
		SIPOut:             media,
		SIPCodec:           bridgeCodec(codec),
		SIPDTMFPayloadType: media.DTMFPayloadType(),
		DTMFMode:           mode,
		OnDigit: func(from string, d rune) {
			log.Info("dtmf digit", zap.String("from", from), zap.String("digit", string(d)))
			if from == "whatsapp" {
				info.send(d)
			}
		},
		OpusComplexity: opusComplexity(c.g.cfg.Media),
	})
	if err != nil {
		return err
	}
	c.bridge = bridge
	c.ops.setBridge(bridge)
	bridge.StartSIPReceive()
	return nil
}

// attachPBX ties the answered dialog to the bridge: digits the PBX sends by
// SIP INFO, the caller's digits sent as INFO, and media changes (hold,
// another codec) the PBX makes by re-INVITE.
func (c *call) attachPBX() {
	log, pbx, bridge, watch := c.log, c.pbx, c.bridge, c.pbxRTP
	c.info.attach(pbx)
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
		c.switchCodec(log, bridge, mc.Codec, mc.DTMFPayloadType)
	})
}

// switchCodec moves the bridge to the PBX's new codec (a re-INVITE, or a 200
// OK that differs from the 183 it bridged on). It runs on the SIP goroutine
// too: it takes the logger and bridge rather than read the call's fields.
func (c *call) switchCodec(log *zap.Logger, bridge *rtpbridge.Bridge, codec sip.Codec, dtmfPT uint8) {
	if err := bridge.SetSIPCodec(bridgeCodec(codec), dtmfPT); err != nil {
		log.Warn("cannot switch the bridge to the new codec", zap.Error(err))
		return
	}
	c.ops.codecChanged(c.g.ops.metrics, codec) // metrics and call record follow
}

// bridgeCodec is the SIP leg's codec as the bridge names it.
func bridgeCodec(c sip.Codec) rtpbridge.Codec {
	return rtpbridge.Codec{Name: c.Name, PayloadType: c.PayloadType, ClockRate: c.ClockRate}
}

// opusComplexity is the bridge's Opus complexity: the configured one, or
// rtpbridge's default for each rate.
func opusComplexity(m MediaConfig) int {
	if m.OpusComplexity == nil {
		return rtpbridge.OpusComplexityAuto
	}
	return *m.OpusComplexity
}

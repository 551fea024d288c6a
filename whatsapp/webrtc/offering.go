package webrtc

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"go.uber.org/zap"
)

// The offer side, for business-initiated calls (Meta, WhatsApp Cloud API
// Calling, business-initiated calls): the gateway makes the offer, sent in
// the Graph connect request, and Meta's answer arrives later in the
// connect webhook (direction BUSINESS_INITIATED). The offer follows Meta's
// media rules as our answers do: Opus and telephone-event on Meta's own
// payload numbers (with PCMU or PCMA first when asked: OfferWith), one
// audio m-line, rtcp-mux, BUNDLE, one fingerprint, one SSRC, full ICE with
// every candidate inside.
const (
	offerMid    = "0"
	offerProto  = "UDP/TLS/RTP/SAVPF" // DTLS-SRTP with RTCP feedback (RFC 5764 §8, RFC 8834)
	offerOpusPT = 111                 // Meta's numbers, as in its own offers (dynamic: RFC 7587 §7)
	offerDTMFPT = 126                 // telephone-event/8000 (RFC 4733 §7.1.1), dynamic too
	offerPtime  = 20                  // ms: Meta's media rules (RFC 7587 §7 allows 3-120)
)

// ErrAnswerSet is returned by a second SetAnswer: a leg takes one answer
// (no re-negotiation on the WhatsApp leg). A webhook delivered twice shows
// as this error and can be ignored.
var ErrAnswerSet = errors.New("webrtc: the offer was already answered")

// Offer makes a leg that offers: Opus/48000/2 on payload type 111
// (minptime=10;useinbandfec=1, ptime 20) and telephone-event/8000 on 126,
// one audio m-line with rtcp-mux and BUNDLE, a=setup:actpass (the answer
// picks the DTLS roles), our one sha-256 fingerprint, full ICE with every
// host candidate of the shared sockets in the SDP (no trickle:
// a=end-of-candidates), our one SSRC, sendrecv. The leg sends nothing and
// takes no packet until SetAnswer; the wait for the answer is the
// caller's to bound (Close ends it). Before the answer, Codec,
// OpusPayloadType and DTMFPayloadType are the offered ones, AnswerSDP is "".
func (m *Media) Offer(ctx context.Context, log *zap.Logger) (*Leg, error) {
	return m.OfferWith(ctx, "", log)
}

// OfferWith is Offer with g711 (CodecPCMU or CodecPCMA; "" for none)
// offered first, on its static payload type (RFC 3551 §6), before Opus:
// Meta's answer picks one of them (where the number's
// audio.additional_codecs allows G.711), and Codec says which once it is
// set.
func (m *Media) OfferWith(ctx context.Context, g711 string, log *zap.Logger) (*Leg, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("webrtc: offer: %w", err)
	}
	codecs := []Codec{{Name: CodecOpus, PayloadType: offerOpusPT, ClockRate: 48000}}
	switch g711 {
	case "":
	case CodecPCMU:
		codecs = append([]Codec{{Name: CodecPCMU, PayloadType: staticPCMU, ClockRate: 8000}}, codecs...)
	case CodecPCMA:
		codecs = append([]Codec{{Name: CodecPCMA, PayloadType: staticPCMA, ClockRate: 8000}}, codecs...)
	default:
		return nil, fmt.Errorf("webrtc: offer: %q is not %s or %s", g711, CodecPCMU, CodecPCMA)
	}
	l := m.newLeg(log)
	l.local = &localDesc{
		mid:    offerMid,
		proto:  offerProto,
		codecs: codecs,
		dtmfPT: offerDTMFPT,
		ptime:  offerPtime,
		// The offerer lets the answerer choose the DTLS roles (RFC 5763 §5,
		// RFC 8842 §5.2).
		setup: "actpass",
		ufrag: l.ice.localUfrag,
		pwd:   l.ice.localPwd,
		ssrc:  l.ssrc,
	}
	l.offer = m.writeSDP(l.local)
	return l, nil
}

// OfferSDP is the offer of a leg made by Offer ("" on a leg made by
// Answer).
func (l *Leg) OfferSDP() string { return l.offer }

// SetAnswer applies the answer to the leg's offer (Meta's, from the
// connect webhook) and starts ICE and DTLS. The answer is checked as
// offers are (tokens, ICE credentials, one sha-256 fingerprint, the audio
// m-line with Opus) and must keep to the offer: one m-line, only the
// payload types we offered with the codecs we offered them for, a=setup
// active or passive. ICE: we control (RFC 8445 §6.1.1: against an ICE-lite
// answerer such as Meta as the full agent, against a full one as the
// offerer; conflicts are settled by ice.go). DTLS (RFC 5763 §5): an active
// answerer is the client and we the server; a passive one the server and
// we the client.
//
// It is taken once: a second call returns ErrAnswerSet, a call after
// Close ErrLegClosed (wrapped), a call on a leg made by Answer an error.
// An invalid answer returns the reason and fails the leg with it (Failed,
// Err); the leg is still to be closed, and holds nothing until then.
func (l *Leg) SetAnswer(answerSDP string) error {
	l.life.Lock()
	defer l.life.Unlock()
	switch {
	case l.local == nil:
		return errors.New("webrtc: set answer: the leg answered an offer; it has none of its own")
	case l.ending:
		return fmt.Errorf("webrtc: set answer: %w", ErrLegClosed)
	case l.answered:
		return ErrAnswerSet
	}
	l.answered = true
	a, err := parseAnswer(answerSDP, l.local)
	if err == nil {
		err = l.setRemote(a, true)
	}
	if err != nil {
		err = fmt.Errorf("webrtc: set answer: %w", err)
		l.fail(err)
		return err
	}
	l.dtlsClient = a.setup == "passive"
	l.log.Debug("webrtc: answer set", zap.Bool("peer_ice_lite", a.lite), zap.String("peer_setup", a.setup),
		zap.Stringer("codec", a.chosen), zap.Uint8("dtmf_pt", a.dtmfPT))
	l.start() // under life: Close either waits for it or came before
	return nil
}

// parseAnswer reads the answer to our offer ours: a remote description
// (parseRemote's checks) that answers our one m-line, with our mid if it
// has one, our payload numbers, and a DTLS role.
func parseAnswer(text string, ours *localDesc) (*remoteDesc, error) {
	a, err := parseRemote(text, "answer")
	if err != nil {
		return nil, err
	}
	if n := 1 + len(a.others); n != 1 {
		return nil, fmt.Errorf("answer has %d m-lines; the offer has 1 (RFC 3264 §6: one for each offered)", n)
	}
	if a.port == 0 {
		return nil, errors.New("answer rejects the audio m-line (port 0, RFC 3264 §6)")
	}
	if a.mid != "" && a.mid != ours.mid {
		return nil, fmt.Errorf("answer's a=mid %q is not the offer's %q (RFC 5888 §9.1)", a.mid, ours.mid)
	}
	switch a.setup {
	case "active", "passive":
	case "":
		return nil, errors.New("answer has no a=setup; an answerer must choose active or passive (RFC 5763 §5)")
	default: // actpass, holdconn or anything else
		return nil, fmt.Errorf("answer has a=setup:%q; an answerer must choose active or passive (RFC 5763 §5)", a.setup)
	}
	// Each format listed must be one we offered, for the codec we offered
	// it for (RFC 3264 §6.1: the answer keeps the offer's numbers): the
	// bridge reads and writes exactly these numbers. The first audio codec
	// listed is the call's (the answerer's preference, RFC 3264 §6.1).
	dtmf := strconv.Itoa(int(ours.dtmfPT))
	var haveAudio, haveDTMF bool
	for _, f := range a.formats {
		c, offered := ourCodec(ours, f)
		switch {
		case offered && hasCodec(a.audio, c):
			if !haveAudio {
				a.chosen, haveAudio = c, true
			}
		case offered:
			return nil, fmt.Errorf("answer lists payload type %s, offered for %s, without mapping it to %s", f, c.rtpmap(), c.Name)
		case ours.dtmfPT != 0 && f == dtmf && a.dtmfPT == ours.dtmfPT:
			haveDTMF = true
		case ours.dtmfPT != 0 && f == dtmf:
			return nil, fmt.Errorf("answer lists payload type %s, offered for telephone-event/8000, without mapping it to telephone-event/8000", f)
		default:
			return nil, fmt.Errorf("answer lists payload type %q, which the offer does not have (RFC 3264 §6.1)", f)
		}
	}
	if !haveAudio {
		return nil, fmt.Errorf("answer's audio m-line lists none of the offered codecs %v", ours.codecs)
	}
	if !haveDTMF {
		a.dtmfPT = 0 // an a=rtpmap of a format not listed says nothing (RFC 8866 §6.6)
	}
	return a, nil
}

// ourCodec is the codec we offered on payload type f, if any.
func ourCodec(ours *localDesc, f string) (Codec, bool) {
	for _, c := range ours.codecs {
		if strconv.Itoa(int(c.PayloadType)) == f {
			return c, true
		}
	}
	return Codec{}, false
}

// hasCodec reports whether cs maps c's payload type to c.
func hasCodec(cs []Codec, c Codec) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// Package webrtc is the gateway's own small WebRTC endpoint for WhatsApp
// calls: it answers the caller's SDP offer (user-initiated calls) or makes
// the offer and takes Meta's answer (business-initiated calls), and carries
// the call's audio, shaped by Meta's media rules (Meta, WhatsApp Cloud API
// Calling, https://developers.facebook.com/docs/whatsapp/cloud-api/calling/:
// an ICE-lite peer, the business as DTLS client when it answers, Opus with
// telephone-event, or PCMU/PCMA where Meta offers them: codec.go) rather
// than a browser's stack:
//
//   - media.go: Media, the ICE UDP sockets every call shares (one port),
//     and the DTLS certificate every leg presents;
//   - socket.go, socket_batch_*.go: one reader per socket demultiplexing
//     STUN, DTLS and SRTP to the calls (RFC 7983), reading datagrams in
//     batches where the platform allows;
//   - offer.go: the peer's SDP read (pion/sdp): the caller's offer, or the
//     answer to ours;
//   - localsdp.go: our SDP written, offer or answer (RFC 8829 §5.2-5.3,
//     RFC 8839, RFC 8842); answer.go: our answer to an offer;
//   - offering.go: business-initiated calls: our offer (Offer), Meta's
//     answer applied (SetAnswer: ICE controlling, RFC 8445 §6.1.1; the DTLS
//     role from its a=setup, RFC 5763 §5);
//   - ice.go: a full ICE agent per call (RFC 8445) and consent freshness
//     (RFC 7675);
//   - leg.go: Leg, one call's media: DTLS-SRTP (RFC 5764, in dtlssrtp/),
//     client when we answer, either role when we offer, and the RTP packets
//     in and out, with the negotiated payload types;
//   - rtcp.go: the sender reports (RFC 3550 §6.4.1).
//
// The Cloud API signalling that carries the offer and the answer is package
// whatsapp. Neither imports the other, the SIP side or the media bridge.
package webrtc

// Package webrtc is the gateway's own small WebRTC endpoint for WhatsApp
// calls: it answers the caller's SDP offer and carries the call's audio,
// shaped by Meta's media rules (Meta, WhatsApp Cloud API Calling,
// https://developers.facebook.com/docs/whatsapp/cloud-api/calling/: an
// ICE-lite offerer, the business as DTLS client, Opus with
// telephone-event) rather than a browser's stack:
//
//   - media.go: Media, the ICE UDP sockets every call shares (one port),
//     and the DTLS certificate every leg presents;
//   - socket.go, socket_batch_*.go: one reader per socket demultiplexing
//     STUN, DTLS and SRTP to the calls (RFC 7983), reading datagrams in
//     batches where the platform allows;
//   - offer.go: the caller's SDP offer read (pion/sdp);
//   - answer.go: our SDP answer written (RFC 8829 §5.3, RFC 8839);
//   - ice.go: a full ICE agent per call (RFC 8445) and consent freshness
//     (RFC 7675);
//   - leg.go: Leg, one call's media: DTLS-SRTP as client (RFC 5764, in
//     dtlssrtp/) and the RTP packets in and out, with the offer's payload
//     types;
//   - rtcp.go: the sender reports (RFC 3550 §6.4.1).
//
// The Cloud API signalling that carries the offer and the answer is package
// whatsapp. Neither imports the other, the SIP side or the media bridge.
package webrtc

// Package whatsapp is the gateway's WhatsApp side: the Cloud API calling
// webhooks (webhook.go, event.go, dedupe.go), the Graph API call actions
// (graph.go, graph_error.go), and each call's WebRTC media leg.
//
// The media leg is a small WebRTC endpoint of the gateway's own, shaped by
// Meta's media rules (whatsapp-calling.md) rather than a browser's stack:
//
//   - webrtc.go: Media, the ICE UDP sockets every call shares (one port);
//   - socket.go: one reader per socket demultiplexing STUN, DTLS and SRTP
//     to the calls (RFC 7983);
//   - offer.go, answer.go: the caller's SDP offer read (pion/sdp), our answer
//     written;
//   - ice.go: a full ICE agent per call (RFC 8445), consent (RFC 7675);
//   - leg.go: Leg, DTLS-SRTP as client (dtlssrtp/) and the packets in and
//     out as the bridge reads and writes them;
//   - rtcp.go: the sender reports.
//
// wasim/ is the Cloud API simulator that tests it all.
package whatsapp

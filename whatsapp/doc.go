// Package whatsapp is the gateway's WhatsApp Cloud API signalling (Meta,
// WhatsApp Cloud API Calling,
// https://developers.facebook.com/docs/whatsapp/cloud-api/calling/):
//
//   - webhook.go: the calls webhook, its verification handshake and its
//     X-Hub-Signature-256 check;
//   - event.go: the call events a webhook carries (connect, terminate,
//     status), the caller's SDP offer or Meta's answer among them, and
//     call permission replies;
//   - event_account.go: account events (calling settings changed,
//     calling violations and restrictions) and voicemails;
//   - dedupe.go: Meta's retried deliveries taken once;
//   - forward.go: the deliveries the gateway does not consume passed on,
//     signed as Meta sent them, to another application;
//   - graph.go, graph_error.go: the Graph API call actions (pre_accept,
//     accept, reject, terminate) and their errors;
//   - graph_bic.go, ratelimit.go: business-initiated calls (connect) and
//     call permissions (request, state);
//   - settings.go: the number's calling settings (read, write, check);
//   - media.go: the voicemail announcement upload and media downloads.
//
// The media of a call is not here: the gateway's WebRTC endpoint (ICE,
// DTLS-SRTP, the Opus stream) is package whatsapp/webrtc, which this
// package does not import, nor it this one. rtptrack/ is a pion audio track
// and wasim/ the Cloud API simulator, both test tooling.
package whatsapp

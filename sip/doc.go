// Package sip is the gateway's SIP side, built on sipgo's transport and
// transaction layers with its own dialog handling:
//
//   - UA places calls to a PBX through a Trunk (Invite): SDP offer of the
//     trunk's codecs plus telephone-event/8000 on PT 101, one answer to a
//     401/407 digest challenge, 1xx reported through OnProgress, ACK of the
//     2xx (re-sent on 2xx retransmissions), CANCEL when the context ends
//     first (sent only once a provisional response came, RFC 3261 §9.1; a
//     2xx that crosses the CANCEL is ACKed and ended with BYE), non-2xx as
//     *FinalError.
//   - UA takes the calls a trunk places to it (UAConfig.OnInvite, the agent
//     dialling a WhatsApp user): only from a trunk's addresses, digest
//     authenticated (401, RFC 3261 §22.4) when the trunk has credentials,
//     at most MaxPendingInvites unanswered at once (then 503 Retry-After).
//     The INVITE's offer is answered with its first codec the trunk has
//     (488 with a Warning if none); an INVITE without SDP gets our offer in
//     the 200 and its answer from the ACK. InboundCall rings (180, 183 with
//     SDP), reads and writes RTP before the answer, and ends with Answer
//     (200 retransmitted until the ACK, then the same Call as outgoing
//     calls), Reject (code, Reason, Warning) or Close (480); the PBX's
//     CANCEL closes Cancelled. Without OnInvite a new INVITE gets 403.
//   - As UAS for its calls' dialogs it answers BYE, OPTIONS, NOTIFY, INFO
//     and re-INVITE/UPDATE; unknown dialogs get 481, OPTIONS outside a
//     dialog 200 (PBX qualify).
//   - A new offer from the PBX (re-INVITE or UPDATE) is answered with its
//     first codec among the trunk's (a codec switch is accepted), its
//     telephone-event PT and the mirrored direction (sendonly → recvonly,
//     inactive → inactive; c=0.0.0.0 counts as hold); no common codec gets
//     488. A re-INVITE without SDP gets our offer and its answer is taken
//     from the ACK. Call.SetOnMediaChange hears of each change once the 200
//     is sent. While the PBX holds the call the RTP socket stays open and
//     reads go on, but WritePacket sends nothing.
//   - DTMF over SIP INFO (RFC 2976 usage): Call.SendInfoDigit sends
//     application/dtmf-relay; received application/dtmf-relay and
//     application/dtmf digits go to Call.SetOnInfoDigit (other bodies 415,
//     bad digits 400).
//   - Call carries the media: one RTP socket on an even port of the UA's
//     range, symmetric RTP (send to where the PBX's packets come from once
//     one has arrived), and a read/write path that does not allocate.
//   - SDP is parsed with pion/sdp and written by hand (BuildSDP, ParseSDP,
//     NegotiateCodec): static PTs 0/8/9 are understood without rtpmap, CN is
//     never taken as the audio codec.
//   - EchoServer is a UAS that answers any INVITE and reflects RTP, for the
//     demo and load tests; it takes DTMF INFO too.
//
// sipgo's log/slog output goes to the zap logger given in the config. Trunk
// passwords are never logged.
package sip

package webrtc

// buildAnswer writes the SDP answer (JSEP §5.3) to offer o with the shared
// writer (localsdp.go): the offer's mid and payload numbers for the codec
// chosen (o.chosen: Opus, or PCMU/PCMA when offered and asked for) and
// telephone-event/8000 (RFC 3264 §6.1: one codec, so the caller sends only
// it), a=setup:active (the gateway is the DTLS client, as Meta expects;
// RFC 5763 §5), and every other m-line of the offer rejected (RFC 3264 §6:
// port 0).
func (m *Media) buildAnswer(o *remoteDesc, ufrag, pwd string, ssrc uint32) string {
	return m.writeSDP(&localDesc{
		mid:      o.mid,
		proto:    o.proto,
		codecs:   []Codec{o.chosen},
		dtmfPT:   o.dtmfPT,
		setup:    "active",
		ufrag:    ufrag,
		pwd:      pwd,
		ssrc:     ssrc,
		rejected: o.others,
	})
}

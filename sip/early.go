package sip

import (
	"errors"
	"net"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// EarlyMedia is the PBX's media before it answers: the SDP of a provisional
// response (183 Session Progress, RFC 3960 §3, the gateway model), on the
// RTP socket the call keeps once answered. An IVR greeting played with
// Asterisk's Progress() or FreeSWITCH's pre_answer arrives here.
//
// Reads and writes go on across the answer: once the 2xx came they are the
// call's (its hold state applies to writes). The codec and telephone-event
// payload type are the 183's; the answered Call says if the 2xx changed them.
type EarlyMedia struct {
	rtp    *RTPConn
	codec  Codec
	dtmfPT uint8
	sendOK bool // the 183's direction lets us send
	call   atomic.Pointer[Call]
}

// Codec is the codec of the PBX's early answer, with its payload type.
func (m *EarlyMedia) Codec() Codec { return m.codec }

// DTMFPayloadType is the early answer's telephone-event payload type, 0 if none.
func (m *EarlyMedia) DTMFPayloadType() uint8 { return m.dtmfPT }

// RemoteRTPAddr is where RTP goes now.
func (m *EarlyMedia) RemoteRTPAddr() *net.UDPAddr { return m.rtp.Remote() }

// ReadPacket reads the next RTP packet from the PBX; see RTPConn.
func (m *EarlyMedia) ReadPacket(b []byte) (int, error) { return m.rtp.ReadPacket(b) }

// WritePacket sends one RTP packet to the PBX: before the answer only if the
// 183's SDP lets us send (RFC 3264 §6.1), after it as Call.WritePacket.
func (m *EarlyMedia) WritePacket(b []byte) error {
	if c := m.call.Load(); c != nil {
		return c.WritePacket(b)
	}
	if !m.sendOK {
		return nil
	}
	return m.rtp.WritePacket(b)
}

// earlyMedia turns a provisional response's SDP into early media on rtp, or
// says why it cannot: no SDP, or none of the offered codecs.
func earlyMedia(res *sip.Response, rtp *RTPConn, offered []Codec) (*EarlyMedia, error) {
	info, err := ParseSDP(res.Body())
	if err != nil {
		return nil, err
	}
	codec, ok := NegotiateCodec(offered, info.Codecs)
	if !ok {
		return nil, errors.New("sdp: early answer holds none of the offered codecs")
	}
	dir := remoteDirection(info)
	rtp.SetPayloadTypes(streamPTs(codec, info.DTMFPayloadType)...)
	rtp.SetRemote(info.Addr)
	return &EarlyMedia{rtp: rtp, codec: codec, dtmfPT: info.DTMFPayloadType, sendOK: peerReceives(dir)}, nil
}

// hasSDP reports whether a response's body is SDP (as isSDPRequest).
func hasSDP(res *sip.Response) bool {
	if ct := res.ContentType(); ct != nil {
		return mediaType(ct.Value()) == "application/sdp"
	}
	return isSDP(res.Body())
}

package sip

import (
	"strings"
	"testing"
)

// FuzzParsePBXSDP goes further than sdp_test.go's FuzzParseSDP (which
// checks that an address is given). Any body a PBX sends as its SDP answer
// or in a re-INVITE offer: ParseSDP never panics, and what it accepts is
// usable: an IP and a port 1-65535, one of the four directions, codecs we
// know with the peer's payload types (0-127).
func FuzzParsePBXSDP(f *testing.F) {
	for _, s := range []string{
		string(BuildSDP(SDPParams{})),
		"v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
			"m=audio 4000 RTP/AVP 0 8 9 101 13\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:9 G722/8000\r\na=sendonly\r\n",
		"v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n" +
			"m=audio 0 RTP/AVP 0\r\nm=audio 4002 RTP/AVPF 111 102\r\nc=IN IP6 2001:db8::1\r\n" +
			"a=rtpmap:111 opus/48000/2\r\na=rtpmap:102 telephone-event/48000\r\na=inactive\r\n",
		"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 224.2.1.1/127\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
		"v=0\r\no=- 18446744073709551615 18446744073709551615 IN IP4 a\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/SAVP 300 x\r\na=rtpmap:300 PCMU/8000\r\na=rtpmap:0 PCMU/99999999999\r\n",
		"v=0\n",
		"",
	} {
		f.Add([]byte(s))
	}
	dirs := map[string]bool{"sendrecv": true, "sendonly": true, "recvonly": true, "inactive": true}
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := ParseSDP(body)
		if err != nil {
			return
		}
		if info.Addr == nil || info.Addr.IP == nil || info.Addr.Port < 1 || info.Addr.Port > 65535 {
			t.Fatalf("address %v", info.Addr)
		}
		if !dirs[info.Direction] {
			t.Fatalf("direction %q", info.Direction)
		}
		if info.DTMFPayloadType > 127 {
			t.Fatalf("telephone-event payload type %d", info.DTMFPayloadType)
		}
		for _, c := range info.Codecs {
			known, ok := LookupCodec(c.Name)
			if !ok || !strings.EqualFold(known.Name, c.Name) || known.ClockRate != c.ClockRate || c.PayloadType > 127 {
				t.Fatalf("codec %+v", c)
			}
		}
	})
}

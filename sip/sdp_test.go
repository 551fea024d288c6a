package sip

import (
	"net"
	"strings"
	"testing"
)

func sdpLines(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n") }

func TestBuildSDPOffer(t *testing.T) {
	b := string(BuildSDP(SDPParams{
		SessionID: 42, Version: 1, Host: "192.0.2.10", Port: 20000,
		Codecs:          []Codec{{"PCMU", 0, 8000}, {"PCMA", 8, 8000}, {"G722", 9, 8000}, {"opus", 111, 48000}},
		DTMFPayloadType: 101,
	}))
	for _, want := range []string{
		"v=0\r\n", "o=wagateway 42 1 IN IP4 192.0.2.10\r\n", "c=IN IP4 192.0.2.10\r\n", "t=0 0\r\n",
		"m=audio 20000 RTP/AVP 0 8 9 111 101\r\n",
		"a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:9 G722/8000\r\n", "a=rtpmap:111 opus/48000/2\r\n",
		"a=rtpmap:101 telephone-event/8000\r\n", "a=fmtp:101 0-16\r\n", "a=ptime:20\r\n", "a=sendrecv\r\n",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("offer lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "0.0.0.0") {
		t.Errorf("offer holds 0.0.0.0:\n%s", b)
	}
	// Our own offer parses back to what we put in.
	info, err := ParseSDP([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	if info.Addr.String() != "192.0.2.10:20000" || len(info.Codecs) != 4 || info.DTMFPayloadType != 101 || info.Direction != "sendrecv" {
		t.Errorf("round trip: %+v", info)
	}
	if info.SessionID != 42 || info.Version != 1 {
		t.Errorf("origin %d %d", info.SessionID, info.Version)
	}

	v6 := string(BuildSDP(SDPParams{Host: "2001:db8::1", Port: 30000, Codecs: []Codec{{"PCMU", 0, 8000}}, Direction: "recvonly"}))
	if !strings.Contains(v6, "c=IN IP6 2001:db8::1\r\n") || !strings.Contains(v6, "a=recvonly\r\n") || strings.Contains(v6, "telephone-event") {
		t.Errorf("IPv6 / direction / no DTMF:\n%s", v6)
	}
}

func TestParseSDP(t *testing.T) {
	tests := []struct {
		name   string
		body   []byte
		addr   string
		codecs []Codec
		dtmf   uint8
		dir    string
	}{
		{
			name: "static payload types without rtpmap, session-level c=",
			body: sdpLines("v=0", "o=- 1 1 IN IP4 203.0.113.5", "s=-", "c=IN IP4 203.0.113.5", "t=0 0", "m=audio 4000 RTP/AVP 8 0 9"),
			addr: "203.0.113.5:4000", codecs: []Codec{{"PCMA", 8, 8000}, {"PCMU", 0, 8000}, {"G722", 9, 8000}}, dir: "sendrecv",
		},
		{
			name: "CN ignored, telephone-event found, media-level c= wins",
			body: sdpLines("v=0", "o=- 1 1 IN IP4 203.0.113.5", "s=-", "c=IN IP4 203.0.113.5", "t=0 0",
				"m=audio 4002 RTP/AVP 13 0 101", "c=IN IP4 198.51.100.7", "a=rtpmap:13 CN/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"),
			addr: "198.51.100.7:4002", codecs: []Codec{{"PCMU", 0, 8000}}, dtmf: 101, dir: "sendrecv",
		},
		{
			name: "CN without rtpmap is not a codec",
			body: sdpLines("v=0", "o=- 1 1 IN IP4 203.0.113.5", "s=-", "c=IN IP4 203.0.113.5", "t=0 0", "m=audio 4000 RTP/AVP 13 8"),
			addr: "203.0.113.5:4000", codecs: []Codec{{"PCMA", 8, 8000}}, dir: "sendrecv",
		},
		{
			name: "private address kept as announced; dynamic opus; unknown codecs skipped; 8000 DTMF preferred",
			body: sdpLines("v=0", "o=- 1 1 IN IP4 10.1.2.3", "s=-", "c=IN IP4 10.1.2.3", "t=0 0",
				"m=audio 5004 RTP/AVP 96 18 97 100 101", "a=rtpmap:96 opus/48000/2", "a=rtpmap:18 G729/8000",
				"a=rtpmap:97 speex/16000", "a=rtpmap:100 telephone-event/48000", "a=rtpmap:101 telephone-event/8000", "a=sendonly"),
			addr: "10.1.2.3:5004", codecs: []Codec{{"opus", 96, 48000}}, dtmf: 101, dir: "sendonly",
		},
		{
			name: "rejected video first, session-level direction",
			body: sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "a=inactive",
				"m=video 0 RTP/AVP 96", "m=audio 0 RTP/AVP 0", "m=audio 6000 RTP/AVP 0"),
			addr: "192.0.2.1:6000", codecs: []Codec{{"PCMU", 0, 8000}}, dir: "inactive",
		},
		{
			name: "hold with 0.0.0.0",
			body: sdpLines("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 0.0.0.0", "t=0 0", "m=audio 6000 RTP/AVP 0"),
			addr: "0.0.0.0:6000", codecs: []Codec{{"PCMU", 0, 8000}}, dir: "sendrecv",
		},
		{
			name: "IPv6",
			body: sdpLines("v=0", "o=- 1 1 IN IP6 2001:db8::2", "s=-", "c=IN IP6 2001:db8::2", "t=0 0", "m=audio 7000 RTP/AVP 0"),
			addr: "[2001:db8::2]:7000", codecs: []Codec{{"PCMU", 0, 8000}}, dir: "sendrecv",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ParseSDP(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if info.Addr.String() != tc.addr {
				t.Errorf("addr %s, want %s", info.Addr, tc.addr)
			}
			if len(info.Codecs) != len(tc.codecs) {
				t.Fatalf("codecs %+v, want %+v", info.Codecs, tc.codecs)
			}
			for i := range tc.codecs {
				if info.Codecs[i] != tc.codecs[i] {
					t.Errorf("codec %d: %+v, want %+v", i, info.Codecs[i], tc.codecs[i])
				}
			}
			if info.DTMFPayloadType != tc.dtmf {
				t.Errorf("dtmf %d, want %d", info.DTMFPayloadType, tc.dtmf)
			}
			if info.Direction != tc.dir {
				t.Errorf("direction %s, want %s", info.Direction, tc.dir)
			}
		})
	}
}

func TestParseSDPErrors(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":        nil,
		"garbage":      []byte("hello"),
		"no audio":     sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=video 5000 RTP/AVP 96"),
		"all rejected": sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 0 RTP/AVP 0"),
		"no c=":        sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 5000 RTP/AVP 0"),
		"srtp":         sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 5000 RTP/SAVP 0"),
		"fqdn c=":      sdpLines("v=0", "o=- 1 1 IN IP4 pbx.example", "s=-", "c=IN IP4 pbx.example", "t=0 0", "m=audio 5000 RTP/AVP 0"),
	} {
		if info, err := ParseSDP(body); err == nil {
			t.Errorf("%s: parsed as %+v", name, info)
		}
	}
}

func TestNegotiateCodec(t *testing.T) {
	ours := []Codec{{"PCMU", 0, 8000}, {"PCMA", 8, 8000}}
	c, ok := NegotiateCodec(ours, []Codec{{"G722", 9, 8000}, {"PCMA", 8, 8000}, {"PCMU", 0, 8000}})
	if !ok || c.Name != "PCMA" {
		t.Errorf("got %+v %v, want PCMA (the answer's first common codec)", c, ok)
	}
	c, ok = NegotiateCodec([]Codec{{"opus", 111, 48000}}, []Codec{{"OPUS", 96, 48000}})
	if !ok || c.PayloadType != 96 {
		t.Errorf("got %+v, want the peer's PT 96", c)
	}
	if _, ok := NegotiateCodec(ours, []Codec{{"G722", 9, 8000}}); ok {
		t.Error("negotiated without a common codec")
	}
	if AnswerDirection("sendonly") != "recvonly" || AnswerDirection("recvonly") != "sendonly" || AnswerDirection("inactive") != "inactive" || AnswerDirection("") != "sendrecv" {
		t.Error("AnswerDirection")
	}
}

func TestLookupCodec(t *testing.T) {
	for _, n := range []string{"pcmu", "PCMA", "g722", "OPUS"} {
		if _, ok := LookupCodec(n); !ok {
			t.Errorf("%s not found", n)
		}
	}
	if _, ok := LookupCodec("G729"); ok {
		t.Error("G729 found")
	}
	if c, _ := staticPT(13); c.Name != "" {
		t.Error("PT 13 resolved as a codec")
	}
	_ = net.IPv4len
}

func FuzzParseSDP(f *testing.F) {
	f.Add(sdpLines("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 5000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"))
	f.Add([]byte("v=0\r\nm=audio 1 RTP/AVP 300 x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseSDP(b)
		if err == nil && (info.Addr == nil || info.Addr.Port == 0) {
			t.Fatalf("accepted without an address: %+v", info)
		}
	})
}

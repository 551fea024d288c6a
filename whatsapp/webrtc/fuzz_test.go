package webrtc

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/stun/v4"
)

func fuzzMedia(f *testing.F) *Media {
	m, err := NewMedia(MediaConfig{UDPPort: 0, ListenIPs: []string{"127.0.0.1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	return m
}

// Any offer text: parseOffer never panics, and for every offer it accepts
// the answer we build parses with pion/sdp, has no control character but
// the CRLF line ends, and answers every m-line of the offer (RFC 3264 §6).
func FuzzOfferAnswer(f *testing.F) {
	meta, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(meta))
	f.Add(strings.ReplaceAll(string(meta), "\r\n", "\n"))
	f.Add(strings.Replace(string(meta), "a=mid:audio", "a=mid:au\rdio", 1))
	f.Add(strings.Replace(string(meta), "a=group:BUNDLE audio", "a=group:BUNDLE \r", 1))
	f.Add(testOffer(true, "abcd", "0123456789abcdefghijklmn", netip.MustParseAddrPort("192.0.2.1:4000")))
	f.Add(testOffer(false, "ab+/", "0123456789abcdefghijklmn", netip.MustParseAddrPort("[2001:db8::1]:4000")) +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")
	f.Add("v=0\r\n")
	m := fuzzMedia(f)
	f.Fuzz(func(t *testing.T, text string) {
		o, err := parseOffer(text)
		if err != nil {
			return
		}
		a := m.buildAnswer(o, "abcd", "0123456789abcdefghijklmn", 1)
		if !answerIsClean(a) {
			t.Fatalf("answer has control characters:\n%q", a)
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(a); err != nil {
			t.Fatalf("answer does not parse: %v\n%q", err, a)
		}
		if len(sd.MediaDescriptions) != 1+len(o.others) {
			t.Fatalf("answer has %d m-lines for %d in the offer:\n%q", len(sd.MediaDescriptions), 1+len(o.others), a)
		}
		if mid, _ := sd.MediaDescriptions[0].Attribute("mid"); mid != o.mid {
			t.Fatalf("answer's mid %q, offer's %q", mid, o.mid)
		}
	})
}

// Any datagram on the shared ICE port, from a caller's address: the demux
// (RFC 7983 by first byte), the STUN decoding and the ICE agents of two
// live calls (one controlling against ICE-lite, one controlled) never
// panic nor block. The seeds include checks with the right credentials, so
// the fuzzer also reaches the answering, selecting and media paths.
func FuzzICEDatagram(f *testing.F) {
	m := fuzzMedia(f)
	m.timing.connectTimeout = time.Hour // the legs stay up the whole run
	// The callers' candidates: a socket of ours that reads and drops, so
	// our checks and answers go nowhere else.
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { peer.Close() })
	go func() {
		b := make([]byte, 2048)
		for {
			if _, _, err := peer.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	src := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	const ufragLite, pwdLite = "liteufrag", "litepassword0123456789xx"
	const ufragFull, pwdFull = "fullufrag", "fullpassword0123456789xx"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lite, err := m.Answer(ctx, testOffer(true, ufragLite, pwdLite, src), nil)
	if err != nil {
		f.Fatal(err)
	}
	full, err := m.Answer(ctx, testOffer(false, ufragFull, pwdFull, src), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { lite.Close(); full.Close() })

	check := func(l *Leg, theirUfrag string, use bool) []byte {
		s := []stun.Setter{stun.TransactionID, stun.BindingRequest,
			stun.NewUsername(l.ice.localUfrag + ":" + theirUfrag), ice.PriorityAttr(1)}
		if use {
			s = append(s, ice.UseCandidate(), ice.AttrControlling(7))
		}
		s = append(s, stun.NewShortTermIntegrity(l.ice.localPwd), stun.Fingerprint)
		msg, err := stun.Build(s...)
		if err != nil {
			f.Fatal(err)
		}
		return msg.Raw
	}
	answer := func(pwd string) []byte {
		msg, err := stun.Build(stun.TransactionID, stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 1), Port: 9}, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
		if err != nil {
			f.Fatal(err)
		}
		return msg.Raw
	}
	f.Add(check(full, ufragFull, false))
	f.Add(check(full, ufragFull, true))
	f.Add(check(lite, ufragLite, false))
	f.Add(answer(pwdLite))
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1})          // DTLS
	f.Add(append([]byte{0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, 1, 2, 3)) // RTP
	f.Add([]byte{0x80, 200, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})                  // RTCP
	f.Add([]byte{0xff})

	sock := m.sockets[0]
	var msg stun.Message
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) == 0 {
			return // the read loop never routes an empty datagram
		}
		sock.route(&msg, p, src)
	})
}

// Any answer text to our offer: SetAnswer never panics; what it accepts
// has sane payload types (Opus on the offered 111, telephone-event on the
// offered 126 or none, as the leg then says), a DTLS role (active or
// passive, RFC 5763 §5), ICE credentials of ice-chars and a candidate; what
// it refuses fails the leg with that error. Every input goes through all
// of SetAnswer, start and Close included, with the leg's ICE agent
// stopped beforehand: its goroutine ends at once and sends nothing, so no
// check leaves for an address the fuzzer made up and the coverage stays
// deterministic (a running agent's timing made every input look new and
// stalled the fuzzer in minimization).
func FuzzSetAnswer(f *testing.F) {
	m := fuzzMedia(f)
	good := testAnswer(true, "active", peerUfrag, peerPwd, netip.MustParseAddrPort("127.0.0.1:9"))
	f.Add(good)
	f.Add(strings.ReplaceAll(testAnswer(false, "passive", peerUfrag, peerPwd, netip.MustParseAddrPort("127.0.0.1:9")), "\r\n", "\n"))
	f.Add(strings.Replace(good, "a=setup:active", "a=setup:actpass", 1))
	f.Add(strings.Replace(good, "111 126", "111 101", 1))
	f.Add(strings.Replace(good, "a=mid:0", "a=mid:0\r", 1))
	f.Add(strings.Replace(good, "a=rtpmap:126 telephone-event/8000", "a=rtpmap:126 opus/48000/2", 1))
	f.Add("v=0\r\n")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, text string) {
		leg, err := m.Offer(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer leg.Close()
		leg.ice.stop()
		if err := leg.SetAnswer(text); err != nil {
			select {
			case <-leg.Failed():
			default:
				t.Fatalf("refused (%v) but the leg did not fail", err)
			}
			return
		}
		a := leg.remote.Load()
		if a.chosen != (Codec{CodecOpus, offerOpusPT, 48000}) || (a.dtmfPT != 0 && a.dtmfPT != offerDTMFPT) ||
			leg.OpusPayloadType() != offerOpusPT || leg.DTMFPayloadType() != a.dtmfPT {
			t.Fatalf("accepted codec %v, dtmf %d:\n%q", a.chosen, a.dtmfPT, text)
		}
		if a.setup != "active" && a.setup != "passive" || leg.dtlsClient != (a.setup == "passive") {
			t.Fatalf("accepted a=setup:%q (DTLS client %v)", a.setup, leg.dtlsClient)
		}
		if !isICEChars(a.ufrag, 4) || !isICEChars(a.pwd, 22) || len(a.candidates) == 0 || len(a.fingerprint) != 32 {
			t.Fatalf("accepted ufrag %q pwd %q candidates %v fingerprint %x", a.ufrag, a.pwd, a.candidates, a.fingerprint)
		}
	})
}

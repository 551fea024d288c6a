package webrtc

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	pionwebrtc "github.com/pion/webrtc/v4"
)

// metaG711Offer is Meta's offer with PCMU and PCMA beside Opus, as it
// comes when the number's audio.additional_codecs is ["PCMA","PCMU"]:
// m=audio … 111 0 8 126, static numbers with their rtpmaps (or without:
// RFC 3551 §6 fixes them).
func metaG711Offer(t *testing.T, rtpmaps bool) string {
	t.Helper()
	b, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "UDP/TLS/RTP/SAVPF 111 126", "UDP/TLS/RTP/SAVPF 111 0 8 126", 1)
	if rtpmaps {
		s = strings.Replace(s, "a=rtpmap:126 telephone-event/8000\r\n", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n", 1)
	}
	if s == string(b) {
		t.Fatal("the offer's m-line is not Meta's")
	}
	return s
}

var (
	opus111 = Codec{CodecOpus, 111, 48000}
	pcmu0   = Codec{CodecPCMU, 0, 8000}
	pcma8   = Codec{CodecPCMA, 8, 8000}
)

// The offer's audio codecs in its order: Opus 111, PCMU 0, PCMA 8, with
// their rtpmaps or by their static numbers; telephone-event 126 beside
// them; Opus is what an answer keeps unless asked otherwise. An rtpmap of a
// format the m-line does not list says nothing; an offer without Opus is
// refused (it is every call's fallback).
func TestOfferedCodecs(t *testing.T) {
	for _, rtpmaps := range []bool{true, false} {
		o, err := parseOffer(metaG711Offer(t, rtpmaps))
		if err != nil {
			t.Fatal(err)
		}
		if want := []Codec{opus111, pcmu0, pcma8}; !slices.Equal(o.audio, want) || o.dtmfPT != 126 || o.chosen != opus111 {
			t.Errorf("rtpmaps %v: audio %v dtmf %d chosen %v; want %v, 126, opus", rtpmaps, o.audio, o.dtmfPT, o.chosen, want)
		}
		got, err := OfferedCodecs(metaG711Offer(t, rtpmaps))
		if err != nil || !slices.Equal(got, o.audio) {
			t.Errorf("OfferedCodecs: %v, %v", got, err)
		}
	}
	meta, _ := os.ReadFile("testdata/meta-offer.sdp")
	if got, err := OfferedCodecs(string(meta)); err != nil || !slices.Equal(got, []Codec{opus111}) {
		t.Errorf("Meta's Opus-only offer: %v, %v", got, err)
	}
	// A dynamic number for PCMU, another order, an unlisted rtpmap.
	s := strings.Replace(metaG711Offer(t, true), "111 0 8 126", "100 111 126", 1)
	s = strings.Replace(s, "a=rtpmap:0 PCMU/8000", "a=rtpmap:100 pcmu/8000/1", 1)
	if got, err := OfferedCodecs(s); err != nil || !slices.Equal(got, []Codec{{CodecPCMU, 100, 8000}, opus111}) {
		t.Errorf("PCMU on 100 first: %v, %v", got, err)
	}
	noOpus := strings.Replace(metaG711Offer(t, true), "111 0 8 126", "0 8 126", 1)
	if _, err := OfferedCodecs(noOpus); err == nil || !strings.Contains(err.Error(), "no opus") {
		t.Errorf("G.711 alone: %v, want refused for want of Opus", err)
	}
}

// mLine is the answer's audio m-line formats and its rtpmaps, read with
// pion/sdp.
func mLine(t *testing.T, text string) (formats []string, rtpmaps []string) {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		t.Fatalf("our SDP does not parse: %v\n%s", err, text)
	}
	md := sd.MediaDescriptions[0]
	for _, a := range md.Attributes {
		if a.Key == "rtpmap" {
			rtpmaps = append(rtpmaps, a.Value)
		}
	}
	return md.MediaName.Formats, rtpmaps
}

// Answering Meta's G.711 offer: with PCMU or PCMA asked for, the answer
// lists that codec alone beside telephone-event, on the offer's number
// (RFC 3264 §6.1), and the leg says so (Codec, OpusPayloadType 0); by
// default it stays Opus. A codec the offer lacks is an error.
func TestAnswerChoosesCodec(t *testing.T) {
	m := newLoopbackMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offer := metaG711Offer(t, false)
	for _, tc := range []struct {
		ask     string
		want    Codec
		formats string
		rtpmaps string
	}{
		{CodecOpus, opus111, "111 126", "111 opus/48000/2|126 telephone-event/8000"},
		{CodecPCMU, pcmu0, "0 126", "0 PCMU/8000|126 telephone-event/8000"},
		{CodecPCMA, pcma8, "8 126", "8 PCMA/8000|126 telephone-event/8000"},
	} {
		leg, err := m.AnswerWith(ctx, offer, tc.ask, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.ask, err)
		}
		formats, rtpmaps := mLine(t, leg.AnswerSDP())
		if strings.Join(formats, " ") != tc.formats || strings.Join(rtpmaps, "|") != tc.rtpmaps {
			t.Errorf("%s: m-line %v, rtpmaps %q; want %q, %q", tc.ask, formats, rtpmaps, tc.formats, tc.rtpmaps)
		}
		if c := leg.Codec(); c != tc.want || leg.DTMFPayloadType() != 126 {
			t.Errorf("%s: leg runs %v, dtmf %d", tc.ask, c, leg.DTMFPayloadType())
		}
		if wantOpus := uint8(0); tc.want.Name == CodecOpus && leg.OpusPayloadType() != 111 || tc.want.Name != CodecOpus && leg.OpusPayloadType() != wantOpus {
			t.Errorf("%s: OpusPayloadType %d", tc.ask, leg.OpusPayloadType())
		}
		if strings.Contains(leg.AnswerSDP(), "useinbandfec") != (tc.want.Name == CodecOpus) {
			t.Errorf("%s: Opus's fmtp only with Opus:\n%s", tc.ask, leg.AnswerSDP())
		}
		leg.Close()
	}
	meta, _ := os.ReadFile("testdata/meta-offer.sdp")
	if leg, err := m.AnswerWith(ctx, string(meta), CodecPCMU, nil); err == nil {
		leg.Close()
		t.Error("PCMU answered to an Opus-only offer")
	}
}

// Our offer with PCMU first (business-initiated calls on a g711 trunk):
// m=audio … 0 111 126; Meta's answer picks PCMU or Opus, and the leg runs
// the first offered codec the answer lists. An answer with a codec we did
// not offer, or with our number mapped to another codec, is refused.
func TestOfferWithG711(t *testing.T) {
	m := newLoopbackMedia(t)
	ctx := context.Background()
	leg, err := m.OfferWith(ctx, CodecPCMU, nil)
	if err != nil {
		t.Fatal(err)
	}
	formats, rtpmaps := mLine(t, leg.OfferSDP())
	if strings.Join(formats, " ") != "0 111 126" || strings.Join(rtpmaps, "|") != "0 PCMU/8000|111 opus/48000/2|126 telephone-event/8000" {
		t.Errorf("offer m-line %v rtpmaps %q", formats, rtpmaps)
	}
	if leg.Codec() != pcmu0 || leg.OpusPayloadType() != 0 {
		t.Errorf("before the answer: %v, opus %d", leg.Codec(), leg.OpusPayloadType())
	}
	leg.Close()
	if _, err := m.OfferWith(ctx, "G722", nil); err == nil {
		t.Error("G722 offered")
	}

	base := testAnswer(true, "active", peerUfrag, peerPwd, netip.MustParseAddrPort("127.0.0.1:9"))
	withPCMU := func(formats string) string {
		s := strings.Replace(base, "111 126", formats, 1)
		return strings.Replace(s, "a=rtpmap:126", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:126", 1)
	}
	for _, tc := range []struct {
		name, answer string
		want         Codec
		err          string
	}{
		{"pcmu", withPCMU("0 126"), pcmu0, ""},
		{"pcmu by its static number", strings.Replace(base, "111 126", "0 126", 1), pcmu0, ""},
		{"opus", base, opus111, ""},
		{"both, pcmu first", withPCMU("0 111 126"), pcmu0, ""},
		{"both, opus first", withPCMU("111 0 126"), opus111, ""},
		{"pcma not offered", strings.Replace(base, "111 126", "8 126", 1), Codec{}, "does not have"},
		{"our 0 mapped to opus", strings.Replace(strings.Replace(base, "111 126", "0 126", 1), "a=rtpmap:111", "a=rtpmap:0", 1), Codec{}, "without mapping it to PCMU"},
		{"telephone-event alone", strings.Replace(base, "111 126", "126", 1), Codec{}, "none of the offered codecs"},
	} {
		leg, err := m.OfferWith(ctx, CodecPCMU, nil)
		if err != nil {
			t.Fatal(err)
		}
		leg.ice.stop() // no checks toward the made-up address
		err = leg.SetAnswer(tc.answer)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case leg.Codec() != tc.want || leg.DTMFPayloadType() != 126:
			t.Errorf("%s: leg runs %v dtmf %d, want %v", tc.name, leg.Codec(), leg.DTMFPayloadType(), tc.want)
		}
		leg.Close()
	}
}

// A real WebRTC peer of another make (pion) offering PCMU beside Opus, as
// Meta does with additional codecs: it takes our PCMU answer, and G.711
// flows both ways on PT 0 between it and the leg, nothing renumbered.
func TestG711LegWithPion(t *testing.T) {
	m := newLoopbackMedia(t)
	// pion's caller offers PCMU too, and sends it.
	me := &pionwebrtc.MediaEngine{}
	for _, c := range []pionwebrtc.RTPCodecParameters{
		{RTPCodecCapability: pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: metaOpusPT},
		{RTPCodecCapability: pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: pionwebrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: metaDTMFPT},
	} {
		if err := me.RegisterCodec(c, pionwebrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	pc, track := pionPCMUCaller(t, me)
	got := pionReceived(pc)
	leg := callPionWith(t, m, pc, CodecPCMU)
	if leg.Codec() != pcmu0 {
		t.Fatalf("leg runs %v", leg.Codec())
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		payload := make([]byte, 160)
		for seq := uint16(0); ; seq++ {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			payload[0] = byte(seq)
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160}, Payload: payload})
		}
	}()
	buf := make([]byte, 1500)
	var h rtp.Header
	for i := 0; i < 5; i++ {
		n, err := readWithin(leg, buf, 3*time.Second)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if hl, err := h.Unmarshal(buf[:n]); err != nil || h.PayloadType != 0 || n-hl != 160 {
			t.Fatalf("read %d: pt %d, %d bytes, %v", i, h.PayloadType, n, err)
		}
	}
	for i := range 5 {
		out := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(100 + i), Timestamp: uint32(i) * 160, SSRC: leg.SSRC()}, Payload: make([]byte, 160)}
		b, _ := out.Marshal()
		if err := leg.WritePacket(b); err != nil {
			t.Fatal(err)
		}
	}
	timeout := time.After(5 * time.Second)
	for n := 0; n < 3; {
		select {
		case p := <-got:
			if p.PayloadType != 0 || p.SSRC != leg.SSRC() || len(p.Payload) != 160 {
				t.Fatalf("pion got pt %d ssrc %d, %d bytes", p.PayloadType, p.SSRC, len(p.Payload))
			}
			n++
		case <-timeout:
			t.Fatal("pion got no PCMU from the leg")
		}
	}
}

// pionPCMUCaller is an ICE-lite pion caller (Meta's side) with codecs me
// and a PCMU track to send on.
func pionPCMUCaller(t *testing.T, me *pionwebrtc.MediaEngine) (*pionwebrtc.PeerConnection, *pionwebrtc.TrackLocalStaticRTP) {
	t.Helper()
	se := pionwebrtc.SettingEngine{}
	se.SetLite(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]pionwebrtc.NetworkType{pionwebrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	pc, err := pionwebrtc.NewAPI(pionwebrtc.WithSettingEngine(se), pionwebrtc.WithMediaEngine(me)).NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := pionwebrtc.NewTrackLocalStaticRTP(pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "caller")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	return pc, track
}

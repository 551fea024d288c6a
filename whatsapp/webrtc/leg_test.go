package webrtc

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newLoopbackMedia(t *testing.T) *Media {
	t.Helper()
	m, err := NewMedia(MediaConfig{UDPPort: 0, ListenIPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The answer to an offer in Meta's shape follows Meta's media rules: DTLS
// client, one sha-256 fingerprint, Opus 111 and telephone-event 126, one
// m-line with rtcp-mux, and our candidates inside (no trickle).
func TestAnswerMetaOffer(t *testing.T) {
	offer, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	m := newLoopbackMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Meta's SDP arrives from JSON: accept it with LF line ends too.
	leg, err := m.Answer(ctx, strings.ReplaceAll(string(offer), "\r\n", "\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	if leg.OpusPayloadType() != 111 || leg.DTMFPayloadType() != 126 {
		t.Errorf("payload types %d, %d; Meta's offer has 111, 126", leg.OpusPayloadType(), leg.DTMFPayloadType())
	}
	a := leg.AnswerSDP()
	must := []string{
		"a=setup:active", "a=rtpmap:111 opus/48000/2", "a=rtpmap:126 telephone-event/8000",
		"a=rtcp-mux", "a=mid:audio", "a=sendrecv", "127.0.0.1", "a=end-of-candidates",
	}
	for _, s := range must {
		if !strings.Contains(a, s) {
			t.Errorf("answer lacks %q:\n%s", s, a)
		}
	}
	if n := strings.Count(a, "a=fingerprint:"); n != 1 || !strings.Contains(a, "a=fingerprint:sha-256 ") {
		t.Errorf("answer has %d fingerprints, want exactly one sha-256", n)
	}
	if n := strings.Count(a, "m="); n != 1 {
		t.Errorf("answer has %d m-lines", n)
	}
	if strings.Contains(a, "a=ice-lite") {
		t.Error("the gateway must be a full ICE agent, not lite")
	}
	if !regexp.MustCompile(`a=ssrc:`+"\\d+").MatchString(a) || leg.SSRC() == 0 {
		t.Errorf("answer announces no SSRC (leg ssrc %d)", leg.SSRC())
	}
	if !strings.Contains(a, "a=ssrc:"+strconv.FormatUint(uint64(leg.SSRC()), 10)+" ") {
		t.Errorf("leg SSRC %d is not the announced one", leg.SSRC())
	}
	// Writing before DTLS is up drops quietly; after Close it fails.
	pkt := make([]byte, 12+3)
	pkt[0] = 0x80
	pkt[1] = leg.OpusPayloadType()
	if err := leg.WritePacket(pkt); err != nil {
		t.Fatalf("write before connect: %v", err)
	}
	if leg.Dropped() != 1 {
		t.Fatalf("dropped = %d, want 1", leg.Dropped())
	}
	leg.Close()
	if err := leg.WritePacket(pkt); err == nil {
		t.Fatal("write after close succeeded")
	}
	if _, err := leg.ReadPacket(pkt); err == nil {
		t.Fatal("read after close succeeded")
	}
}

// The answer keeps the offer's payload types, and the leg says which they
// are: Meta's, a browser's other numbers, and no telephone-event at all.
func TestAnswerKeepsOfferPayloadTypes(t *testing.T) {
	b, err := os.ReadFile("testdata/meta-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	meta := string(b)
	renumber := strings.NewReplacer(
		" 111 126", " 109 101", ":111 ", ":109 ", ":126 ", ":101 ")
	noDTMF := strings.NewReplacer(
		" 111 126", " 111", "a=rtpmap:126 telephone-event/8000\r\n", "")
	// RFC 4733 allows the channel count (pion writes it); an 8 kHz
	// telephone-event with /1 is the same one.
	withChannels := strings.NewReplacer("telephone-event/8000", "telephone-event/8000/1")
	// Two channels of telephone-event, or events at 48 kHz, are not the
	// telephone-event/8000 we answer.
	stereoEvents := strings.NewReplacer("telephone-event/8000", "telephone-event/8000/2")
	for _, c := range []struct {
		name           string
		offer          string
		opusPT, dtmfPT uint8
	}{
		{"meta", meta, 111, 126},
		{"renumbered", renumber.Replace(meta), 109, 101},
		{"no telephone-event", noDTMF.Replace(meta), 111, 0},
		{"telephone-event with its channel count", withChannels.Replace(meta), 111, 126},
		{"telephone-event in stereo", stereoEvents.Replace(meta), 111, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newLoopbackMedia(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			leg, err := m.Answer(ctx, c.offer, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer leg.Close()
			if leg.OpusPayloadType() != c.opusPT || leg.DTMFPayloadType() != c.dtmfPT {
				t.Errorf("leg says opus %d, dtmf %d; want %d, %d", leg.OpusPayloadType(), leg.DTMFPayloadType(), c.opusPT, c.dtmfPT)
			}
			a := leg.AnswerSDP()
			opus := strconv.Itoa(int(c.opusPT))
			formats := opus
			want := []string{"a=rtpmap:" + opus + " opus/48000/2\r\n", "a=fmtp:" + opus + " "}
			if c.dtmfPT != 0 {
				dtmf := strconv.Itoa(int(c.dtmfPT))
				formats += " " + dtmf
				want = append(want, "a=rtpmap:"+dtmf+" telephone-event/8000\r\n")
			} else if strings.Contains(a, "telephone-event") {
				t.Errorf("answer has telephone-event the offer lacks:\n%s", a)
			}
			if !regexp.MustCompile(`(?m)^m=audio \d+ UDP/TLS/RTP/SAVPF ` + formats + "\r$").MatchString(a) {
				t.Errorf("answer's m-line formats are not %q:\n%s", formats, a)
			}
			for _, s := range want {
				if !strings.Contains(a, s) {
					t.Errorf("answer lacks %q:\n%s", s, a)
				}
			}
		})
	}
}

func TestAnswerRejectsGarbage(t *testing.T) {
	m := newLoopbackMedia(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, offer := range []string{"", "v=0\r\n", "v=0\r\nm=audio 9 RTP/AVP 0\r\n", "not sdp at all m=audio"} {
		if leg, err := m.Answer(ctx, offer, nil); err == nil {
			leg.Close()
			t.Errorf("offer %q answered", offer)
		}
	}
}

func TestNewMediaRejectsBadConfig(t *testing.T) {
	for _, c := range []MediaConfig{{UDPPort: -1}, {ListenIPs: []string{"nope"}}, {PublicIPs: []string{"1.2.3"}}} {
		if m, err := NewMedia(c); err == nil {
			m.Close()
			t.Errorf("config %+v accepted", c)
		}
	}
}

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
	pkt[1] = OpusPayloadType
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

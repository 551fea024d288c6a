package wasim

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// A caller of a number whose audio.additional_codecs is [PCMA, PCMU] offers
// them beside Opus (the lite leg: load runs); the gateway's leg answers
// PCMU, which the simulator's Meta rules take (the offer had it) and the
// lite leg then runs: PCMU on PT 0 both ways. An answer picking a G.711
// codec the offer lacked breaks the rules.
func TestLiteLegOffersG711(t *testing.T) {
	cert, err := newLiteCert()
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Uint64
	var lastPT atomic.Uint32
	lite, err := newLiteLeg(net.IPv4(127, 0, 0, 1), cert, func(h *rtp.Header, _ []byte, _ int64) {
		lastPT.Store(uint32(h.PayloadType))
		got.Add(1)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lite.Close)
	lite.g711 = []string{"PCMA", "PCMU"}
	offer := lite.offer()
	for _, want := range []string{"UDP/TLS/RTP/SAVPF 111 8 0 126", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000"} {
		if !strings.Contains(offer, want) {
			t.Fatalf("offer lacks %q:\n%s", want, offer)
		}
	}
	if g := offeredG711(offer); strings.Join(g, ",") != "PCMU,PCMA" {
		t.Errorf("offeredG711 %v", g)
	}
	media, err := webrtc.NewMedia(webrtc.MediaConfig{UDPPort: freeUDPPort(t), ListenIPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, err := media.AnswerWith(ctx, offer, webrtc.CodecPCMU, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leg.Close() })
	answer := normalizeSDP(leg.AnswerSDP())
	if v := checkAnswer(answer, "PCMA", "PCMU"); len(v) > 0 {
		t.Errorf("the gateway's PCMU answer breaks Meta's rules: %v", v)
	}
	if v := checkAnswer(answer); len(v) != 1 || !strings.Contains(v[0], "PCMU, which the offer did not have") {
		t.Errorf("PCMU answered to an offer without it: %v", v)
	}
	if name, pt, err := answerAudio(answer); name != "PCMU" || pt != 0 || err != nil {
		t.Errorf("answerAudio: %s %d %v", name, pt, err)
	}
	lite.setAnswer(leg.AnswerSDP())
	if name, pt := lite.audio(); name != "PCMU" || pt != 0 {
		t.Fatalf("the lite leg runs %s on %d", name, pt)
	}
	select {
	case <-lite.Ready():
	case <-lite.Failed():
		t.Fatalf("lite leg failed: %v", lite.err())
	case <-ctx.Done():
		t.Fatal("lite leg not up")
	}
	<-leg.Connected()
	plain, out, buf := make([]byte, 200), make([]byte, 300), make([]byte, 1500)
	var hdr rtp.Header
	for i := range 5 {
		h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i) * 160, SSRC: lite.ssrc}
		hl, _ := h.MarshalTo(plain)
		encodeG711("PCMU", make([]int16, 160), plain[hl:hl+160])
		if err := lite.writeRTP(plain[:hl+160], &hdr, out); err != nil {
			t.Fatal(err)
		}
		n, err := leg.ReadPacket(buf)
		if err != nil || n != hl+160 || buf[1]&0x7f != 0 || buf[hl] != 0xFF {
			t.Fatalf("gateway read %d bytes, pt %d, first byte %#x: %v", n, buf[1]&0x7f, buf[hl], err)
		}
	}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: leg.SSRC()}, Payload: make([]byte, 160)}).Marshal()
	if err := leg.WritePacket(pkt); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got.Load() == 0 || lastPT.Load() != 0 {
		t.Errorf("the lite leg got %d packets, last pt %d", got.Load(), lastPT.Load())
	}
}

// The simulator's number settings drive what its callers offer; G.711
// loops are 160 bytes a 20 ms frame at 8 kHz, and decode back to the tone.
func TestAdditionalCodecsAndG711Loop(t *testing.T) {
	s, err := New(Config{GraphListen: "127.0.0.1:0", WebhookURL: "http://127.0.0.1:1/webhook", AppSecret: "s", AccessToken: "t",
		PhoneNumberID: "1000000001", MediaIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.additionalCodecs("1000000001"); got != nil {
		t.Errorf("a fresh number offers %v", got)
	}
	if err := s.SetAdditionalCodecs("1000000001", "pcmu"); err != nil {
		t.Fatal(err)
	}
	if got := s.additionalCodecs("1000000001"); strings.Join(got, ",") != "PCMU" {
		t.Errorf("offers %v, want PCMU", got)
	}
	if err := s.SetAdditionalCodecs("1000000001", "G729"); err == nil {
		t.Error("G729 accepted as an additional codec")
	}
	l, err := buildLoop(loopKey{tone: 1000, frameMs: 20, g711: "PCMA"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.frames) != 50 || len(l.frames[0]) != 160 || l.step != 160 {
		t.Fatalf("loop: %d frames of %d bytes, step %d", len(l.frames), len(l.frames[0]), l.step)
	}
	var pcm []int16
	for _, f := range l.frames {
		p := make([]int16, 160)
		decodeG711("PCMA", f, p)
		wide := make([]int16, 320)
		upsample2(p, wide)
		pcm = append(pcm, wide...)
	}
	if f, purity, level := analyse(pcm, analysisRate); f < 990 || f > 1010 || purity < 0.9 || level < -17 || level > -13 {
		t.Errorf("decoded loop: %.0f Hz purity %.2f level %.1f dBFS", f, purity, level)
	}
}

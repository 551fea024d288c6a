package wasim

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// The lite leg against the gateway's own WebRTC leg (pion, full ICE agent,
// DTLS client): ICE and DTLS come up, and SRTP flows both ways with the
// payloads, sequence numbers and SSRCs intact; read by a goroutine of its
// own, and by the poller.
func TestLiteLegAgainstGatewayLeg(t *testing.T) {
	t.Run("own goroutine", func(t *testing.T) { testLiteLeg(t, nil) })
	p, err := newLitePoller()
	if err != nil {
		t.Logf("no poller: %v", err)
		return
	}
	defer p.Close()
	t.Run("poller", func(t *testing.T) { testLiteLeg(t, p) })
}

func testLiteLeg(t *testing.T, poller *litePoller) {
	cert, err := newLiteCert()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []uint16
	var ssrcs = map[uint32]bool{}
	lite, err := newLiteLeg(net.IPv4(127, 0, 0, 1), cert, func(h *rtp.Header, payload []byte, at int64) {
		mu.Lock()
		defer mu.Unlock()
		if len(payload) == 3 && payload[0] == 0xab && at > 0 {
			got = append(got, h.SequenceNumber)
			ssrcs[h.SSRC] = true
		}
	}, poller)
	if err != nil {
		t.Fatal(err)
	}
	leg := connectLite(t, lite)
	// Toward the business.
	const n = 20
	read := make(chan []byte, n)
	go func() {
		buf := make([]byte, 1500)
		for {
			m, err := leg.ReadPacket(buf)
			if err != nil {
				close(read)
				return
			}
			read <- append([]byte(nil), buf[:m]...)
		}
	}()
	plain, out := make([]byte, 64), make([]byte, 128)
	var hdr rtp.Header
	for i := 0; i < n; i++ {
		h := rtp.Header{Version: 2, PayloadType: opusPT, SequenceNumber: uint16(100 + i), Timestamp: uint32(960 * i), SSRC: lite.ssrc}
		hl, _ := h.MarshalTo(plain)
		copy(plain[hl:], []byte{0xf8, 0xff, 0xfe}) // an Opus packet of 20 ms silence
		if err := lite.writeRTP(plain[:hl+3], &hdr, out); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := 0; i < n; i++ {
		select {
		case p := <-read:
			if seq := binary.BigEndian.Uint16(p[2:]); seq != uint16(100+i) || binary.BigEndian.Uint32(p[8:]) != lite.ssrc {
				t.Fatalf("packet %d: seq %d ssrc %x", i, seq, binary.BigEndian.Uint32(p[8:]))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d packets reached the gateway leg", i, n)
		}
	}

	// Toward the user.
	for i := 0; i < n; i++ {
		h := rtp.Header{Version: 2, PayloadType: opusPT, SequenceNumber: uint16(7 + i), Timestamp: uint32(960 * i), SSRC: leg.SSRC()}
		b, _ := (&rtp.Packet{Header: h, Payload: []byte{0xab, 1, 2}}).Marshal()
		if err := leg.WritePacket(b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n || len(ssrcs) != 1 || !ssrcs[leg.SSRC()] {
		t.Fatalf("received %d of %d packets, ssrcs %v", len(got), n, ssrcs)
	}
	for i, s := range got {
		if s != uint16(7+i) {
			t.Fatalf("packet %d has seq %d", i, s)
		}
	}
	if !lite.kernelTS {
		t.Log("no kernel receive timestamps on this platform")
	}
}

// A certificate that does not match the answer's fingerprint fails DTLS.
func TestLiteLegRefusesWrongFingerprint(t *testing.T) {
	cert, err := newLiteCert()
	if err != nil {
		t.Fatal(err)
	}
	lite, err := newLiteLeg(net.IPv4(127, 0, 0, 1), cert, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	media, err := webrtc.NewMedia(webrtc.MediaConfig{UDPPort: freeUDPPort(t), ListenIPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, err := media.Answer(ctx, lite.offer(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	other, _ := newLiteCert()
	lite.setAnswer(strings.Replace(leg.AnswerSDP(), fingerprintOf(leg.AnswerSDP()), strings.TrimPrefix(other.Fingerprint, "sha-256 "), 1))
	select {
	case <-lite.Ready():
		t.Fatal("DTLS came up with a certificate that does not match the answer")
	case <-lite.Failed():
		if !strings.Contains(lite.err().Error(), "fingerprint") {
			t.Errorf("failed, but not for the fingerprint: %v", lite.err())
		}
	case <-ctx.Done():
		t.Fatal("neither up nor failed")
	}
}

func fingerprintOf(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=fingerprint:sha-256 "); ok {
			return v
		}
	}
	return ""
}

// connectLite answers the lite leg's offer with a gateway leg on loopback
// and waits until both are up; both close at the end of the test.
func connectLite(t *testing.T, lite *liteLeg) *webrtc.Leg {
	t.Helper()
	t.Cleanup(lite.Close)
	offer := lite.offer()
	for _, want := range []string{"a=ice-lite", "a=setup:actpass", "a=fingerprint:sha-256 ", "a=rtpmap:111 opus/48000/2", "a=rtcp-mux", "typ host"} {
		if !strings.Contains(offer, want) {
			t.Errorf("offer lacks %q:\n%s", want, offer)
		}
	}
	media, err := webrtc.NewMedia(webrtc.MediaConfig{UDPPort: freeUDPPort(t), ListenIPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg, err := media.Answer(ctx, offer, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leg.Close() })
	if v := checkAnswer(normalizeSDP(leg.AnswerSDP())); len(v) > 0 {
		t.Errorf("the gateway's answer breaks Meta's rules: %v", v)
	}
	lite.setAnswer(leg.AnswerSDP())
	select {
	case <-lite.Ready():
	case <-lite.Failed():
		t.Fatalf("lite leg failed: %v", lite.err())
	case <-ctx.Done():
		t.Fatal("lite leg not up")
	}
	select {
	case <-leg.Connected():
	case <-ctx.Done():
		t.Fatal("gateway leg not connected")
	}
	if lite.stunChecks.Load() == 0 {
		t.Error("no ICE check answered")
	}
	return leg
}

// The gateway leg's media path allocates nothing per packet, either way:
// the socket's reader, the hand-off, SRTP, the send, and the RTCP sender
// reports every 250 packets (the allocation counter is the process's, so
// the lite leg, which allocates nothing either, is inside the figure).
func TestGatewayLegHotPathDoesNotAllocate(t *testing.T) {
	cert, err := newLiteCert()
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Uint64
	lite, err := newLiteLeg(net.IPv4(127, 0, 0, 1), cert, func(*rtp.Header, []byte, int64) { got.Add(1) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	leg := connectLite(t, lite)

	plain, out, buf := make([]byte, 64), make([]byte, 128), make([]byte, 1500)
	var hdr rtp.Header
	seq := uint16(0)
	in := testing.AllocsPerRun(600, func() {
		h := rtp.Header{Version: 2, PayloadType: opusPT, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: lite.ssrc}
		seq++
		hl, _ := h.MarshalTo(plain)
		copy(plain[hl:], []byte{0xf8, 0xff, 0xfe})
		if err := lite.writeRTP(plain[:hl+3], &hdr, out); err != nil {
			t.Fatal(err)
		}
		if _, err := leg.ReadPacket(buf); err != nil {
			t.Fatal(err)
		}
	})
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: opusPT, SSRC: leg.SSRC()}, Payload: []byte{0xab, 1, 2}}).Marshal()
	outSeq := uint16(0)
	toUser := testing.AllocsPerRun(600, func() {
		binary.BigEndian.PutUint16(pkt[2:], outSeq)
		outSeq++
		if err := leg.WritePacket(pkt); err != nil {
			t.Fatal(err)
		}
	})
	if in != 0 || toUser != 0 {
		t.Errorf("allocations per packet: %.2f from WhatsApp, %.2f toward it", in, toUser)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < 600 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got.Load() < 600 {
		t.Errorf("the lite leg got %d of the packets written", got.Load())
	}
}

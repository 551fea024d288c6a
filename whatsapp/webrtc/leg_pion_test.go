package webrtc

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	pionwebrtc "github.com/pion/webrtc/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Payload types of the callers: Meta's, and other numbers as a browser may
// offer them.
const (
	metaOpusPT, metaDTMFPT       = 111, 126
	browserOpusPT, browserDTMFPT = 109, 101
)

// pionCaller is a caller made of pion's full WebRTC stack (a real peer of
// another make) offering Opus and telephone-event with Meta's payload types.
func pionCaller(t *testing.T, lite bool) (*pionwebrtc.PeerConnection, *pionwebrtc.TrackLocalStaticRTP) {
	t.Helper()
	return pionCallerPT(t, lite, metaOpusPT, metaDTMFPT)
}

// pionCallerPT is pionCaller with the given payload types: ICE-lite like
// Meta's side, or a full agent like a browser. tweaks change its settings
// further (an answerer's DTLS role).
func pionCallerPT(t *testing.T, lite bool, opusPT, dtmfPT uint8, tweaks ...func(*pionwebrtc.SettingEngine)) (*pionwebrtc.PeerConnection, *pionwebrtc.TrackLocalStaticRTP) {
	t.Helper()
	se := pionwebrtc.SettingEngine{}
	se.SetLite(lite)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]pionwebrtc.NetworkType{pionwebrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	for _, tw := range tweaks {
		tw(&se)
	}
	me := &pionwebrtc.MediaEngine{}
	for _, c := range []pionwebrtc.RTPCodecParameters{
		{RTPCodecCapability: pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: pionwebrtc.PayloadType(opusPT)},
		{RTPCodecCapability: pionwebrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: pionwebrtc.PayloadType(dtmfPT)},
	} {
		if err := me.RegisterCodec(c, pionwebrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := pionwebrtc.NewAPI(pionwebrtc.WithSettingEngine(se), pionwebrtc.WithMediaEngine(me)).NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := pionwebrtc.NewTrackLocalStaticRTP(pionwebrtc.RTPCodecCapability{MimeType: pionwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "caller")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	return pc, track
}

// call runs the offer/answer between a pion caller and our leg and waits
// until both are connected.
func callPion(t *testing.T, m *Media, pc *pionwebrtc.PeerConnection) *Leg {
	t.Helper()
	return callPionWith(t, m, pc, CodecOpus)
}

// callPionWith is callPion with our answer's audio codec named (AnswerWith).
func callPionWith(t *testing.T, m *Media, pc *pionwebrtc.PeerConnection, codec string) *Leg {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leg, err := m.AnswerWith(ctx, pc.LocalDescription().SDP, codec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { leg.Close() })
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeAnswer, SDP: leg.AnswerSDP()}); err != nil {
		t.Fatalf("pion takes our answer: %v\n%s", err, leg.AnswerSDP())
	}
	select {
	case <-leg.Connected():
	case <-leg.Failed():
		t.Fatalf("leg failed: %v", leg.Err())
	case <-time.After(10 * time.Second):
		t.Fatal("leg not connected after 10 s")
	}
	return leg
}

// Our leg against pion in both ICE roles: ICE and DTLS come up, the pion
// caller's Opus reaches ReadPacket intact with the offer's payload type, and
// what we write with the negotiated payload types reaches pion on our one
// SSRC with them kept (Opus and telephone-event): nothing is renumbered,
// whether the caller uses Meta's numbers or others.
func TestLegWithPion(t *testing.T) {
	for _, c := range []struct {
		name           string
		lite           bool
		opusPT, dtmfPT uint8
	}{
		{"ice-lite caller (Meta)", true, metaOpusPT, metaDTMFPT},
		{"full ICE caller (browser)", false, browserOpusPT, browserDTMFPT},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newLoopbackMedia(t)
			pc, track := pionCallerPT(t, c.lite, c.opusPT, c.dtmfPT)
			got := pionReceived(pc)
			leg := callPion(t, m, pc)
			if leg.ice.isControlling() != c.lite {
				t.Errorf("controlling = %v against a lite=%v offer", leg.ice.isControlling(), c.lite)
			}
			if leg.OpusPayloadType() != c.opusPT || leg.DTMFPayloadType() != c.dtmfPT {
				t.Fatalf("negotiated opus %d, dtmf %d; the offer has %d, %d",
					leg.OpusPayloadType(), leg.DTMFPayloadType(), c.opusPT, c.dtmfPT)
			}
			mediaBothWays(t, leg, track, got)
		})
	}
}

// pionReceived is every RTP packet pion receives on its remote tracks
// (the newest dropped when the test does not keep up).
func pionReceived(pc *pionwebrtc.PeerConnection) <-chan *rtp.Packet {
	got := make(chan *rtp.Packet, 64)
	pc.OnTrack(func(tr *pionwebrtc.TrackRemote, _ *pionwebrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- p:
			default:
			}
		}
	})
	return got
}

// mediaBothWays checks a connected leg against its pion peer: pion's Opus
// (sent on track every 20 ms) reaches ReadPacket intact with the leg's
// Opus payload type, and what we write with the negotiated payload types
// reaches pion (got) on our one SSRC with them kept, Opus and
// telephone-event: nothing is renumbered.
func mediaBothWays(t *testing.T, leg *Leg, track *pionwebrtc.TrackLocalStaticRTP, got <-chan *rtp.Packet) {
	t.Helper()
	opusPT, dtmfPT := leg.OpusPayloadType(), leg.DTMFPayloadType()

	// pion → leg.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for seq := uint16(0); ; seq++ {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xfc, 0xab, byte(seq)}})
		}
	}()
	buf := make([]byte, 1500)
	var h rtp.Header
	for i := 0; i < 5; i++ {
		n, err := readWithin(leg, buf, 3*time.Second)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		hl, err := h.Unmarshal(buf[:n])
		if err != nil || h.PayloadType != opusPT || n-hl != 3 || buf[hl] != 0xfc {
			t.Fatalf("read %d: %x (pt %d, err %v)", i, buf[:n], h.PayloadType, err)
		}
	}

	// leg → pion: Opus and a telephone-event on one SSRC.
	sent := []uint8{opusPT, opusPT, opusPT, dtmfPT, opusPT, opusPT}
	for i, pt := range sent {
		out := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: uint16(100 + i), Timestamp: uint32(i) * 960, SSRC: leg.SSRC()}, Payload: []byte{1, 2, 3, 4}}
		b, _ := out.Marshal()
		if err := leg.WritePacket(b); err != nil {
			t.Fatal(err)
		}
	}
	pts := map[uint8]int{}
	timeout := time.After(5 * time.Second)
	for pts[opusPT] < 3 || pts[dtmfPT] < 1 {
		select {
		case p := <-got:
			if p.SSRC != leg.SSRC() {
				t.Fatalf("ssrc %d, want %d", p.SSRC, leg.SSRC())
			}
			pts[p.PayloadType]++
		case <-timeout:
			t.Fatalf("pion got %v, want 3 Opus and 1 telephone-event", pts)
		}
	}
	if leg.Sent() != uint64(len(sent)) {
		t.Errorf("sent %d", leg.Sent())
	}
}

func readWithin(l *Leg, b []byte, d time.Duration) (int, error) {
	type res struct {
		n   int
		err error
	}
	ch := make(chan res, 1)
	go func() { n, err := l.ReadPacket(b); ch <- res{n, err} }()
	select {
	case r := <-ch:
		return r.n, r.err
	case <-time.After(d):
		l.Close()
		<-ch
		return 0, errors.New("timed out")
	}
}

// When the caller vanishes without a word, consent checks go unanswered
// and the leg fails (RFC 7675): the gateway then ends the call.
func TestLegConsentLost(t *testing.T) {
	m := newLoopbackMedia(t)
	m.timing.consentInterval, m.timing.consentTimeout = 100*time.Millisecond, 600*time.Millisecond
	pc, _ := pionCaller(t, true)
	leg := callPion(t, m, pc)
	// Still there after several consent rounds while pion answers.
	select {
	case <-leg.Failed():
		t.Fatalf("leg failed while the caller answers: %v", leg.Err())
	case <-time.After(time.Second):
	}
	// Silence the caller: its ICE agent stops answering, DTLS sends no
	// close_notify (GracefulClose would).
	for _, tr := range pc.GetTransceivers() {
		_ = tr.Stop()
	}
	_ = pc.SCTP().Transport().ICETransport().Stop()
	select {
	case <-leg.Failed():
		if !errors.Is(leg.Err(), errConsentLost) {
			t.Fatalf("failed with %v, want consent lost", leg.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("leg did not fail after the caller stopped answering")
	}
}

// A caller that closes its connection (DTLS close_notify) fails the leg at
// once, not only when consent runs out 30 s later.
func TestLegCallerCloses(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	m, err := NewMedia(MediaConfig{UDPPort: 0, ListenIPs: []string{"127.0.0.1"}, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	pc, _ := pionCaller(t, true)
	leg := callPion(t, m, pc)
	// Our side is up once the handshake is; pion's DTLS transport only
	// once it has checked our fingerprint after it, and it sends no
	// close_notify before (its Stop has no connection to close).
	waitFor(t, 5*time.Second, "pion's DTLS transport not connected", func() bool {
		return pc.SCTP().Transport().State() == pionwebrtc.DTLSTransportStateConnected
	})
	start := time.Now()
	_ = pc.SCTP().Transport().Stop() // DTLS close_notify, ICE still up
	select {
	case <-leg.Failed():
		if !errors.Is(leg.Err(), ErrCallerClosed) {
			t.Fatalf("failed with %v, want the caller's DTLS close", leg.Err())
		}
		// A caller's close is how a normal hang-up looks: not a warning.
		if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != 0 {
			t.Errorf("%d warnings logged for a caller's close: %v", n, logs.FilterLevelExact(zap.WarnLevel).All())
		}
		if logs.FilterMessage("webrtc: the caller closed the connection").Len() != 1 {
			t.Errorf("the caller's close was not logged at info")
		}
		t.Logf("failed after %v: %v", time.Since(start), leg.Err())
	case <-time.After(5 * time.Second):
		t.Fatal("leg still up 5 s after the caller closed")
	}
}

// A reader (the bridge) that stalls for seconds loses nothing of the
// caller's audio while the leg's ring holds it: 3 s of 20 ms packets of
// about 100 bytes sent while nobody reads all come out, in order. Beyond
// the ring the newest are dropped and counted (overflow), the oldest kept.
func TestLegRidesOutReaderStall(t *testing.T) {
	m := newLoopbackMedia(t)
	pc, track := pionCaller(t, true)
	leg := callPion(t, m, pc)
	waitFor(t, 5*time.Second, "pion's DTLS transport not connected", func() bool {
		return pc.SCTP().Transport().State() == pionwebrtc.DTLSTransportStateConnected
	})
	payload := make([]byte, 78) // + 12 header + 10 tag: 100-byte packets
	payload[0] = 0xfc
	send := func(from, n int) {
		t.Helper()
		for seq := from; seq < from+n; seq++ {
			payload[1], payload[2] = byte(seq>>8), byte(seq)
			if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(seq), Timestamp: uint32(seq) * 960}, Payload: payload}); err != nil {
				t.Fatal(err)
			}
		}
		// Until the socket's reader has put them all in the ring.
		last, since := -1, time.Now()
		waitFor(t, 5*time.Second, "the ring still growing", func() bool {
			if u := leg.ring.used(); u != last {
				last, since = u, time.Now()
			}
			return time.Since(since) > 200*time.Millisecond
		})
	}
	buf := make([]byte, 1500)
	var h rtp.Header
	read := func(want int) {
		t.Helper()
		n, err := readWithin(leg, buf, 3*time.Second)
		if err != nil {
			t.Fatalf("read seq %d: %v", want, err)
		}
		hl, err := h.Unmarshal(buf[:n])
		if err != nil || n-hl != len(payload) || int(buf[hl+1])<<8|int(buf[hl+2]) != want || h.SequenceNumber != uint16(want) {
			t.Fatalf("read %x (seq %d, err %v), want seq %d", buf[:n], h.SequenceNumber, err, want)
		}
	}

	const stall = 150 // 3 s
	send(0, stall)
	for seq := 0; seq < stall; seq++ {
		read(seq)
	}
	if o := leg.overflow.Load(); o != 0 {
		t.Fatalf("%d packets dropped of %d (3 s) while the reader stalled", o, stall)
	}

	// 10 s while the reader stalls: the ring keeps the oldest, at least
	// 3.2 s (16 KiB of 102-byte entries), drops the rest, and takes
	// packets again once read.
	send(stall, 500)
	kept := 0
	for ; leg.ring.used() > 0; kept++ {
		read(stall + kept)
	}
	if least := (16 << 10) / (ringHdr + 12 + len(payload) + 10); kept < least {
		t.Errorf("the ring held %d packets of 100 bytes, want at least %d", kept, least)
	}
	if o := leg.overflow.Load(); o != uint64(500-kept) {
		t.Fatalf("overflow %d, want %d (500 sent, %d held)", o, 500-kept, kept)
	}
	t.Logf("held %d packets of 100 bytes (%v of audio), dropped %d", kept, time.Duration(kept)*20*time.Millisecond, 500-kept)
	send(stall+500, 1)
	read(stall + 500)
}

// A leg read by a media worker: each packet queued calls the function given
// to SetOnPacket, TryReadPacket returns the packets in order, decrypted, and
// 0 with no error once none is left; after Close it fails.
func TestLegSignalsAndTryRead(t *testing.T) {
	m := newLoopbackMedia(t)
	pc, track := pionCaller(t, true)
	leg := callPion(t, m, pc)
	waitFor(t, 5*time.Second, "pion's DTLS transport not connected", func() bool {
		return pc.SCTP().Transport().State() == pionwebrtc.DTLSTransportStateConnected
	})
	<-leg.Connected()
	signaled := make(chan struct{}, 64)
	leg.SetOnPacket(func() {
		select {
		case signaled <- struct{}{}:
		default:
		}
	})
	const packets = 20
	payload := []byte{0xfc, 1, 2, 3}
	for seq := range packets {
		if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(seq), Timestamp: uint32(seq) * 960}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	var h rtp.Header
	next := 0
	deadline := time.After(5 * time.Second)
	for next < packets {
		select {
		case <-signaled:
		case <-deadline:
			t.Fatalf("%d of %d packets read", next, packets)
		}
		for {
			n, err := leg.TryReadPacket(buf)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if _, err := h.Unmarshal(buf[:n]); err != nil || h.SequenceNumber != uint16(next) {
				t.Fatalf("read seq %d (%v), want %d", h.SequenceNumber, err, next)
			}
			next++
		}
	}
	leg.Close()
	if _, err := leg.TryReadPacket(buf); !errors.Is(err, ErrLegClosed) {
		t.Fatalf("after Close: %v, want ErrLegClosed", err)
	}
}

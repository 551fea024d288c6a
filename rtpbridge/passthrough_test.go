package rtpbridge

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/wagateway/wagateway/rtpbridge/audio"
)

var opusSIP = Codec{"opus", 107, 48000}

// With an Opus-speaking PBX, WhatsApp's packets go through untouched but
// for their headers: the PBX's payload type and the bridge's SSRC, the
// sequence gap of a lost packet kept (the PBX's FEC and PLC need it), a
// pause kept as a timestamp jump, a new WhatsApp SSRC continuing the
// PBX's timeline where it was. Digits go as RFC 4733 events stamped on the
// 48 kHz clock (durations in 8 kHz units).
func TestPassthroughWhatsAppToSIP(t *testing.T) {
	var log digitLog
	b, sip, _ := newDrivenBridgeWith(t, Config{SIPCodec: opusSIP, SIPSSRC: 0x51b, SIPDTMFPayloadType: 101, OnDigit: log.on})
	src := newWhatsAppSender(t, 1000, 8000, 20, true)
	type sent struct {
		pkt  []byte
		lost bool
	}
	var in []sent
	for i := range 60 {
		switch i {
		case 20:
			src.ts += 10 * 960 // a pause (DTX)
		case 40:
			src.ssrc, src.seq, src.ts = 0x777, 9, 1234 // a new stream
		}
		in = append(in, sent{pkt: src.next(), lost: i == 12 || i == 30})
	}
	for _, s := range in {
		if !s.lost {
			b.handleWhatsAppPacket(s.pkt)
		}
	}
	out := unmarshal(t, sip.out)
	var kept []rtp.Packet
	for _, s := range in {
		if !s.lost {
			kept = append(kept, unmarshal(t, [][]byte{s.pkt})[0])
		}
	}
	if len(out) != len(kept) {
		t.Fatalf("%d packets out, %d in", len(out), len(kept))
	}
	for i, p := range out {
		q := kept[i]
		if p.PayloadType != 107 || p.SSRC != 0x51b || !bytes.Equal(p.Payload, q.Payload) {
			t.Fatalf("packet %d: %+v, payload equal %v", i, p.Header, bytes.Equal(p.Payload, q.Payload))
		}
		if p.Marker != (i == 0 || i == 38) {
			t.Fatalf("packet %d: marker %v", i, p.Marker)
		}
		if i == 0 {
			continue
		}
		wantSeq, wantTS := uint16(1), uint32(960)
		switch i {
		case 12, 29: // after a lost packet: a sequence gap, the timestamp of two packets
			wantSeq, wantTS = 2, 1920
		case 19:
			wantTS = 11 * 960
		}
		if p.SequenceNumber-out[i-1].SequenceNumber != wantSeq || p.Timestamp-out[i-1].Timestamp != wantTS {
			t.Fatalf("packet %d: seq +%d ts +%d, want +%d +%d", i, p.SequenceNumber-out[i-1].SequenceNumber, p.Timestamp-out[i-1].Timestamp, wantSeq, wantTS)
		}
	}
	st := b.Stats().WhatsAppToSIP
	if st.Lost != 2 || st.Resets != 1 || st.FECRecovered+st.Concealed+st.Malformed != 0 || st.PacketsOut != uint64(len(kept)) {
		t.Fatalf("stats %v", st)
	}

	// A digit: events on the 48 kHz clock at the digit's own time, the
	// audio after it at its own time too.
	sip.out = nil
	b.handleWhatsAppPacket(src.next())
	for _, p := range src.digit('7', 100*time.Millisecond, nil) {
		b.handleWhatsAppPacket(p)
	}
	b.handleWhatsAppPacket(src.next())
	out = unmarshal(t, sip.out)
	evs := eventsIn(t, out, 101)
	if digitsOf(evs) != "7" || log.from("whatsapp") != "7" {
		t.Fatalf("events %q, OnDigit %v", digitsOf(evs), log.got)
	}
	checkEvent(t, evs[0], 800, 0)
	if evs[0].ts != out[0].Timestamp+960 || out[len(out)-1].Timestamp != evs[0].ts+800*6 {
		t.Fatalf("audio at %d, event at %d, audio after at %d", out[0].Timestamp, evs[0].ts, out[len(out)-1].Timestamp)
	}
	checkSeqAndTS(t, out, 960)
}

// And from the PBX: its Opus packets reach WhatsApp with the same payload
// bytes, one every 20 ms in the one WhatsApp SSRC and sequence, timestamps
// +960 whatever the PBX's SSRC and timestamps do; while the PBX is silent
// the pacer sends Opus silence frames.
func TestPassthroughSIPToWhatsApp(t *testing.T) {
	b, _, wa := newDrivenBridgeWith(t, Config{SIPCodec: opusSIP, WhatsAppSSRC: 0xfeed})
	clock := simClock(b)
	src := newWhatsAppSender(t, 600, 8000, 20, true) // plays the PBX's Opus encoder
	src.ssrc = 0x5195
	var pkts [][]byte
	var payloads [][]byte
	add := func(n int) {
		for range n {
			p := src.next()
			p[1] = p[1]&0x80 | 107
			pkts = append(pkts, p)
			payloads = append(payloads, p[12:])
		}
	}
	add(50)
	for range 10 { // the PBX sends nothing (hold, DTX)
		pkts = append(pkts, nil)
		src.ts += 960
	}
	src.ssrc, src.ts = 0x6666, 77 // music on hold from another source
	add(30)
	runPBX(b, clock, pkts, 5)

	out := unmarshal(t, wa.out)
	checkStream(t, out, 111, 0xfeed, 960, 0)
	if len(out) != len(pkts)+5 {
		t.Fatalf("%d packets for %d frames", len(out), len(pkts)+5)
	}
	silence, _ := opusSilence()
	var got [][]byte
	silent := 0
	for _, p := range out {
		if bytes.Equal(p.Payload, silence) {
			silent++
			continue
		}
		got = append(got, p.Payload)
	}
	if len(got) != len(payloads) {
		t.Fatalf("%d packets of the PBX's audio came through, want %d", len(got), len(payloads))
	}
	for i := range got {
		if !bytes.Equal(got[i], payloads[i]) {
			t.Fatalf("payload %d differs", i)
		}
	}
	st := b.Stats().SIPToWhatsApp
	t.Logf("%d silence frames; %v", silent, st)
	if st.SilenceFrames != uint64(silent) || silent < 10 || silent > 10+5+3 || st.Late+st.Lost+st.Overruns != 0 {
		t.Fatalf("%d silence frames, stats %v", silent, st)
	}
	// The silence frame is silence.
	if lvl := audio.RMS(decodeOpus(t, []rtp.Packet{{Payload: silence}}, 48000)); lvl > -80 {
		t.Fatalf("silence frame at %.1f dBFS", lvl)
	}
}

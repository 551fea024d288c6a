package webrtc

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// The sender report parses as RFC 3550 says, counts what was sent, and
// reports the loss seen on the receive side across a sequence wrap.
func TestRTCPSenderReport(t *testing.T) {
	var r rtcpSender
	r.init(0x11223344)
	for i := range 10 { // 65530 … 65535, 0 … 3 with 65533 and 1 lost
		seq := uint16(65530 + i)
		if seq == 65533 || seq == 1 {
			continue
		}
		r.received(0xaabbccdd, seq)
	}
	h := rtp.Header{Timestamp: 96000}
	due := 0
	for range rtcpFirst {
		if r.sent(&h, 80) {
			due++
		}
	}
	if due != 1 {
		t.Fatalf("%d reports due after %d packets, want 1", due, rtcpFirst)
	}
	pkts, err := rtcp.Unmarshal(r.report(time.Unix(1_700_000_000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	sr, ok := pkts[0].(*rtcp.SenderReport)
	if !ok || len(pkts) != 1 {
		t.Fatalf("got %T ×%d", pkts[0], len(pkts))
	}
	if sr.SSRC != 0x11223344 || sr.PacketCount != rtcpFirst || sr.OctetCount != rtcpFirst*80 || sr.RTPTime != 96000 {
		t.Errorf("sr %+v", sr)
	}
	if got := sr.NTPTime >> 32; got != 1_700_000_000+ntpEpochOffset {
		t.Errorf("ntp seconds %d", got)
	}
	if len(sr.Reports) != 1 {
		t.Fatalf("%d report blocks", len(sr.Reports))
	}
	rb := sr.Reports[0]
	if rb.SSRC != 0xaabbccdd || rb.TotalLost != 2 || rb.LastSequenceNumber != 1<<16|3 || rb.FractionLost != 2*256/10 {
		t.Errorf("report block %+v", rb)
	}
}

package rtpbridge

import (
	"math"
	"testing"
)

func TestRToMOS(t *testing.T) {
	for _, c := range []struct{ r, mos float64 }{
		{-5, 1}, {0, 1}, {50, 2.58}, {70, 3.60}, {80, 4.02}, {93.2, 4.41}, {100, 4.5}, {120, 4.5},
	} {
		if got := rToMOS(c.r); math.Abs(got-c.mos) > 0.01 {
			t.Errorf("R %.1f: MOS %.3f, want %.2f", c.r, got, c.mos)
		}
	}
}

func TestEstimateMOS(t *testing.T) {
	// A clean G.711 leg alone (no Opus): R = 93.2 - 0.024*80 = 91.28.
	if got := estimateMOS(impG711, nil, 0, 0); math.Abs(got-rToMOS(93.2-0.024*80)) > 1e-9 {
		t.Errorf("clean G.711: %.3f", got)
	}
	// A clean transcoded call is good but below G.711 alone: Opus adds its Ie.
	clean := estimateMOS(impOpus, &impG711, 0, 0)
	if clean < 3.9 || clean > 4.2 {
		t.Errorf("clean opus+G.711: MOS %.2f, want about 4.05", clean)
	}
	// Loss and jitter only lower it, and steadily.
	prev := clean
	for _, loss := range []float64{0.5, 1, 2, 5, 10, 20} {
		m := estimateMOS(impOpus, &impG711, loss, 0)
		if m >= prev {
			t.Errorf("loss %.1f%%: MOS %.2f not below %.2f", loss, m, prev)
		}
		prev = m
	}
	if m := estimateMOS(impOpus, &impG711, 5, 0); m < 3.0 || m > 3.6 {
		t.Errorf("5%% loss: MOS %.2f, want about 3.3", m)
	}
	if m := estimateMOS(impOpus, &impG711, 0, 60); m >= clean || m < 3.5 {
		t.Errorf("60 ms jitter: MOS %.2f, want a little below %.2f", m, clean)
	}
	if m := estimateMOS(impOpus, &impG711, 100, 500); m != 1 {
		t.Errorf("everything lost: MOS %.2f, want 1", m)
	}
	// Out-of-range inputs are clamped, not propagated.
	if m := estimateMOS(impG711, nil, -3, -10); m != estimateMOS(impG711, nil, 0, 0) {
		t.Errorf("negative inputs: %.2f", m)
	}
}

func TestDirectionMOS(t *testing.T) {
	toSIP, toWA := directionMOS(false, true, 0, 1, 4, 1)
	if toWA >= toSIP {
		t.Errorf("loss on the SIP leg should lower what the caller hears: to sip %.2f, to whatsapp %.2f", toSIP, toWA)
	}
	pt, _ := directionMOS(true, true, 0, 0, 0, 0)
	tr, _ := directionMOS(false, true, 0, 0, 0, 0)
	g711, _ := directionMOS(true, false, 0, 0, 0, 0)
	if pt < tr || g711 < tr {
		t.Errorf("passthrough (opus %.2f, G.711 %.2f) should be no worse than transcoding %.2f", pt, g711, tr)
	}
	if lossPct(0, 0) != 0 || lossPct(90, 10) != 10 {
		t.Error("lossPct")
	}
}

// The snapshot carries each direction's loss and MOS, and the call's MOS is
// the worse direction's.
func TestStatsQuality(t *testing.T) {
	var w2s, s2w dirCounters
	w2s.packetsIn.Store(90)
	w2s.lost.Store(10)
	s2w.packetsIn.Store(100)
	s2w.jitterNs.Store(30e6)
	for _, passthrough := range []bool{false, true} {
		sip := &sipCodec{name: "pcmu", passthrough: passthrough}
		st := statsOf(&w2s, &s2w, sip)
		a, b := st.WhatsAppToSIP, st.SIPToWhatsApp
		if a.LossPct != 10 || b.LossPct != 0 || a.JitterMs != 0 || b.JitterMs != 30 {
			t.Fatalf("passthrough %v: loss %v/%v jitter %v/%v", passthrough, a.LossPct, b.LossPct, a.JitterMs, b.JitterMs)
		}
		toSIP, toWA := directionMOS(passthrough, false, 10, 0, 0, 30)
		if a.MOS != round2(toSIP) || b.MOS != round2(toWA) || st.MOS != round2(min(toSIP, toWA)) || st.MOS != a.MOS {
			t.Fatalf("passthrough %v: MOS %v/%v call %v, want %.2f/%.2f", passthrough, a.MOS, b.MOS, st.MOS, toSIP, toWA)
		}
	}
}

// MOS comes only from packets that arrived: a direction that received
// nothing has none (0), and the call's is the other direction's.
func TestMOSOnlyFromPacketsThatArrived(t *testing.T) {
	var w2s, s2w dirCounters
	if st := statsOf(&w2s, &s2w, &sipCodec{name: "pcmu"}); st.MOS != 0 || st.WhatsAppToSIP.MOS != 0 || st.SIPToWhatsApp.MOS != 0 {
		t.Errorf("no packets either way: MOS %v/%v/%v, want all 0", st.MOS, st.WhatsAppToSIP.MOS, st.SIPToWhatsApp.MOS)
	}
	w2s.packetsIn.Add(100)
	st := statsOf(&w2s, &s2w, &sipCodec{name: "pcmu"})
	if st.WhatsAppToSIP.MOS < 4 || st.SIPToWhatsApp.MOS != 0 || st.MOS != st.WhatsAppToSIP.MOS {
		t.Errorf("packets from WhatsApp only: MOS %v, whatsapp→sip %v, sip→whatsapp %v", st.MOS, st.WhatsAppToSIP.MOS, st.SIPToWhatsApp.MOS)
	}
	s2w.packetsIn.Add(100)
	s2w.lost.Add(10)
	st = statsOf(&w2s, &s2w, &sipCodec{name: "pcmu"})
	if st.SIPToWhatsApp.MOS == 0 || st.MOS != st.SIPToWhatsApp.MOS || st.MOS >= st.WhatsAppToSIP.MOS {
		t.Errorf("both ways, loss toward WhatsApp: MOS %v, whatsapp→sip %v, sip→whatsapp %v", st.MOS, st.WhatsAppToSIP.MOS, st.SIPToWhatsApp.MOS)
	}
}

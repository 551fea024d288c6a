package gateway

import (
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
	"github.com/wagateway/wagateway/whatsapp/webrtc"
)

// metaOfferWith is an offer in Meta's shape whose m-line lists formats
// (Opus 111, and PCMU 0 / PCMA 8 when the number's audio.additional_codecs
// asks for them; telephone-event 126).
func metaOfferWith(formats string) string {
	return strings.Join([]string{
		"v=0", "o=- 1732466400123456 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
		"a=group:BUNDLE audio", "a=ice-lite",
		"m=audio 40012 UDP/TLS/RTP/SAVPF " + formats, "c=IN IP4 127.0.0.1",
		"a=candidate:1 1 udp 2113937151 127.0.0.1 40012 typ host",
		"a=ice-ufrag:6k2qP1R6kBfI/2", "a=ice-pwd:Xq3vJp9mKc0sLw7aT4dHe2Nb",
		"a=fingerprint:sha-256 " + strings.Repeat("4F:", 31) + "4F",
		"a=setup:actpass", "a=mid:audio", "a=sendrecv", "a=rtcp-mux",
		"a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
		"a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:126 telephone-event/8000",
	}, "\r\n") + "\r\n"
}

// g711Trunk makes the loopback trunk whatsapp_codec: g711 with codecs.
func (m *machine) g711Trunk(codecs ...string) {
	m.g.rmu.Lock()
	defer m.g.rmu.Unlock()
	tm := m.g.trunkMedia["pbx"]
	tm.g711 = true
	m.g.trunkMedia["pbx"] = tm
	t := *m.g.trunks["pbx"]
	t.Codecs = codecs
	m.g.trunks = map[string]*sip.Trunk{"pbx": &t}
}

func (m *machine) connectOffer(id, sdp string) *call {
	m.t.Helper()
	c := m.g.startCall(whatsapp.CallEvent{Event: "connect", CallID: id, PhoneNumberID: testPNID,
		SDP: sdp, From: "15551234567", ProfileName: "Ada", Direction: "USER_INITIATED"}, m.g.log)
	if c == nil {
		m.t.Fatal("connect ignored")
	}
	return c
}

// activeByCodec is the active-bridged-calls gauge of a codec path.
func (m *machine) activeByCodec(path string) float64 {
	m.t.Helper()
	var mv dto.Metric
	if err := m.g.ops.metrics.activeByCodec.WithLabelValues(path).Write(&mv); err != nil {
		m.t.Fatal(err)
	}
	return mv.GetGauge().GetValue()
}

// The g711 path: the INVITE goes first, G.711 from Meta's offer first in
// the trunk's order; Meta is answered only once the PBX answered, in the
// PBX's codec (here PCMA, which Meta offered); pre_accept and accept carry
// that answer; the bridge passes PCMA through (codec path
// pcma-passthrough, in the gauge and the record).
var pathG711 = []callState{stateNew, stateRinging, stateAnswering, statePreAccepting, stateAwaitingMedia, stateAccepting, stateBridged, stateEnding, stateEnded}

func TestCallG711Passthrough(t *testing.T) {
	m := newMachine(t)
	m.g711Trunk("opus", "PCMA", "PCMU")
	m.dial.codec = sip.Codec{Name: "PCMA", PayloadType: 8, ClockRate: 8000}
	hold := make(gate)
	m.dial.hold = hold
	c := m.connectOffer("wacid.g711", metaOfferWith("111 0 8 126"))
	inv := recv(t, m.dial.invited, "the INVITE")
	if want := []string{"PCMA", "PCMU", "opus"}; !slices.Equal(inv.Codecs, want) {
		t.Errorf("INVITE offers %v, want %v", inv.Codecs, want)
	}
	time.Sleep(30 * time.Millisecond)
	if got := m.graph.sent(); len(got) != 0 {
		t.Errorf("graph %v before the PBX answered: Meta is answered in the PBX's codec", got)
	}
	close(hold)
	leg := recv(t, m.ans.made, "the WebRTC leg")
	if leg.Codec().Name != webrtc.CodecPCMA {
		t.Fatalf("answered Meta with %v, want PCMA", leg.Codec())
	}
	recv(t, m.dial.pbx, "the PBX's answer")
	m.waitState(c, stateBridged)
	m.waitMedia(c)
	if n := m.activeByCodec("pcma-passthrough"); n != 1 {
		t.Errorf("active pcma-passthrough calls %v, want 1", n)
	}
	if l := c.live(); l.CodecPath != "pcma-passthrough" || l.Stats.SIPToWhatsApp.PacketsOut == 0 || l.Stats.WhatsAppToSIP.PacketsOut == 0 {
		t.Errorf("live %+v", l)
	}
	m.terminate("wacid.g711")
	r := m.ended(c, pathG711...)
	expectRecord(t, r, OutcomeBridged, byCaller)
	expectGraph(t, m.graph, "pre_accept", "accept")
	if r.WhatsAppCodec != "PCMA" || r.SIPCodec != "PCMA" || r.CodecPath != "pcma-passthrough" {
		t.Errorf("record codecs whatsapp %q sip %q path %q", r.WhatsAppCodec, r.SIPCodec, r.CodecPath)
	}
	if r.Times.Invite.IsZero() || r.Times.PreAccept.Before(r.Times.Answer) || r.Times.Accept.Before(r.Times.PreAccept) {
		t.Errorf("times %+v: invite, the PBX's answer, pre_accept, accept in that order", r.Times)
	}
	if m.activeByCodec("pcma-passthrough") != 0 {
		t.Error("the gauge still counts the call")
	}
}

// The fallbacks to Opus on a g711 trunk: the PBX answers a codec Meta did
// not offer (transcoded, still answered after the PBX); Meta offers no
// G.711 (the usual path: pre_accept before the INVITE, the trunk's own
// codec list); the route answers on early media (likewise).
func TestCallG711FallsBackToOpus(t *testing.T) {
	t.Run("pbx answers G.722", func(t *testing.T) {
		m := newMachine(t)
		m.g711Trunk("PCMU", "G722")
		m.dial.codec = sip.Codec{Name: "G722", PayloadType: 9, ClockRate: 8000}
		c := m.connectOffer("wacid.g722", metaOfferWith("111 0 8 126"))
		if inv := recv(t, m.dial.invited, "the INVITE"); !slices.Equal(inv.Codecs, []string{"PCMU", "G722"}) {
			t.Errorf("INVITE offers %v", inv.Codecs)
		}
		if leg := recv(t, m.ans.made, "the WebRTC leg"); leg.Codec().Name != webrtc.CodecOpus {
			t.Errorf("answered Meta with %v, want Opus", leg.Codec())
		}
		m.waitState(c, stateBridged)
		m.terminate("wacid.g722")
		r := m.ended(c, pathG711...)
		if r.WhatsAppCodec != webrtc.CodecOpus || r.CodecPath != "opus-g722" {
			t.Errorf("record whatsapp %q path %q", r.WhatsAppCodec, r.CodecPath)
		}
	})
	for _, tc := range []struct {
		name  string
		offer string
		early bool
	}{
		{"meta offers opus only", metaOfferWith("111 126"), false},
		{"early media route", metaOfferWith("111 0 8 126"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			m.g711Trunk("PCMU", "PCMA")
			if tc.early {
				m.answerEarly()
			}
			c := m.connectOffer("wacid.opus", tc.offer)
			if leg := recv(t, m.ans.made, "the WebRTC leg"); leg.Codec().Name != webrtc.CodecOpus {
				t.Errorf("answered Meta with %v, want Opus", leg.Codec())
			}
			if inv := recv(t, m.dial.invited, "the INVITE"); inv.Codecs != nil {
				t.Errorf("INVITE offers %v, want the trunk's own list", inv.Codecs)
			}
			m.waitState(c, stateBridged)
			m.terminate("wacid.opus")
			r := m.ended(c, pathBridged...)
			if r.CodecPath != "opus-pcmu" {
				t.Errorf("codec path %q", r.CodecPath)
			}
		})
	}
}

// A g711 call the PBX refuses never answered Meta: it is rejected, with no
// pre_accept and no leg. One the caller leaves while Meta's answer is made
// ends from answering.
func TestCallG711EndsBeforeMetaIsAnswered(t *testing.T) {
	m := newMachine(t)
	m.g711Trunk("PCMU")
	m.dial.mode, m.dial.code = dialReject, 486
	c := m.connectOffer("wacid.busy", metaOfferWith("111 0 126"))
	r := m.ended(c, stateNew, stateRinging, stateEnding, stateEnded)
	expectRecord(t, r, OutcomePBXRejected, byPBX)
	expectGraph(t, m.graph, "reject")
	if len(m.ans.made) != 0 {
		t.Error("a WebRTC leg was made for a call the PBX refused")
	}

	m = newMachine(t)
	m.g711Trunk("PCMU")
	m.ans.hold = make(gate)
	c = m.connectOffer("wacid.gone", metaOfferWith("111 0 126"))
	m.waitState(c, stateAnswering)
	m.terminate("wacid.gone")
	close(m.ans.hold)
	r = m.ended(c, stateNew, stateRinging, stateAnswering, stateEnding, stateEnded)
	expectRecord(t, r, OutcomeCallerHungUp, byCaller)
}

// A business-initiated call on a g711 trunk whose agent negotiated PCMU
// offers Meta PCMU first; Meta's PCMU answer is passed through to the
// agent (pcmu-passthrough), an Opus answer transcoded.
func TestOutboundG711(t *testing.T) {
	for _, tc := range []struct{ answer, path string }{
		{"g711:PCMU", "pcmu-passthrough"},
		{"v=0 meta answer", "opus-pcmu"},
	} {
		m := newOutMachine(t, OutboundRouteConfig{})
		m.g711Trunk("PCMU", "PCMA")
		c, a := m.dial("+14085551234")
		recv(t, m.offer.made, "the offer leg")
		if g, _ := m.offer.g711.Load().(string); g != webrtc.CodecPCMU {
			t.Errorf("offered %q first, want PCMU", g)
		}
		m.waitState(c, stateRingingUser)
		m.answer(tc.answer)
		m.status("ACCEPTED")
		recv(t, a.answered, "the 200 OK to the agent")
		m.waitState(c, stateBridged)
		m.waitMedia(c)
		if l := c.live(); l.CodecPath != tc.path {
			t.Errorf("%s: codec path %q, want %q", tc.answer, l.CodecPath, tc.path)
		}
		m.userTerminates()
		m.waitCalls()
	}
}

func TestCodecPath(t *testing.T) {
	for _, tc := range []struct{ wa, sip, want string }{
		{"", "", ""}, {"", "PCMU", "opus-pcmu"}, {"opus", "G722", "opus-g722"}, {"opus", "opus", "opus-passthrough"},
		{"PCMU", "PCMU", "pcmu-passthrough"}, {"PCMA", "PCMA", "pcma-passthrough"},
	} {
		if got := codecPath(tc.wa, tc.sip); got != tc.want {
			t.Errorf("codecPath(%q, %q) = %q, want %q", tc.wa, tc.sip, got, tc.want)
		}
	}
}

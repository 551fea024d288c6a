package gateway

import (
	"errors"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
)

// answerEarly sets the loopback route's early_media to answer.
func (m *machine) answerEarly() {
	m.g.cfg.Numbers[0].Routes[0].EarlyMedia = EarlyMediaAnswer
	m.g.rmu.Lock()
	m.g.router = NewRouter(m.g.cfg.Numbers)
	m.g.rmu.Unlock()
}

// By default the machine asks for no early media: the PBX's audio before
// its 200 OK is the sip package's to drop, and accept waits for the 200 OK.
func TestCallEarlyMediaIgnoredByDefault(t *testing.T) {
	m := newMachine(t)
	hold := make(gate)
	m.dial.mode, m.dial.hold = dialEarly, hold
	c := m.connect("wacid.ring")
	recv(t, m.dial.early, "the INVITE")
	if m.dial.earlyOffered.Load() {
		t.Error("early media asked for on a ringback route")
	}
	time.Sleep(50 * time.Millisecond)
	if s := c.sm.current(); s != stateRinging {
		t.Errorf("state %s while the PBX only sent a 183, want ringing", s)
	}
	expectGraph(t, m.graph, "pre_accept")
	close(hold)
	m.waitState(c, stateBridged)
	m.terminate("wacid.ring")
	r := m.ended(c, pathBridged...)
	if !r.Times.Early.IsZero() {
		t.Errorf("record has an early-media time %v on a ringback route", r.Times.Early)
	}
}

// early_media: answer: the 183 bridges the call and Meta gets accept while
// the INVITE still waits for its 200 OK; the 200 OK then changes nothing for
// WhatsApp, and the record has both times.
func TestCallAnsweredOnEarlyMedia(t *testing.T) {
	m := newMachine(t)
	m.answerEarly()
	hold := make(gate)
	m.dial.mode, m.dial.hold = dialEarly, hold
	c := m.connect("wacid.early")
	leg := recv(t, m.ans.made, "the WebRTC leg")
	early := recv(t, m.dial.early, "the early media")
	m.waitState(c, stateBridged)
	expectGraph(t, m.graph, "pre_accept", "accept")
	deadline := time.Now().Add(2 * time.Second)
	for leg.written.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if leg.written.Load() < 3 {
		t.Error("the early media did not reach WhatsApp")
	}
	close(hold) // the PBX's 200 OK
	if pbx := recv(t, m.dial.pbx, "the PBX's answer"); pbx != early {
		t.Fatal("the answered call is not the early media's")
	}
	time.Sleep(30 * time.Millisecond)
	if s := c.sm.current(); s != stateBridged {
		t.Errorf("state %s after the 200 OK, want bridged", s)
	}
	m.terminate("wacid.early")
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomeBridged, byCaller)
	expectGraph(t, m.graph, "pre_accept", "accept")
	if early.byes.Load() != 1 {
		t.Errorf("PBX got %d BYEs, want 1", early.byes.Load())
	}
	if r.Times.Early.IsZero() || r.Times.Answer.Before(r.Times.Early) || r.SIPCallID != "sip-call-1" {
		t.Errorf("record times %+v, sip call %q: want early media, then the answer", r.Times, r.SIPCallID)
	}
}

// The PBX plays early media, then refuses (an announcement, then 486): the
// call, already accepted, ends with terminate, as a PBX rejection with its
// Reason recorded.
func TestCallEarlyMediaThenRejected(t *testing.T) {
	m := newMachine(t)
	m.answerEarly()
	hold := make(gate)
	m.dial.mode, m.dial.hold, m.dial.code = dialEarly, hold, 486
	c := m.connect("wacid.ann")
	m.waitState(c, stateBridged)
	close(hold)
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomePBXRejected, byPBX)
	expectGraph(t, m.graph, "pre_accept", "accept", "terminate")
	if r.SIPFinalCode != 486 || r.PBXReason == nil || r.PBXReason.Cause != 17 || r.PBXReason.Protocol != "Q.850" {
		t.Errorf("sip final %d, pbx reason %+v: want 486 with Q.850 cause 17", r.SIPFinalCode, r.PBXReason)
	}
}

// The caller leaves while the call is bridged on early media: the INVITE
// is cancelled with a Reason saying the caller hung up.
func TestCallCallerLeavesDuringEarlyMedia(t *testing.T) {
	m := newMachine(t)
	m.answerEarly()
	m.dial.mode, m.dial.hold = dialEarly, make(gate)
	c := m.connect("wacid.leave")
	m.waitState(c, stateBridged)
	m.waitMedia(c)
	m.terminate("wacid.leave")
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomeBridged, byCaller)
	if !m.dial.canceled.Load() {
		t.Error("the INVITE was not cancelled")
	}
	if got := cancelReasonOf(m.dial); got.Cause != 16 || got.Protocol != "Q.850" {
		t.Errorf("CANCEL reason %+v, want Q.850 cause 16", got)
	}
}

func cancelReasonOf(d *fakeDialer) sip.Reason {
	cause, _ := d.cause.Load().(error)
	var cc *sip.CancelCause
	if errors.As(cause, &cc) {
		return cc.Reason
	}
	return sip.Reason{}
}

// The CANCEL of an INVITE says why (RFC 3326): no answer within the
// route's answer_timeout (Q.850 19), the caller hung up (16).
func TestCallCancelCarriesReason(t *testing.T) {
	t.Run("no answer", func(t *testing.T) {
		m := newMachine(t)
		m.dial.mode = dialRing
		c := m.connect("wacid.noans")
		m.ended(c, pathRinging...)
		if got := cancelReasonOf(m.dial); got.Cause != 19 {
			t.Errorf("CANCEL reason %+v, want Q.850 cause 19", got)
		}
	})
	t.Run("caller hung up", func(t *testing.T) {
		m := newMachine(t)
		m.dial.mode = dialRing
		c := m.connect("wacid.gone")
		recv(t, m.dial.invited, "the INVITE")
		m.terminate("wacid.gone")
		m.ended(c, pathRinging...)
		if got := cancelReasonOf(m.dial); got.Cause != 16 {
			t.Errorf("CANCEL reason %+v, want Q.850 cause 16", got)
		}
	})
}

// The PBX's own Reason on its BYE goes into the record.
func TestCallPBXByeReasonRecorded(t *testing.T) {
	m := newMachine(t)
	c, _, pbx := m.bridge("wacid.bye")
	pbx.byeWith(sip.Reason{Protocol: "Q.850", Cause: 16, Text: "Normal Clearing"})
	r := m.ended(c, pathBridged...)
	expectRecord(t, r, OutcomeBridged, byPBX)
	if r.PBXReason == nil || *r.PBXReason != (RecordReason{Protocol: "Q.850", Cause: 16, Text: "Normal Clearing"}) {
		t.Errorf("pbx reason %+v", r.PBXReason)
	}
}

// A trunk in rfc4733 mode whose PBX answered without telephone-event falls
// back to the trunk's dtmf_fallback (info by default), and says so.
func TestCallDTMFFallback(t *testing.T) {
	for _, tc := range []struct {
		fallback string
		noDTMF   bool
		mode     string
		fell     bool
	}{
		{"", true, "info", true},
		{"inband", true, "inband", true},
		{"none", true, "rfc4733", false},
		{"", false, "rfc4733", false},
	} {
		t.Run(tc.fallback+map[bool]string{true: "-no-telephone-event"}[tc.noDTMF], func(t *testing.T) {
			m := newMachine(t)
			p, err := parseDTMFPolicy("rfc4733", tc.fallback)
			if err != nil {
				t.Fatal(err)
			}
			m.g.rmu.Lock()
			m.g.trunkMedia["pbx"] = trunkMedia{dtmf: p}
			m.g.rmu.Unlock()
			m.dial.noDTMF = tc.noDTMF
			c, _, _ := m.bridge("wacid.dtmf")
			m.terminate("wacid.dtmf")
			r := m.ended(c, pathBridged...)
			if r.DTMF != tc.mode || r.DTMFFallback != tc.fell {
				t.Errorf("record dtmf %q (fallback %v), want %q (%v)", r.DTMF, r.DTMFFallback, tc.mode, tc.fell)
			}
		})
	}
}

func TestParseDTMFPolicy(t *testing.T) {
	if _, err := parseDTMFPolicy("rfc4733", "rfc4733"); err == nil {
		t.Error("rfc4733 taken as its own fallback")
	}
	if _, err := parseDTMFPolicy("rfc4733", "loud"); err == nil {
		t.Error("an unknown fallback taken")
	}
	p, err := parseDTMFPolicy("info", "inband")
	if err != nil {
		t.Fatal(err)
	}
	if mode, fell := p.forPBX(0); mode != rtpbridge.DTMFModeInfo || fell {
		t.Errorf("info trunk: %v (fell back %v)", mode, fell)
	}
}

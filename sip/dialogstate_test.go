package sip

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// parseTestMessage parses a SIP message written with \n line ends.
func parseTestMessage(t testing.TB, text string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return m
}

// testDialogs are dialogs as the UA builds them: ours to a trunk (through
// two proxies, then without Record-Route), and a trunk's to us.
func testDialogs(t *testing.T) map[string]*dialog {
	t.Helper()
	contact := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "wagateway", Host: "127.0.0.1", Port: 5060}}
	invite := `INVITE sip:agents@pbx.example SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1
From: "Ana \"the tester\"" <sip:%2B15551234567@pbx.example>;tag=gw-tag-1
To: <sip:agents@pbx.example>
Call-ID: 5e2a9c41@gw
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0

`
	ok := `SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1
Record-Route: <sip:p2.example:5070;lr>
Record-Route: <sip:10.0.0.1;lr;ftag=gw-tag-1>
From: "Ana \"the tester\"" <sip:%2B15551234567@pbx.example>;tag=gw-tag-1
To: <sip:agents@pbx.example>;tag=pbx-tag-9
Call-ID: 5e2a9c41@gw
CSeq: 1 INVITE
Contact: <sip:agent7@10.0.0.9:5080;transport=udp>
Content-Length: 0

`
	out := map[string]*dialog{}
	for name, res := range map[string]string{
		"uac_routes":    ok,
		"uac_no_routes": strings.Replace(strings.Replace(ok, "Record-Route: <sip:p2.example:5070;lr>\n", "", 1), "Record-Route: <sip:10.0.0.1;lr;ftag=gw-tag-1>\n", "", 1),
	} {
		inv := parseTestMessage(t, invite).(*sip.Request)
		inv.SetTransport("UDP")
		d, err := uacDialog(inv, parseTestMessage(t, res).(*sip.Response), "127.0.0.1:5070", contact)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = d
	}

	inbound := parseTestMessage(t, `INVITE sip:+14085551234@127.0.0.1:5060;user=phone SIP/2.0
Via: SIP/2.0/TCP 10.0.0.9:5080;branch=z9hG4bK-2
Record-Route: <sip:10.0.0.1;transport=tcp;lr>
Record-Route: <sip:p2.example;transport=tcp;lr>
From: Agent <sip:agent7@pbx.example>;tag=pbx-tag-3
To: <sip:+14085551234@127.0.0.1;user=phone>
Call-ID: in-77@pbx
CSeq: 314 INVITE
Contact: <sip:agent7@10.0.0.9:5080;transport=tcp>
Max-Forwards: 70
Content-Length: 0

`).(*sip.Request)
	inbound.SetTransport("TCP")
	d, err := uasDialog(inbound, "gw-tag-2", contact)
	if err != nil {
		t.Fatal(err)
	}
	out["uas_routes"] = d
	return out
}

// A dialog's DialogState survives JSON, and the BYE ByeDialog builds from
// it is the one the call would send itself, but for a CSeq 100 higher.
func TestDialogStateBye(t *testing.T) {
	why := Reason{Protocol: "Q.850", Cause: 41, Text: "gateway instance lost"}
	for name, d := range testDialogs(t) {
		t.Run(name, func(t *testing.T) {
			c := &Call{d: d}
			for range 3 { // in-dialog requests sent before the state is saved
				d.request(sip.INFO, 0)
			}
			st := c.DialogState()
			if st.CSeq != d.localSeq {
				t.Errorf("cseq %d, want the last sent, %d", st.CSeq, d.localSeq)
			}
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			var saved DialogState
			if err := json.Unmarshal(b, &saved); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(saved, st) {
				t.Fatalf("JSON round trip:\n got %+v\nwant %+v\n%s", saved, st, b)
			}

			ours, err := byeFromState(saved, "wagateway", why)
			if err != nil {
				t.Fatal(err)
			}
			own := byeRequest(d, 0, "wagateway", why) // the call's own BYE: CSeq st.CSeq+1

			if ours.Method != sip.BYE || own.Method != sip.BYE {
				t.Fatalf("methods %s, %s", ours.Method, own.Method)
			}
			if g, w := ours.Recipient.String(), own.Recipient.String(); g != w {
				t.Errorf("Request-URI %s, want %s", g, w)
			}
			if g, w := headerValues(ours, "Route"), headerValues(own, "Route"); !reflect.DeepEqual(g, w) {
				t.Errorf("Route %q, want %q", g, w)
			}
			if g, w := ours.From().Value(), own.From().Value(); g != w {
				t.Errorf("From %s, want %s", g, w)
			}
			if g, w := ours.To().Value(), own.To().Value(); g != w {
				t.Errorf("To %s, want %s", g, w)
			}
			if g, _ := ours.From().Params.Get("tag"); g != d.localTag() || g == "" {
				t.Errorf("From tag %q, want %q", g, d.localTag())
			}
			if g, _ := ours.To().Params.Get("tag"); g != d.remoteTag() || g == "" {
				t.Errorf("To tag %q, want %q", g, d.remoteTag())
			}
			if g, w := ours.CallID().Value(), own.CallID().Value(); g != w {
				t.Errorf("Call-ID %s, want %s", g, w)
			}
			if g, w := ours.Destination(), own.Destination(); g != w {
				t.Errorf("destination %s, want %s", g, w)
			}
			if g, w := ours.Transport(), own.Transport(); g != w {
				t.Errorf("transport %s, want %s", g, w)
			}
			if g, w := ours.CSeq().SeqNo, st.CSeq+100; g != w || ours.CSeq().MethodName != sip.BYE {
				t.Errorf("CSeq %s, want %d BYE", ours.CSeq().Value(), w)
			}
			if own.CSeq().SeqNo != st.CSeq+1 {
				t.Errorf("the call's own BYE has CSeq %d, want %d", own.CSeq().SeqNo, st.CSeq+1)
			}
			// The rest, header by header, in order: the same message.
			ours.CSeq().SeqNo = own.CSeq().SeqNo
			if g, w := ours.String(), own.String(); g != w {
				t.Errorf("BYE from the state:\n%s\nthe call's:\n%s", g, w)
			}
		})
	}
}

func headerValues(m sip.Message, name string) []string {
	var out []string
	for _, h := range m.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

func goodDialogState() DialogState {
	return DialogState{
		CallID:    "5e2a9c41@gw",
		From:      `"Ana" <sip:ana@pbx.example>;tag=gw-tag-1`,
		To:        `<sip:agents@pbx.example>;tag=pbx-tag-9`,
		Target:    "sip:agent7@10.0.0.9:5080;transport=udp",
		Routes:    []string{"<sip:10.0.0.1;lr>"},
		CSeq:      7,
		Transport: "UDP",
		Dest:      "127.0.0.1:5070",
	}
}

// Bad states give an error naming the field, and send nothing.
func TestDialogStateBad(t *testing.T) {
	if _, err := byeFromState(goodDialogState(), "wagateway", Reason{}); err != nil {
		t.Fatalf("the good state: %v", err)
	}
	for _, tc := range []struct {
		name, field string
		edit        func(*DialogState)
	}{
		{"empty call-id", "call_id", func(s *DialogState) { s.CallID = "" }},
		{"call-id with a space", "call_id", func(s *DialogState) { s.CallID = "a b" }},
		{"call-id with CRLF", "call_id", func(s *DialogState) { s.CallID = "a\r\nX-Evil: 1" }},
		{"empty from", "from", func(s *DialogState) { s.From = "" }},
		{"unparsable from", "from", func(s *DialogState) { s.From = `"Ana <sip:ana@pbx.example>;tag=1` }},
		{"from without URI", "from", func(s *DialogState) { s.From = "<>;tag=1" }},
		{"from without tag", "from", func(s *DialogState) { s.From = "<sip:ana@pbx.example>" }},
		{"from with CRLF", "from", func(s *DialogState) { s.From = "<sip:ana@pbx.example>;tag=1\r\nX-Evil: 1" }},
		{"to without tag", "to", func(s *DialogState) { s.To = "<sip:agents@pbx.example>" }},
		{"wildcard to", "to", func(s *DialogState) { s.To = "*;tag=1" }},
		{"empty target", "target", func(s *DialogState) { s.Target = "" }},
		{"tel target", "target", func(s *DialogState) { s.Target = "tel:+15551234567" }},
		{"unparsable target", "target", func(s *DialogState) { s.Target = "sip:" }},
		{"empty route", "routes[0]", func(s *DialogState) { s.Routes = []string{""} }},
		{"route with LF", "routes[1]", func(s *DialogState) { s.Routes = []string{"<sip:p1;lr>", "<sip:p2;lr>\nX-Evil: 1"} }},
		{"unparsable route", "routes[0]", func(s *DialogState) { s.Routes = []string{"<sip:"} }},
		{"unknown transport", "transport", func(s *DialogState) { s.Transport = "SCTP" }},
		{"no transport", "transport", func(s *DialogState) { s.Transport = "" }},
		{"dest without port", "dest", func(s *DialogState) { s.Dest = "127.0.0.1" }},
		{"dest with bad port", "dest", func(s *DialogState) { s.Dest = "127.0.0.1:99999" }},
		{"cseq without room", "cseq", func(s *DialogState) { s.CSeq = math.MaxUint32 - 50 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := goodDialogState()
			tc.edit(&st)
			bye, err := byeFromState(st, "wagateway", Reason{})
			if err == nil {
				t.Fatalf("no error; BYE:\n%s", bye)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

// ByeDialog refuses, before sending anything, a bad state and a transport
// the UA does not run, and works only on a started UA.
func TestByeDialogRefuses(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	idle, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := idle.ByeDialog(ctx, goodDialogState(), Reason{}); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Errorf("UA not started: %v", err)
	}
	ua := newTestUA(t, "udp")
	for _, tc := range []struct{ transport, want string }{{"SCTP", "transport"}, {"TCP", "the UA has none"}, {"tls", "the UA has none"}} {
		st := goodDialogState()
		st.Transport = tc.transport
		if err := ua.ByeDialog(ctx, st, Reason{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("transport %s: %v, want an error saying %q", tc.transport, err, tc.want)
		}
	}
	st := goodDialogState()
	st.CallID = ""
	if err := ua.ByeDialog(ctx, st, Reason{}); err == nil || !strings.Contains(err.Error(), "call_id") {
		t.Errorf("empty Call-ID: %v", err)
	}
}

// TestByeDialogFromAnotherUA: UA #1 calls sipp, saves the dialog's state
// (JSON, as in Redis) and goes away without a BYE; UA #2, another gateway
// instance on another port, ends the dialog from the state. sipp checks the
// BYE (CSeq, User-Agent, Reason) and answers 200, or 481 as if it had
// forgotten the dialog.
func TestByeDialogFromAnotherUA(t *testing.T) {
	for _, tc := range []struct {
		name, scenario string
		code           int // 0: 2xx
	}{
		{"200", "uas_bye_saved_dialog.xml", 0},
		{"481", "uas_bye_saved_dialog_481.xml", 481},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			ua1 := newTestUA(t, "udp")
			ua2 := newTestUA(t, "udp")
			p := startSipp(t, tc.scenario, "u1")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := ua1.Invite(ctx, InviteRequest{Trunk: sippTrunk(p, "udp"), To: "sip:agents", FromUser: "+15551234567"})
			if err != nil {
				t.Fatal(err)
			}
			saved, err := json.Marshal(c.DialogState())
			if err != nil {
				t.Fatal(err)
			}
			// Instance #1 dies: no BYE.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if r := c.EndReason(); r != "closed" {
				t.Fatalf("end reason %q, want closed", r)
			}
			ua1.Close()

			var st DialogState
			if err := json.Unmarshal(saved, &st); err != nil {
				t.Fatal(err)
			}
			err = ua2.ByeDialog(ctx, st, Reason{Protocol: "Q.850", Cause: 41, Text: "gateway instance lost"})
			var fe *FinalError
			switch {
			case tc.code == 0 && err != nil:
				t.Errorf("ByeDialog: %v", err)
			case tc.code != 0 && !errors.As(err, &fe):
				t.Errorf("ByeDialog: %v, want a FinalError %d", err, tc.code)
			case tc.code != 0 && fe.Code != tc.code:
				t.Errorf("ByeDialog: final response %d, want %d", fe.Code, tc.code)
			}
			p.wait(t, 10*time.Second)
		})
	}
}

// Any saved state: building the BYE never panics, and a state it takes
// gives a BYE that parses back as one message with the state's Call-ID,
// tags, CSeq + 100 and Route headers, nothing added.
func FuzzDialogStateBye(f *testing.F) {
	g := goodDialogState()
	f.Add(g.CallID, g.From, g.To, g.Target, g.Routes[0], g.Transport, g.Dest, g.CSeq)
	f.Add("x", `"A \"b\"" <sip:%2B1@h>;tag=1`, "<sips:u@[::1]:5061;transport=tls>;tag=2", "sips:u@[::1]:5061", "<sip:[::1];lr>", "tls", "", uint32(0))
	f.Add("x", "sip:a@h;tag=1", "sip:b@h;tag=2", "sip:b@h", "<sip:p1;lr>,<sip:p2;lr>", "tcp", "h:1", uint32(math.MaxUint32))
	f.Fuzz(func(t *testing.T, callID, from, to, target, route, transport, dest string, cseq uint32) {
		st := DialogState{CallID: callID, From: from, To: to, Target: target, Transport: transport, Dest: dest, CSeq: cseq}
		if route != "" {
			st.Routes = []string{route}
		}
		bye, err := byeFromState(st, "wagateway", Reason{Protocol: "Q.850", Cause: 16})
		if err != nil {
			return
		}
		m, err := sip.ParseMessage([]byte(bye.String()))
		if err != nil {
			return // sipgo writes some values it does not read back; not ours to fix
		}
		req, ok := m.(*sip.Request)
		if !ok || req.Method != sip.BYE {
			t.Fatalf("not a BYE:\n%s", bye)
		}
		if cid := req.CallID(); cid == nil || cid.Value() != callID {
			t.Fatalf("Call-ID %v, want %q", cid, callID)
		}
		if cs := req.CSeq(); cs == nil || cs.SeqNo != cseq+100 {
			t.Fatalf("CSeq %v, want %d", cs, cseq+100)
		}
		names := []string{"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "User-Agent", "Reason"}
		for _, name := range names {
			if n := len(req.GetHeaders(name)); n != 1 {
				t.Fatalf("%d %s headers:\n%s", n, name, bye)
			}
		}
		if n := len(req.Headers()); n != len(names)+len(req.GetHeaders("Route")) {
			t.Fatalf("headers added:\n%s", bye)
		}
	})
}

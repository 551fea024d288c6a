package webrtc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// icePeer is the caller's side of ICE in the unit tests: one loopback UDP
// socket that reads everything our agent sends, can answer our checks on
// its own (autoAnswer) and sends checks of its own, its STUN messages built
// with pion/stun.
type icePeer struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
	pwds map[string]string // the caller's ufrag → its password (one per call)
	in   chan peerDatagram

	autoAnswer  atomic.Bool
	autoRefuse  atomic.Bool  // answer every check 487 Role Conflict instead
	checks      atomic.Int64 // Binding requests received
	nominations atomic.Int64 // of them with USE-CANDIDATE
	dtls        atomic.Int64 // DTLS records received (RFC 7983: 20-63)
}

type peerDatagram struct {
	b    []byte
	from netip.AddrPort
}

// The caller's ICE credentials in the tests (RFC 8445 §5.3: a ufrag of at
// least 4 characters, a password of at least 22).
const (
	peerUfrag = "peerUfrag"
	peerPwd   = "peerPassword0123456789abc"
)

func newICEPeer(t *testing.T, pwds map[string]string) *icePeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	if pwds == nil {
		pwds = map[string]string{peerUfrag: peerPwd}
	}
	p := &icePeer{t: t, conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), pwds: pwds, in: make(chan peerDatagram, 1024)}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go p.readLoop(done)
	return p
}

func (p *icePeer) readLoop(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		if n > 0 && b[0] >= 20 && b[0] < 64 {
			p.dtls.Add(1)
		}
		if m, ok := decodeSTUN(b); ok && m.Type == stun.BindingRequest {
			p.checks.Add(1)
			if m.Contains(stun.AttrUseCandidate) {
				p.nominations.Add(1)
			}
			switch {
			case p.autoRefuse.Load():
				p.refuse(m, from, p.pwdFor(m), stun.CodeRoleConflict)
			case p.autoAnswer.Load():
				p.answer(m, from, p.pwdFor(m))
			}
		}
		select {
		case p.in <- peerDatagram{b, from}:
		default: // nobody reads: keep the newest only while answering
		}
	}
}

// pwdFor is the password of the call a check is for: our agent's USERNAME
// is "caller's ufrag:our ufrag" (RFC 8445 §7.2.2).
func (p *icePeer) pwdFor(m *stun.Message) string {
	var u stun.Username
	if u.GetFrom(m) != nil {
		return ""
	}
	ufrag, _, _ := strings.Cut(string(u), ":")
	return p.pwds[ufrag]
}

func decodeSTUN(b []byte) (*stun.Message, bool) {
	if len(b) == 0 || b[0] >= 4 {
		return nil, false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil {
		return nil, false
	}
	return m, true
}

// nextSTUN is the next STUN message of the given type, the rest skipped
// (DTLS, other STUN).
func (p *icePeer) nextSTUN(typ stun.MessageType, within time.Duration) (*stun.Message, netip.AddrPort, bool) {
	deadline := time.After(within)
	for {
		select {
		case d := <-p.in:
			if m, ok := decodeSTUN(d.b); ok && m.Type == typ {
				return m, d.from, true
			}
		case <-deadline:
			return nil, netip.AddrPort{}, false
		}
	}
}

// nextCheck is the next Binding request from our agent; the test fails
// without one within d.
func (p *icePeer) nextCheck(d time.Duration) (*stun.Message, netip.AddrPort) {
	p.t.Helper()
	m, from, ok := p.nextSTUN(stun.BindingRequest, d)
	if !ok {
		p.t.Fatalf("peer %v: no ICE check within %v", p.addr, d)
	}
	return m, from
}

// drain forgets what was received so far.
func (p *icePeer) drain() {
	for {
		select {
		case <-p.in:
		default:
			return
		}
	}
}

// answer sends a success response to req (RFC 8445 §7.3.1.4) from this
// peer's socket, with the integrity of pwd.
func (p *icePeer) answer(req *stun.Message, to netip.AddrPort, pwd string) {
	p.answerFrom(p.conn, req, to, pwd)
}

func (p *icePeer) answerFrom(conn *net.UDPConn, req *stun.Message, to netip.AddrPort, pwd string) {
	resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: to.Addr().AsSlice(), Port: int(to.Port())},
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		p.t.Errorf("build response: %v", err)
		return
	}
	if _, err := conn.WriteToUDPAddrPort(resp.Raw, to); err != nil && !errors.Is(err, net.ErrClosed) { // closed: the test is over
		p.t.Errorf("send response: %v", err)
	}
}

// refuse sends an error response to req with ERROR-CODE code, with the
// integrity of pwd, or none when pwd is empty.
func (p *icePeer) refuse(req *stun.Message, to netip.AddrPort, pwd string, code stun.ErrorCode) {
	p.refuseFrom(p.conn, req, to, pwd, code)
}

func (p *icePeer) refuseFrom(conn *net.UDPConn, req *stun.Message, to netip.AddrPort, pwd string, code stun.ErrorCode) {
	setters := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError,
		stun.ErrorCodeAttribute{Code: code, Reason: []byte("Role Conflict")}}
	if pwd != "" {
		setters = append(setters, stun.NewShortTermIntegrity(pwd))
	}
	resp, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		p.t.Errorf("build error response: %v", err)
		return
	}
	if _, err := conn.WriteToUDPAddrPort(resp.Raw, to); err != nil && !errors.Is(err, net.ErrClosed) { // closed: the test is over
		p.t.Errorf("send error response: %v", err)
	}
}

// check sends a Binding request of the caller (a controlling full agent)
// to our agent with the given credentials, USE-CANDIDATE if nominate, and
// returns its transaction.
func (p *icePeer) check(to netip.AddrPort, localUfrag, pwd string, nominate bool) [stun.TransactionIDSize]byte {
	p.t.Helper()
	return p.checkAs(to, localUfrag, peerUfrag, pwd, nominate)
}

// checkAs is check for the call whose caller's ufrag is remoteUfrag.
func (p *icePeer) checkAs(to netip.AddrPort, localUfrag, remoteUfrag, pwd string, nominate bool) [stun.TransactionIDSize]byte {
	p.t.Helper()
	return p.sendCheck(to, localUfrag+":"+remoteUfrag, pwd, ice.AttrControlling(0x0102030405060708), nominate)
}

// checkRole is check claiming the given role with the given tie-breaker
// (RFC 8445 §7.3.1.1's conflicts).
func (p *icePeer) checkRole(to netip.AddrPort, localUfrag, pwd string, controlling bool, tieBreaker uint64, nominate bool) [stun.TransactionIDSize]byte {
	p.t.Helper()
	var role stun.Setter = ice.AttrControlled(tieBreaker)
	if controlling {
		role = ice.AttrControlling(tieBreaker)
	}
	return p.sendCheck(to, localUfrag+":"+peerUfrag, pwd, role, nominate)
}

func (p *icePeer) sendCheck(to netip.AddrPort, username, pwd string, role stun.Setter, nominate bool) [stun.TransactionIDSize]byte {
	p.t.Helper()
	setters := []stun.Setter{
		stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(username),
		ice.PriorityAttr(0x6e7fffff),
		role,
	}
	if nominate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(m.Raw, to); err != nil {
		p.t.Fatal(err)
	}
	return m.TransactionID
}

// response waits for the response to transaction tx.
func (p *icePeer) response(tx [stun.TransactionIDSize]byte, within time.Duration) (*stun.Message, bool) {
	deadline := time.After(within)
	for {
		select {
		case d := <-p.in:
			if m, ok := decodeSTUN(d.b); ok && m.TransactionID == tx && m.Type.Class != stun.ClassRequest {
				return m, true
			}
		case <-deadline:
			return nil, false
		}
	}
}

// send sends raw bytes to our socket (media, as far as the demux sees).
func (p *icePeer) send(b []byte, to netip.AddrPort) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// testOffer is a caller's offer: ICE-lite like Meta's or a full agent's,
// host candidates at the given addresses, highest priority first.
func testOffer(lite bool, ufrag, pwd string, cands ...netip.AddrPort) string {
	lines := []string{"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0"}
	if lite {
		lines = append(lines, "a=ice-lite")
	}
	lines = append(lines, "m=audio 9 UDP/TLS/RTP/SAVPF 111 126", "c=IN IP4 0.0.0.0")
	for i, c := range cands {
		lines = append(lines, fmt.Sprintf("a=candidate:%d 1 udp %d %s %d typ host", i+1, 2130706431-i, c.Addr(), c.Port()))
	}
	lines = append(lines,
		"a=ice-ufrag:"+ufrag, "a=ice-pwd:"+pwd,
		"a=fingerprint:sha-256 "+strings.Repeat("AB:", 31)+"AB",
		"a=setup:actpass", "a=mid:0", "a=sendrecv", "a=rtcp-mux",
		"a=rtpmap:111 opus/48000/2", "a=rtpmap:126 telephone-event/8000")
	return strings.Join(lines, "\r\n") + "\r\n"
}

// answerOffer makes a leg for offer, closed when the test ends.
func answerOffer(t *testing.T, m *Media, offer string) *Leg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := m.Answer(ctx, offer, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// selectedRemote is the remote address of l's selected pair, if any.
func selectedRemote(l *Leg) (netip.AddrPort, bool) {
	l.ice.mu.Lock()
	defer l.ice.mu.Unlock()
	if l.ice.selected == nil {
		return netip.AddrPort{}, false
	}
	return l.ice.selected.remote, true
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rtpLike is a datagram the demux takes for SRTP (RFC 7983: 128-191, a
// payload type outside RTCP's): before DTLS is up the leg counts it early.
func rtpLike() []byte {
	b := make([]byte, 20)
	b[0], b[1] = 0x80, 111
	return b
}

package sip

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// MaxTraceMessage bounds the bytes of one traced SIP message; the rest is
// cut, the line saying how long the message was.
const MaxTraceMessage = 4096

// tracer writes the SIP message trace (UAConfig.Trace): each SIP message
// sent or received, start line, headers and body, as one debug line with
// the message's Call-ID (sip_call_id) and, for a call placed with
// InviteRequest.LogRef, that call id (call_id). Authorization and
// Proxy-Authorization values are masked.
//
// Where: received, each datagram (UDP) or read (TCP, TLS) that passed the
// source and rate guard (readFilter), on every transport; sent, each
// datagram written to the UDP socket (retransmissions included) and each
// write to a TCP or TLS connection a trunk opened to us. Messages sent on a
// TCP or TLS connection the gateway dialed itself are not traced (sipgo
// offers no per-UA hook for them).
type tracer struct {
	log  *zap.Logger
	refs sync.Map // Call-ID -> the call id of the logs (LogRef)
}

func newTracer(l *zap.Logger) *tracer { return &tracer{log: l.Named("trace")} }

// ref names the call a Call-ID belongs to in the trace; unref forgets it.
func (t *tracer) ref(sipCallID, callID string) {
	if t != nil && sipCallID != "" && callID != "" {
		t.refs.Store(sipCallID, callID)
	}
}

func (t *tracer) unref(sipCallID string) {
	if t != nil {
		t.refs.Delete(sipCallID)
	}
}

// traceLinger is how long a call's Call-ID stays named after the call
// ended: the answer to its BYE and retransmissions (64*T1) come later.
const traceLinger = 32 * time.Second

// unrefLater forgets a Call-ID once traceLinger has passed.
func (t *tracer) unrefLater(sipCallID string) {
	if t == nil {
		return
	}
	if _, ok := t.refs.Load(sipCallID); ok {
		time.AfterFunc(traceLinger, func() { t.refs.Delete(sipCallID) })
	}
}

// trace logs one message; dir is "recv" or "send".
func (t *tracer) trace(dir, transport string, local, remote net.Addr, msg []byte) {
	if t == nil {
		return
	}
	ce := t.log.Check(zapcore.DebugLevel, "sip "+dir)
	if ce == nil {
		return
	}
	text, start, callID := traceText(msg)
	fields := make([]zap.Field, 0, 9)
	if id, ok := t.refs.Load(callID); ok && callID != "" {
		fields = append(fields, zap.String("call_id", id.(string)))
	}
	if callID != "" {
		fields = append(fields, zap.String("sip_call_id", callID))
	}
	fields = append(fields, zap.String("dir", dir), zap.String("transport", transport),
		zap.String("local", addrString(local)), zap.String("remote", addrString(remote)),
		zap.String("start_line", start), zap.Int("bytes", len(msg)), zap.String("sip_msg", text))
	ce.Write(fields...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// traceText is msg as the trace shows it: credentials masked, cut at
// MaxTraceMessage bytes (on a rune boundary, saying how long it was); with
// its start line and its Call-ID ("" if none).
func traceText(msg []byte) (text, start, callID string) {
	var b bytes.Buffer
	b.Grow(min(len(msg), MaxTraceMessage) + 64)
	inHeaders := true
	first := true
	rest := msg
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		content := bytes.TrimRight(line, "\r\n")
		ending := line[len(content):]
		if first {
			start = string(content)
			first = false
		} else if inHeaders && len(content) == 0 {
			inHeaders = false
		}
		if inHeaders {
			name, value, ok := bytes.Cut(content, []byte(":"))
			if ok {
				n := string(bytes.TrimSpace(name))
				switch {
				case equalFoldAny(n, "authorization", "proxy-authorization"):
					content = maskCredentials(content, name, value)
				case equalFoldAny(n, "call-id", "i") && callID == "":
					callID = string(bytes.TrimSpace(value))
				}
			}
		}
		// A digest answer cut from its header (a TCP read that began
		// inside it) is masked too.
		if bytes.Contains(bytes.ToLower(content), []byte("response=")) && !bytes.Contains(content, []byte("<masked>")) {
			content = []byte("<masked>")
		}
		b.Write(content)
		b.Write(ending)
	}
	text = b.String()
	if len(text) > MaxTraceMessage {
		cut := MaxTraceMessage
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…(" + strconv.Itoa(len(msg)) + " bytes)"
	}
	if len(start) > 512 {
		start = start[:512]
	}
	if len(callID) > 256 {
		callID = callID[:256]
	}
	return text, start, callID
}

// maskCredentials keeps a credentials header's name and scheme (Digest),
// not its value.
func maskCredentials(content, name, value []byte) []byte {
	v := bytes.TrimSpace(value)
	scheme := v
	if i := bytes.IndexAny(v, " \t"); i >= 0 {
		scheme = v[:i]
	}
	out := make([]byte, 0, len(name)+len(scheme)+16)
	out = append(out, name...)
	out = append(out, ": "...)
	if len(scheme) > 0 && len(scheme) < 32 && !bytes.ContainsAny(scheme, "=\",") {
		out = append(out, scheme...)
		out = append(out, ' ')
	}
	return append(out, "<masked>"...)
}

func equalFoldAny(s string, names ...string) bool {
	for _, n := range names {
		if len(s) == len(n) && bytes.EqualFold([]byte(s), []byte(n)) {
			return true
		}
	}
	return false
}

// tracePacketConn traces what the UA writes to its UDP socket.
type tracePacketConn struct {
	net.PacketConn
	t *tracer
}

func (c *tracePacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.t.trace("send", "udp", c.PacketConn.LocalAddr(), addr, b[:n])
	}
	return n, err
}

// traceListener traces what the UA writes to the TCP or TLS connections
// trunks open to it.
type traceListener struct {
	net.Listener
	t         *tracer
	transport string
}

func (l *traceListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &traceConn{Conn: c, t: l.t, transport: l.transport}, nil
}

type traceConn struct {
	net.Conn
	t         *tracer
	transport string
}

func (c *traceConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.t.trace("send", c.transport, c.Conn.LocalAddr(), c.Conn.RemoteAddr(), b[:n])
	}
	return n, err
}

// tracedReadFilter is readFilter, tracing what it lets through.
func (u *UA) tracedReadFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	out, err := u.readFilter(props, data)
	if err == nil && len(out) > 0 && u.trace != nil {
		u.trace.trace("recv", strings.ToLower(props.Transport), props.LocalAddr, props.RemoteAddr, out)
	}
	return out, err
}

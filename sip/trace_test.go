package sip

import (
	"net"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestTraceTextMasksCredentialsAndCuts(t *testing.T) {
	msg := "INVITE sip:agents@pbx SIP/2.0\r\n" +
		"Call-ID: abc@host\r\n" +
		"Authorization: Digest username=\"gw\", realm=\"r\", nonce=\"n\", response=\"0123456789abcdef\"\r\n" +
		"proxy-authorization:Digest username=\"gw\",response=\"fedcba\"\r\n" +
		"Content-Length: 0\r\n\r\n"
	text, start, callID := traceText([]byte(msg))
	if start != "INVITE sip:agents@pbx SIP/2.0" || callID != "abc@host" {
		t.Errorf("start %q call id %q", start, callID)
	}
	if strings.Contains(text, "0123456789abcdef") || strings.Contains(text, "fedcba") || strings.Contains(text, "username") {
		t.Errorf("credentials in the trace:\n%s", text)
	}
	if !strings.Contains(text, "Authorization: Digest <masked>\r\n") || !strings.Contains(text, "proxy-authorization: Digest <masked>\r\n") {
		t.Errorf("not masked as expected:\n%s", text)
	}
	// A TCP read that begins inside the header.
	text, _, _ = traceText([]byte(" nonce=\"n\", response=\"0123456789abcdef\"\r\nContent-Length: 0\r\n\r\n"))
	if strings.Contains(text, "0123456789abcdef") {
		t.Errorf("split digest answer in the trace: %q", text)
	}
	// Compact Call-ID, and a long body cut at MaxTraceMessage.
	long := "MESSAGE sip:x SIP/2.0\r\ni: short@h\r\n\r\n" + strings.Repeat("é", 3000)
	text, _, callID = traceText([]byte(long))
	if callID != "short@h" || len(text) > MaxTraceMessage+32 || !strings.HasSuffix(text, "é…("+"6037 bytes)") {
		t.Errorf("call id %q, %d bytes, ends %q", callID, len(text), text[len(text)-20:])
	}
}

func TestTraceLinesCarryCallIDAtDebugOnly(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	tr := newTracer(zap.New(core))
	tr.ref("abc@host", "wacid.1")
	a := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
	tr.trace("send", "udp", a, a, []byte("BYE sip:x SIP/2.0\r\nCall-ID: abc@host\r\n\r\n"))
	tr.unref("abc@host")
	tr.trace("recv", "udp", a, a, []byte("SIP/2.0 200 OK\r\nCall-ID: abc@host\r\n\r\n"))
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d lines", len(all))
	}
	f0, f1 := all[0].ContextMap(), all[1].ContextMap()
	if f0["call_id"] != "wacid.1" || f0["sip_call_id"] != "abc@host" || f0["dir"] != "send" || all[0].LoggerName != "trace" {
		t.Errorf("first line %v %v", all[0].LoggerName, f0)
	}
	if _, ok := f1["call_id"]; ok || f1["sip_call_id"] != "abc@host" {
		t.Errorf("second line %v", f1)
	}
	core, logs = observer.New(zapcore.InfoLevel)
	newTracer(zap.New(core)).trace("send", "udp", a, a, []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	if logs.Len() != 0 {
		t.Error("trace line above debug")
	}
	var nilTracer *tracer
	nilTracer.trace("send", "udp", a, a, []byte("x")) // a UA without trace
	nilTracer.ref("a", "b")
	nilTracer.unrefLater("a")
}

package sip

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestGarbageCannotFloodTheLog: a 60 KB garbage datagram and 1000 small
// ones sent to the SIP port make a few short debug lines, not one line per
// datagram nor a copy of the datagram; the count of those suppressed is
// logged with the next line of the kind.
func TestGarbageCannotFloodTheLog(t *testing.T) {
	checkLeaks(t)
	core, logs := observer.New(zapcore.DebugLevel)
	ua, err := NewUA(UAConfig{ListenAddr: "127.0.0.1:0", RTPAddress: "127.0.0.1", RequestRate: -1, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ua.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	dst, _ := net.ResolveUDPAddr("udp4", ua.Addr())
	peer := udpPeer(t)
	big := bytes.Repeat([]byte("garbage "), 60*1024/8)
	if _, err := peer.WriteToUDP(big, dst); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		peer.WriteToUDP([]byte("NOT SIP AT ALL\r\n\r\nxxxxxxxxxx"), dst)
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // let the reader keep up: the socket buffer is not under test
		}
	}
	time.Sleep(1200 * time.Millisecond) // the window passes
	peer.WriteToUDP([]byte("NOT SIP AT ALL\r\n\r\nxxxxxxxxxx"), dst)
	waitFor(t, 2*time.Second, func() bool { return suppressedTotal(logs) > 0 })

	entries := logs.All()
	total := 0
	for _, e := range entries {
		if e.LoggerName == "" && e.Level > zapcore.DebugLevel && isParseNoise(e.Message) {
			t.Errorf("parse noise at %s: %q", e.Level, e.Message)
		}
		n := len(e.Message)
		for _, f := range e.Context {
			n += len(f.Key) + len(f.String)
			if len(f.String) > maxLogValue+32 {
				t.Errorf("field %s of %q is %d bytes", f.Key, e.Message, len(f.String))
			}
		}
		total += n
	}
	if len(entries) > 40 || total > 16*1024 {
		t.Errorf("%d log lines, %d bytes for 1002 garbage datagrams", len(entries), total)
	}
	if s := suppressedTotal(logs); s < 500 {
		t.Errorf("suppressed count %d, want most of the 1000 lines not written", s)
	}
}

func suppressedTotal(logs *observer.ObservedLogs) uint64 {
	var s uint64
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if f.Key == "suppressed" {
				s += uint64(f.Integer)
			}
		}
	}
	return s
}

func TestTruncate(t *testing.T) {
	if got := truncate("short"); got != "short" {
		t.Errorf("truncate(short) = %q", got)
	}
	long := string(bytes.Repeat([]byte("é"), 300)) // 600 bytes, 2-byte runes
	got := truncate(long)
	if len(got) > maxLogValue+20 || !bytes.HasSuffix([]byte(got), []byte("…(600 bytes)")) {
		t.Errorf("truncate: %d bytes %q", len(got), got[len(got)-20:])
	}
}

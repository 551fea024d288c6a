package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// baresipCtrl speaks baresip's ctrl_tcp protocol: JSON objects framed as
// netstrings ("len:json,"), events from baresip and commands to it.
type baresipCtrl struct {
	conn   net.Conn
	mu     sync.Mutex
	digits []byte
	events []string
}

func (b *baresip) control(t *testing.T) *baresipCtrl {
	t.Helper()
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if conn, err = net.DialTimeout("tcp", b.CtrlAddr, time.Second); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("baresip ctrl_tcp: %v", err)
	}
	c := &baresipCtrl{conn: conn}
	t.Cleanup(func() { conn.Close() })
	go c.read()
	return c
}

func (c *baresipCtrl) read() {
	r := bufio.NewReader(c.conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(lenStr[:len(lenStr)-1])
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		buf := make([]byte, n+1) // the payload and its trailing comma
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		var ev struct {
			Event bool   `json:"event"`
			Type  string `json:"type"`
			Param string `json:"param"`
		}
		if json.Unmarshal(buf[:n], &ev) != nil || !ev.Event {
			continue
		}
		c.mu.Lock()
		c.events = append(c.events, ev.Type)
		// One CALL_DTMF_START per digit received (RFC 4733 or SIP INFO).
		if ev.Type == "CALL_DTMF_START" && len(ev.Param) > 0 {
			c.digits = append(c.digits, ev.Param[0])
		}
		c.mu.Unlock()
	}
}

// send runs a baresip command, e.g. sndcode to press a key in the call.
func (c *baresipCtrl) send(command, params string) error {
	js, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": "t"})
	_, err := fmt.Fprintf(c.conn, "%d:%s,", len(js), js)
	return err
}

func (c *baresipCtrl) heardDigits() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.digits)
}

func (c *baresipCtrl) waitEvent(t *testing.T, typ string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c.mu.Lock()
		for _, e := range c.events {
			if e == typ {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
	}
	t.Fatalf("baresip sent no %s event within %v", typ, within)
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// bicOffer is a business's offer in the shape of a WebRTC stack's: the
// simulator answers it; nothing connects (the test's business has no media).
const bicOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0\r\n" +
	"a=msid-semantic: WMS biz\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n" +
	"a=ice-ufrag:bizU\r\n" +
	"a=ice-pwd:bizpasswordbizpassword00\r\n" +
	"a=fingerprint:sha-256 9F:45:2C:A8:C3:C0:CC:9B:59:4F:D1:02:56:52:FA:36:00:BE:C0:79:87:B3:D9:9C:3E:BF:60:98:25:B4:26:FC\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=sendrecv\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=ssrc:2430753100 cname:biz\r\n"

// hookRecorder is a gateway's webhook endpoint that takes everything and
// keeps each webhook's kind (event or status) in order.
type hookRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	kinds []string
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Entry []struct {
				Changes []struct {
					Value struct {
						Calls    []struct{ Event string }
						Statuses []struct{ Status string }
					}
				}
			}
		}
		raw, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Hub-Signature-256") != wasim.Sign(secretValue, raw) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.Unmarshal(raw, &env)
		h.mu.Lock()
		for _, e := range env.Entry {
			for _, c := range e.Changes {
				for _, x := range c.Value.Calls {
					h.kinds = append(h.kinds, x.Event)
				}
				for _, x := range c.Value.Statuses {
					h.kinds = append(h.kinds, "status:"+x.Status)
				}
			}
		}
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// graph posts body to the simulator's Graph API at addr, retrying until it
// listens.
func graph(t *testing.T, addr, endpoint string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v23.0/1000000001/"+endpoint, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+tokenValue)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("graph api at %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBICUsage(t *testing.T) {
	if code, _, e := runCmd(t, env, "bic", "-h"); code != exitOK || !strings.Contains(e, "wasim bic [flags]") || !strings.Contains(e, "-webhook-order") {
		t.Errorf("bic -h: %d %q", code, e)
	}
	if code, _, e := runCmd(t, env, "bic"); code != exitUsage || !strings.Contains(e, "-webhook is required") {
		t.Errorf("bic without webhook: %d %q", code, e)
	}
	for _, bad := range [][]string{{"-permission", "maybe"}, {"-answer", "later"}, {"-dtls-role", "actpass"}, {"-wait", "0"}, {"-to", "", "-user-id", ""}} {
		args := append([]string{"user", "-webhook", "http://127.0.0.1:1/w", "-graph-listen", "127.0.0.1:0"}, bad...)
		if code, _, e := runCmd(t, env, args...); code != exitUsage {
			t.Errorf("%v: exit %d %q", bad, code, e)
		}
	}
}

// The gateway calls a user who declines: RINGING, REJECTED, terminate, and
// the command passes (the call went as the user's answer says).
func TestBICDeclined(t *testing.T) {
	hooks := newHookRecorder(t)
	port, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run([]string{"bic", "-webhook", hooks.URL, "-graph-listen", addr, "-to", "15551234567",
			"-answer", "reject", "-ringing-after", "0", "-answer-after", "200ms", "-wait", "20s"}, env, &out, &errb, make(chan os.Signal))
		done <- result{code, out.String(), errb.String()}
	}()
	code, body := graph(t, addr, "calls", map[string]any{"messaging_product": "whatsapp", "to": "15551234567", "action": "connect",
		"session": map[string]any{"sdp_type": "offer", "sdp": bicOffer}})
	if code != 200 || !strings.Contains(body, `"calls":[{"id":"wacid.`) {
		t.Fatalf("connect: HTTP %d %s", code, body)
	}
	select {
	case r := <-done:
		if r.code != exitOK || !strings.Contains(r.out, "rejected_by_user") || !strings.Contains(r.out, "webhooks:       connect, status:RINGING, status:REJECTED, terminate") {
			t.Errorf("exit %d\n%s%s", r.code, r.out, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("wasim bic did not end")
	}
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	if got := strings.Join(hooks.kinds, ","); got != "connect,status:RINGING,status:REJECTED,terminate" {
		t.Errorf("webhooks %s", got)
	}
}

// No call within -wait fails, and says what the gateway did.
func TestBICNoCall(t *testing.T) {
	hooks := newHookRecorder(t)
	code, _, e := runCmd(t, env, "bic", "-webhook", hooks.URL, "-graph-listen", "127.0.0.1:0", "-wait", "300ms", "-permission", "none")
	if code != exitFailed || !strings.Contains(e, "no call to 15551234567") || !strings.Contains(e, "0 permission check(s)") {
		t.Errorf("exit %d %q", code, e)
	}
}

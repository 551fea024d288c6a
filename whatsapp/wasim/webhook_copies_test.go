package wasim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// arrival is one webhook request as the receiver saw it.
type arrival struct {
	body      string
	event, id string // calls[0]'s, when it has one
	at        time.Time
	sigOK     bool
}

// copyReceiver is a webhook receiver on 127.0.0.1 that keeps every
// request, holds each for hold, and answers what answer says (200 when
// nil) or 401 to a bad signature.
type copyReceiver struct {
	*httptest.Server
	hold   time.Duration
	answer func(n int) int // the n-th request (from 0) → status
	block  chan struct{}   // when set, every request after the first waits for it to close

	mu                    sync.Mutex
	arrivals              []arrival
	inFlight, maxInFlight int
}

func newCopyReceiver(t *testing.T, setup func(*copyReceiver)) *copyReceiver {
	t.Helper()
	r := &copyReceiver{}
	if setup != nil {
		setup(r)
	}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	if !strings.HasPrefix(r.URL, "http://127.0.0.1:") {
		t.Fatalf("receiver not on 127.0.0.1: %s", r.URL)
	}
	return r
}

func (r *copyReceiver) serve(w http.ResponseWriter, req *http.Request) {
	raw, _ := io.ReadAll(req.Body)
	a := arrival{body: string(raw), at: time.Now(), sigOK: req.Header.Get("X-Hub-Signature-256") == Sign(testSecret, raw)}
	var env struct {
		Entry []struct {
			Changes []struct {
				Value struct {
					Calls []struct{ ID, Event string }
				}
			}
		}
	}
	if json.Unmarshal(raw, &env) == nil && len(env.Entry) == 1 && len(env.Entry[0].Changes) == 1 && len(env.Entry[0].Changes[0].Value.Calls) == 1 {
		c := env.Entry[0].Changes[0].Value.Calls[0]
		a.event, a.id = c.Event, c.ID
	}
	r.mu.Lock()
	n := len(r.arrivals)
	r.arrivals = append(r.arrivals, a)
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	if r.hold > 0 {
		time.Sleep(r.hold)
	}
	if r.block != nil && n > 0 {
		<-r.block
	}
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(n)
	}
	if !a.sigOK {
		status = http.StatusUnauthorized
	}
	w.WriteHeader(status)
}

func (r *copyReceiver) all() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.arrivals...)
}

func (r *copyReceiver) maxConcurrent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxInFlight
}

// waitArrivals waits until the receiver has seen n requests.
func (r *copyReceiver) waitArrivals(t *testing.T, n int, within time.Duration) []arrival {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := r.all()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d webhook requests within %s, want %d", len(got), within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newCopySim starts a simulator posting to r.
func newCopySim(t *testing.T, r *copyReceiver, mod func(*Config)) *Sim {
	t.Helper()
	return newTestSim(t, &hookServer{Server: r.Server}, mod)
}

// fastWebhookRetries shortens the waits between a webhook's attempts (no
// test of the package runs in parallel).
func fastWebhookRetries(t *testing.T) {
	old := webhookBackoff
	webhookBackoff = []time.Duration{time.Millisecond}
	t.Cleanup(func() { webhookBackoff = old })
}

// byEvent counts the arrivals of each event of call id, and checks them
// signed and, for one event, identical.
func byEvent(t *testing.T, as []arrival, id string) map[string]int {
	t.Helper()
	n := map[string]int{}
	body := map[string]string{}
	for _, a := range as {
		if a.id != id {
			continue
		}
		if !a.sigOK {
			t.Errorf("%s copy not signed with the app secret", a.event)
		}
		if b, ok := body[a.event]; ok && b != a.body {
			t.Errorf("two copies of the %s webhook differ:\n%s\n%s", a.event, b, a.body)
		}
		body[a.event] = a.body
		n[a.event]++
	}
	return n
}

// WebhookCopies without shuffle: every webhook of a call arrives that many
// times, one copy after the other, in the call's order; the report lists
// each webhook once.
func TestWebhookCopiesSequential(t *testing.T) {
	r := newCopyReceiver(t, nil)
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 3 })
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.waitArrivals(t, 3, 5*time.Second)
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	rep := waitReport(t, call, 5*time.Second)
	as := r.waitArrivals(t, 6, 5*time.Second)
	if n := byEvent(t, as, call.ID()); n["connect"] != 3 || n["terminate"] != 3 || len(as) != 6 {
		t.Errorf("webhooks %v (%d requests), want 3 connect and 3 terminate", n, len(as))
	}
	var order []string
	for _, a := range as {
		order = append(order, a.event)
	}
	if got := strings.Join(order, ","); got != "connect,connect,connect,terminate,terminate,terminate" {
		t.Errorf("order %s", got)
	}
	if m := r.maxConcurrent(); m != 1 {
		t.Errorf("%d copies at once without shuffle, want 1", m)
	}
	if strings.Join(rep.WebhooksSent, ",") != "connect,terminate" || len(rep.WebhookFailures) != 0 || rep.Outcome != OutcomeCancelledByUser {
		t.Errorf("report:\n%s", rep)
	}
}

// With WebhookShuffle the copies are posted concurrently, each within the
// 0–50 ms delay window.
func TestWebhookCopiesShuffled(t *testing.T) {
	r := newCopyReceiver(t, func(r *copyReceiver) { r.hold = 150 * time.Millisecond })
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 3; c.WebhookShuffle = true })
	call, err := sim.PlaceCall(context.Background(), CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	connects := r.waitArrivals(t, 3, 5*time.Second)[:3]
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	rep := waitReport(t, call, 5*time.Second)
	as := r.waitArrivals(t, 6, 5*time.Second)
	if n := byEvent(t, as, call.ID()); n["connect"] != 3 || n["terminate"] != 3 {
		t.Errorf("webhooks %v, want 3 connect and 3 terminate", n)
	}
	// Each copy is held 150 ms and they all start within 50 ms of each
	// other (with slack for a loaded machine): they overlap.
	if m := r.maxConcurrent(); m < 2 {
		t.Errorf("at most %d copy at a time with shuffle, want them concurrent", m)
	}
	first, last := connects[0].at, connects[0].at
	for _, a := range connects {
		if a.event != "connect" {
			t.Fatalf("arrival %s before the 3 connects", a.event)
		}
		if a.at.Before(first) {
			first = a.at
		}
		if a.at.After(last) {
			last = a.at
		}
	}
	if spread := last.Sub(first); spread > webhookShuffleDelay+200*time.Millisecond {
		t.Errorf("connect copies spread over %s, want them within the delay window", spread)
	}
	if len(rep.WebhookFailures) != 0 || strings.Join(rep.WebhooksSent, ",") != "connect,terminate" {
		t.Errorf("report:\n%s", rep)
	}
}

// Webhooks posted close together under WebhookShuffle arrive in mixed
// order: the copies of two webhooks interleave.
func TestWebhookShuffleInterleaves(t *testing.T) {
	r := newCopyReceiver(t, nil)
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 4; c.WebhookShuffle = true })
	for round := 0; round < 20; round++ {
		before := len(r.all())
		var wg sync.WaitGroup
		for _, b := range []string{"A", "B"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sim.postWebhook(sim.ctx, "test", testSecret, []byte(b), webhookAttempts); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		as := r.waitArrivals(t, before+8, 5*time.Second)[before:]
		var order string
		for _, a := range as {
			order += a.body
		}
		if strings.Count(order, "A") != 4 || strings.Count(order, "B") != 4 {
			t.Fatalf("arrivals %s, want 4 of each", order)
		}
		if order != "AAAABBBB" && order != "BBBBAAAA" {
			t.Logf("round %d: %s", round, order)
			return
		}
	}
	t.Error("20 rounds of two webhooks of 4 shuffled copies each, never interleaved")
}

// A webhook is delivered when any copy was answered 200; when none was,
// each copy's failure is reported.
func TestWebhookCopiesAnyDelivered(t *testing.T) {
	fastWebhookRetries(t)
	var mu sync.Mutex
	failFirst := webhookAttempts // the first copy's every attempt fails
	r := newCopyReceiver(t, func(r *copyReceiver) {
		r.answer = func(n int) int {
			mu.Lock()
			defer mu.Unlock()
			if n < failFirst {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		}
	})
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 2 })
	if err := sim.postWebhook(sim.ctx, "test", testSecret, []byte("x"), webhookAttempts); err != nil {
		t.Errorf("first copy failed, second delivered: %v", err)
	}
	if n := len(r.all()); n != webhookAttempts+1 {
		t.Errorf("%d requests, want %d", n, webhookAttempts+1)
	}
	mu.Lock()
	failFirst = 1 << 30
	mu.Unlock()
	err := sim.postWebhook(sim.ctx, "test", testSecret, []byte("y"), webhookAttempts)
	lines := webhookFailures(err)
	if err == nil || len(lines) != 2 || !strings.Contains(lines[0], "test (copy 1 of 2) webhook answered HTTP 503 after 3 attempt(s)") ||
		!strings.Contains(lines[1], "test (copy 2 of 2) webhook answered HTTP 503") {
		t.Errorf("no copy delivered: %v, lines %q", err, lines)
	}
}

// A call whose webhooks no copy delivers is reported with every copy's
// failure (here with shuffle: the copies run concurrently).
func TestWebhookCopiesAllRefused(t *testing.T) {
	fastWebhookRetries(t)
	r := newCopyReceiver(t, nil)
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 2; c.WebhookShuffle = true })
	call, err := sim.PlaceCall(context.Background(), CallOptions{WebhookSecret: "not-the-app-secret"})
	if err != nil {
		t.Fatal(err)
	}
	rep := waitReport(t, call, 5*time.Second)
	if rep.Outcome != OutcomeWebhookRejected || len(rep.WebhookFailures) != 2 {
		t.Fatalf("report:\n%s", rep)
	}
	for i, f := range rep.WebhookFailures {
		if !strings.Contains(f, "answered HTTP 401 after 3 attempt(s)") || !strings.Contains(f, "connect (copy ") {
			t.Errorf("failure %d: %s", i, f)
		}
	}
	if n := len(r.all()); n != 2*webhookAttempts {
		t.Errorf("%d requests, want %d", n, 2*webhookAttempts)
	}
}

// Under shuffle a webhook is done at its first copy answered 200: the
// others carry on; Close lets them finish within a grace period, then
// cancels them and waits.
func TestWebhookShuffleDoneAtFirstCopy(t *testing.T) {
	old := webhookCopiesGrace
	webhookCopiesGrace = 100 * time.Millisecond
	t.Cleanup(func() { webhookCopiesGrace = old })
	block := make(chan struct{})
	r := newCopyReceiver(t, func(r *copyReceiver) { r.block = block })
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 2; c.WebhookShuffle = true })
	done := make(chan error, 1)
	defer close(block)
	go func() { done <- sim.postWebhook(sim.ctx, "test", testSecret, []byte("x"), webhookAttempts) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("postWebhook waits for the held copy")
	}
	r.waitArrivals(t, 2, 5*time.Second) // the second copy is held
	closed := make(chan struct{})
	go func() { _ = sim.Close(); close(closed) }()
	select {
	case <-closed: // after the grace, Close cancelled the held copy's request and waited for it
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the copy still being posted")
	}
	// A copy that ends within the grace period is posted in full.
	r2 := newCopyReceiver(t, func(r *copyReceiver) { r.hold = 30 * time.Millisecond })
	sim2 := newCopySim(t, r2, func(c *Config) { c.WebhookCopies = 3; c.WebhookShuffle = true })
	if err := sim2.postWebhook(sim2.ctx, "test", testSecret, []byte("y"), webhookAttempts); err != nil {
		t.Fatal(err)
	}
	webhookCopiesGrace = 5 * time.Second
	_ = sim2.Close()
	if n := len(r2.all()); n != 3 {
		t.Errorf("%d copies posted before Close returned, want 3", n)
	}
}

// Every kind of webhook goes through the copies: an account webhook too.
func TestWebhookCopiesAccountEvent(t *testing.T) {
	r := newCopyReceiver(t, nil)
	sim := newCopySim(t, r, func(c *Config) { c.WebhookCopies = 2 })
	if err := sim.SendAccountUpdate(testPhoneID, AccountViolation, "USER_INITIATED_CALLS_LOW_PICKUP_RATE", time.Time{}); err != nil {
		t.Fatal(err)
	}
	as := r.waitArrivals(t, 2, 5*time.Second)
	if len(as) != 2 || as[0].body != as[1].body || !as[0].sigOK || !strings.Contains(as[0].body, "account_update") {
		t.Errorf("arrivals %s", fmt.Sprint(as))
	}
}

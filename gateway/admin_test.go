package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/wagateway/wagateway/internal/ratelog"
)

// A flood of bad admin tokens makes one warning per authLogEvery, which
// counts the refusals it did not log; the metric counts every one.
func TestAdminAuthFailuresLogRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := LoopbackConfig(LoopbackOptions{HTTPPort: 1, UDPPort: 1, GraphURL: "http://127.0.0.1:1",
		PBXAddr: "127.0.0.1:5060", PhoneNumberID: "1"})
	g, err := New(cfg, &Secrets{TrunkPasswords: map[string]string{}, AdminToken: "right-token"}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	g.ops.authLog = ratelog.New(authLogEvery, clock)
	served := 0
	h := g.adminAuth(func(w http.ResponseWriter, _ *http.Request) { served++ })
	try := func(token string) int {
		req := httptest.NewRequest("GET", "/admin/calls", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	refused := func() []observer.LoggedEntry {
		return logs.FilterMessageSnippet("admin request refused").AllUntimed()
	}

	var wg sync.WaitGroup // concurrent refusals: the limiter is shared
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			token := "wrong"
			if i%2 == 0 {
				token = ""
			}
			if code := try(token); code != http.StatusUnauthorized {
				t.Errorf("bad token: HTTP %d", code)
			}
		}(i)
	}
	wg.Wait()
	if n := len(refused()); n != 1 {
		t.Fatalf("%d warnings for 50 refusals within %v, want 1", n, authLogEvery)
	}
	advance(authLogEvery / 2)
	try("wrong")
	if n := len(refused()); n != 1 {
		t.Fatalf("%d warnings before the period passed, want 1", n)
	}
	advance(authLogEvery)
	try("")
	lines := refused()
	if len(lines) != 2 {
		t.Fatalf("%d warnings after the period, want 2", len(lines))
	}
	if got := lines[1].ContextMap()["suppressed_since_last"]; got != int64(50) {
		t.Errorf("second warning counts %v suppressed, want 50: %v", got, lines[1].ContextMap())
	}
	if code := try("right-token"); code != 200 || served != 1 {
		t.Errorf("right token: HTTP %d, served %d", code, served)
	}
	var mv dto.Metric
	if err := g.ops.metrics.adminRequests.WithLabelValues("unauthorized").Write(&mv); err != nil {
		t.Fatal(err)
	}
	if n := mv.GetCounter().GetValue(); n != 52 {
		t.Errorf("unauthorized counter %v, want 52", n)
	}
	for _, e := range logs.AllUntimed() {
		if strings.Contains(e.Message+fmt.Sprint(e.ContextMap()), "right-token") {
			t.Errorf("the token was logged: %v", e)
		}
	}
}

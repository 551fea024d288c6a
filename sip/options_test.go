package sip

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOptionsDigestAuth: sipp challenges the OPTIONS ping with 401 and
// checks the retry (CSeq 2, same Call-ID and From tag, an Authorization
// header for the trunk's user with a digest of its password) before
// answering 200; the result is the retry's 200, credentials accepted.
func TestOptionsDigestAuth(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_options_auth.xml", "u1")
	tr := sippTrunk(p, "udp")
	tr.Username, tr.Password = "gw", "s3cret"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ua.Options(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 200 || res.Auth != OptionsAuthAccepted {
		t.Errorf("result %+v, want 200 with credentials accepted", res)
	}
	p.wait(t, 10*time.Second)
}

// TestOptionsDigestAuthWrongPasswordFailsScenario shows the scenario above
// really checks the digest: with a wrong password sipp does not answer the
// retry and fails.
func TestOptionsDigestAuthWrongPasswordFailsScenario(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_options_auth.xml", "u1")
	tr := sippTrunk(p, "udp")
	tr.Username, tr.Password = "gw", "not-s3cret"
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if res, err := ua.Options(ctx, tr); err == nil {
		t.Errorf("result %+v, want no answer to a retry with a wrong digest", res)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("sipp still running")
	}
	if p.err == nil {
		t.Error("sipp passed the scenario with a wrong password")
	}
}

// TestOptionsDigestAuthRefused: sipp challenges the retry again (wrong
// credentials); the UA retries once only (a third OPTIONS fails the
// scenario) and says the credentials were refused.
func TestOptionsDigestAuthRefused(t *testing.T) {
	checkLeaks(t)
	ua := newTestUA(t, "udp")
	p := startSipp(t, "uas_options_auth_reject.xml", "u1")
	tr := sippTrunk(p, "udp")
	tr.Username, tr.Password = "gw", "wrong-pass"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ua.Options(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 401 || res.Auth != OptionsAuthRefused {
		t.Errorf("result %+v, want 401 with credentials refused", res)
	}
	p.wait(t, 10*time.Second)
}

// TestOptionsChallengeNotAnswered: a 407 to a trunk without credentials is
// returned as such (no retry); with credentials but no Proxy-Authenticate
// to answer, it is returned as unanswerable (no retry either). sipp fails
// the scenario on a retry or on credentials in the first OPTIONS.
func TestOptionsChallengeNotAnswered(t *testing.T) {
	for _, tc := range []struct {
		name, user, pass string
		want             OptionsAuth
	}{
		{"no credentials", "", "", OptionsAuthNoCredentials},
		{"no challenge header", "gw", "s3cret", OptionsAuthUnanswerable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			ua := newTestUA(t, "udp")
			p := startSipp(t, "uas_options_challenge.xml", "u1")
			tr := sippTrunk(p, "udp")
			tr.Username, tr.Password = tc.user, tc.pass
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := ua.Options(ctx, tr)
			if err != nil {
				t.Fatal(err)
			}
			if res.Code != 407 || res.Auth != tc.want {
				t.Errorf("result %+v, want 407 %q", res, tc.want)
			}
			if tc.want == OptionsAuthUnanswerable && res.Detail == "" {
				t.Error("no detail for an unanswerable challenge")
			}
			if tc.pass != "" && strings.Contains(res.Detail, tc.pass) {
				t.Errorf("detail holds the password: %q", res.Detail)
			}
			p.wait(t, 10*time.Second)
		})
	}
}

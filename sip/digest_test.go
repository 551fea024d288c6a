package sip

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The examples of RFC 2617 §3.5 (MD5, qop=auth) and RFC 7616 §3.9.1
// (SHA-256 and MD5, qop=auth).
func TestDigestResponseRFCVectors(t *testing.T) {
	for _, tc := range []struct {
		name, header, method, password, want string
	}{
		{
			"RFC 2617 MD5",
			`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			"GET", "Circle Of Life", "6629fae49393a05397450978507c4ef1",
		},
		{
			"RFC 7616 SHA-256",
			`Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
			"GET", "Circle of Life", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
		},
		{
			"RFC 7616 MD5",
			`Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="8ca523f5e9506fed4657c9700eebdbec", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
			"GET", "Circle of Life", "8ca523f5e9506fed4657c9700eebdbec",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := parseDigestParams(tc.header)
			if !ok {
				t.Fatal("not parsed")
			}
			got, why := digestResponse(p, tc.method, tc.password)
			if why != "" || got != tc.want {
				t.Errorf("response %q (%s), want %q", got, why, tc.want)
			}
			if got, _ := digestResponse(p, tc.method, "wrong"); got == tc.want {
				t.Error("a wrong password gives the same response")
			}
		})
	}
}

func TestParseDigestParams(t *testing.T) {
	p, ok := parseDigestParams(`  digest  username="a \"q\" b",realm="r, with comma" ,nonce=abc,  uri="sip:x@y", qop=auth ,nc=00000001 `)
	if !ok {
		t.Fatal("not parsed")
	}
	want := map[string]string{"username": `a "q" b`, "realm": "r, with comma", "nonce": "abc", "uri": "sip:x@y", "qop": "auth", "nc": "00000001"}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", p, want)
	}
	for _, bad := range []string{
		``, `Digest`, `Basic dXNlcjpwYXNz`, `Digest username="unterminated`, `Digest =x`, `Digest a=1 b=2`,
		`Digest a=1, a=2`, `Digest a=`, `Digest a b=1`, "Digest " + strings.Repeat("k=v,", 17),
		"Digest u=\"" + strings.Repeat("x", maxAuthHeader) + "\"",
	} {
		if p, ok := parseDigestParams(bad); ok {
			t.Errorf("%.40q parsed: %v", bad, p)
		}
	}
}

// md5Authorization computes the Authorization a client sends for a 401.
func md5Authorization(user, realm, password, nonce, method, uri, qop string) string {
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1, ha2 := h(user+":"+realm+":"+password), h(method+":"+uri)
	if qop == "" {
		return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5`,
			user, realm, nonce, uri, h(ha1+":"+nonce+":"+ha2))
	}
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
		user, realm, nonce, uri, h(ha1+":"+nonce+":00000001:c0ffee:auth:"+ha2))
}

// authFor is md5Authorization for the nonce given later.
func authFor(user, realm, password, method, uri, qop string) func(string) string {
	return func(n string) string { return md5Authorization(user, realm, password, n, method, uri, qop) }
}

func authInvite(t *testing.T, ruri string, auth ...string) *sip.Request {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(ruri, &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.INVITE, u)
	for _, a := range auth {
		req.AppendHeader(sip.NewHeader("Authorization", a))
	}
	return req
}

// nonceOf is the nonce of a 401's first WWW-Authenticate.
func nonceOf(t *testing.T, res *sip.Response) (string, map[string]string) {
	t.Helper()
	h := res.GetHeader("WWW-Authenticate")
	if h == nil {
		t.Fatal("401 without WWW-Authenticate")
	}
	p, ok := parseDigestParams(h.Value())
	if !ok {
		t.Fatalf("challenge %q not parsed", h.Value())
	}
	return p["nonce"], p
}

func TestDigestAuthCheck(t *testing.T) {
	tr := &Trunk{Name: "pbx", Username: "gw", Password: "s3cret"}
	other := &Trunk{Name: "other", Username: "gw", Password: "s3cret"}
	a := newDigestAuth("wagateway", false)
	now := time.Unix(1_700_000_000, 0)
	const ruri = "sip:+14085551234@10.0.0.1:5060"
	challenge := func() string {
		res := a.challenge(authInvite(t, ruri), tr.Name, false, now)
		if res.StatusCode != 401 || len(res.GetHeaders("WWW-Authenticate")) != 1 {
			t.Fatalf("challenge: %d with %d headers", res.StatusCode, len(res.GetHeaders("WWW-Authenticate")))
		}
		n, p := nonceOf(t, res)
		if p["realm"] != "wagateway" || p["qop"] != "auth" || p["algorithm"] != "MD5" || p["stale"] != "" || len(n) != 32 {
			t.Fatalf("challenge params %v", p)
		}
		return n
	}

	if out, _ := a.check(authInvite(t, ruri), tr, now); out != authChallenge {
		t.Errorf("no Authorization: %d, want a challenge", out)
	}
	if out, _ := a.check(authInvite(t, ruri, md5Authorization("gw", "elsewhere", "s3cret", "n", "INVITE", ruri, "auth")), tr, now); out != authChallenge {
		t.Errorf("another realm's credentials: %d, want a challenge", out)
	}

	for _, tc := range []struct {
		name  string
		auth  func(nonce string) string
		trunk *Trunk
		after time.Duration
		want  authOutcome
	}{
		{"qop=auth", authFor("gw", "wagateway", "s3cret", "INVITE", ruri, "auth"), tr, time.Second, authOK},
		{"no qop (RFC 2069)", authFor("gw", "wagateway", "s3cret", "INVITE", ruri, ""), tr, 0, authOK},
		{"uri with default port", authFor("gw", "wagateway", "s3cret", "INVITE", "sip:+14085551234@10.0.0.1", "auth"), tr, 0, authOK},
		{"wrong password", authFor("gw", "wagateway", "nope", "INVITE", ruri, "auth"), tr, 0, authFailed},
		{"wrong username", authFor("admin", "wagateway", "s3cret", "INVITE", ruri, "auth"), tr, 0, authFailed},
		{"uri without user", authFor("gw", "wagateway", "s3cret", "INVITE", "sip:10.0.0.1:5060", "auth"), tr, 0, authOK},
		{"uri of another host", authFor("gw", "wagateway", "s3cret", "INVITE", "sip:+14085551234@10.0.0.2:5060", "auth"), tr, 0, authFailed},
		{"other uri", authFor("gw", "wagateway", "s3cret", "INVITE", "sip:+14085550000@10.0.0.1:5060", "auth"), tr, 0, authFailed},
		{"other method", authFor("gw", "wagateway", "s3cret", "REGISTER", ruri, "auth"), tr, 0, authFailed},
		{"expired nonce, right digest", authFor("gw", "wagateway", "s3cret", "INVITE", ruri, "auth"), tr, nonceLifetime + time.Second, authStale},
		{"expired nonce, wrong digest", authFor("gw", "wagateway", "nope", "INVITE", ruri, "auth"), tr, nonceLifetime + time.Second, authFailed},
		{"nonce of another trunk", authFor("gw", "wagateway", "s3cret", "INVITE", ruri, "auth"), other, 0, authStale},
		{"unsupported algorithm", func(n string) string {
			return strings.Replace(authFor("gw", "wagateway", "s3cret", "INVITE", ruri, "auth")(n), "algorithm=MD5", "algorithm=MD5-sess", 1)
		}, tr, 0, authFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := challenge()
			req := authInvite(t, ruri, tc.auth(n))
			out, why := a.check(req, tc.trunk, now.Add(tc.after))
			if out != tc.want {
				t.Fatalf("outcome %d (%s), want %d", out, why, tc.want)
			}
			if strings.Contains(why, "s3cret") {
				t.Errorf("why %q holds the password", why)
			}
			// The nonce is used up either way: the same Authorization again
			// is at best stale (a replay gets a fresh challenge).
			if out, _ := a.check(req, tc.trunk, now.Add(tc.after)); out == authOK {
				t.Error("the same Authorization accepted twice")
			}
		})
	}
	if n := a.outstanding(); n != 0 {
		t.Errorf("%d nonces left after every one was answered", n)
	}
}

func TestDigestChallengeSHA256AndStale(t *testing.T) {
	a := newDigestAuth("pbx.example", true)
	res := a.challenge(authInvite(t, "sip:1@h"), "t", true, time.Now())
	hs := res.GetHeaders("WWW-Authenticate")
	if len(hs) != 2 {
		t.Fatalf("%d WWW-Authenticate, want SHA-256 and MD5", len(hs))
	}
	for i, alg := range []string{"SHA-256", "MD5"} {
		p, ok := parseDigestParams(hs[i].Value())
		if !ok || p["algorithm"] != alg || p["stale"] != "true" || p["realm"] != "pbx.example" {
			t.Errorf("header %d: %q", i, hs[i].Value())
		}
	}
}

func TestNonceStoreBounded(t *testing.T) {
	a := newDigestAuth("r", false)
	a.max = 8
	now := time.Unix(1_700_000_000, 0)
	var first string
	for i := 0; i < 100; i++ {
		n := a.issue("t", now.Add(time.Duration(i)*time.Millisecond))
		if i == 0 {
			first = n
		}
		if a.outstanding() > a.max {
			t.Fatalf("%d nonces kept, max %d", a.outstanding(), a.max)
		}
	}
	if a.take(first, "t", now.Add(time.Second)) {
		t.Error("the oldest nonce survived eviction")
	}
	// Expired ones go first when room is needed.
	a = newDigestAuth("r", false)
	a.max = 4
	for i := 0; i < 4; i++ {
		a.issue("t", now)
	}
	later := now.Add(nonceLifetime + time.Second)
	fresh := a.issue("t", later)
	if a.outstanding() != 1 || !a.take(fresh, "t", later) {
		t.Errorf("expired nonces not swept: %d kept", a.outstanding())
	}
}

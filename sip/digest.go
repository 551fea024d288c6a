package sip

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Digest authentication of the INVITEs a trunk with credentials sends
// (RFC 3261 §22.4 with the digest of RFC 2617 §3.2, RFC 7616 §3.4 and, for
// SHA-256 in SIP, RFC 8760). The trunk's Username and Password are the ones
// the gateway also answers the PBX's challenges with.
//
// Nonces are random, bound to the trunk they were issued to, valid for
// nonceLifetime and used once: a verified INVITE consumes its nonce, so a
// replayed Authorization gets a new challenge (RFC 7616 §5.5). A nonce that
// is unknown or expired, with a digest otherwise right, gets a new challenge
// with stale=true (RFC 7616 §3.3: the client knows the password and may
// retry without asking anyone). The store holds at most maxNonces.

const (
	// nonceLifetime bounds the time between our 401 and the INVITE that
	// answers it (a PBX answers within milliseconds).
	nonceLifetime = 60 * time.Second
	// maxNonces bounds the nonces outstanding; beyond, the oldest go.
	maxNonces = 4096
	// maxAuthHeader bounds the Authorization value parsed.
	maxAuthHeader = 4096
	// maxAuthParams bounds the parameters of one Authorization value.
	maxAuthParams = 16
	// DefaultAuthRealm is the realm of our challenges (UAConfig.AuthRealm).
	DefaultAuthRealm = "wagateway"
)

// authOutcome is what to do with an INVITE from a trunk with credentials.
type authOutcome int

const (
	authOK        authOutcome = iota // verified: serve it
	authChallenge                    // no (usable) credentials for our realm: 401
	authStale                        // right digest, old or unknown nonce: 401 stale=true
	authFailed                       // wrong credentials: 403
)

// digestAuth issues challenges and verifies the answers.
type digestAuth struct {
	realm  string
	sha256 bool // offer SHA-256 before MD5 (RFC 8760 §2.4: in order of preference)

	mu     sync.Mutex
	nonces map[string]nonceEntry
	max    int
	life   time.Duration
}

type nonceEntry struct {
	issued time.Time
	trunk  string
}

func newDigestAuth(realm string, sha bool) *digestAuth {
	return &digestAuth{realm: realm, sha256: sha, nonces: map[string]nonceEntry{}, max: maxNonces, life: nonceLifetime}
}

// issue makes a nonce for trunk and keeps it, making room if the store is
// full: expired nonces go first, then the oldest.
func (a *digestAuth) issue(trunk string, now time.Time) string {
	n := randHex(16)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.nonces) >= a.max {
		var (
			oldest   string
			oldestAt time.Time
		)
		for k, e := range a.nonces {
			if now.Sub(e.issued) > a.life {
				delete(a.nonces, k)
				continue
			}
			if oldest == "" || e.issued.Before(oldestAt) {
				oldest, oldestAt = k, e.issued
			}
		}
		if len(a.nonces) >= a.max {
			delete(a.nonces, oldest)
		}
	}
	a.nonces[n] = nonceEntry{issued: now, trunk: trunk}
	return n
}

// take consumes a nonce and reports whether it was issued to trunk and is
// still fresh.
func (a *digestAuth) take(nonce, trunk string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.nonces[nonce]
	if ok {
		delete(a.nonces, nonce)
	}
	return ok && e.trunk == trunk && now.Sub(e.issued) <= a.life
}

// outstanding is the number of nonces kept.
func (a *digestAuth) outstanding() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.nonces)
}

// challenge is the 401 to req with a fresh nonce for trunk: one
// WWW-Authenticate per algorithm offered, preferred first (RFC 8760 §2.4),
// qop=auth (RFC 7616 §3.3), stale=true when the last nonce was out of date.
func (a *digestAuth) challenge(req *sip.Request, trunk string, stale bool, now time.Time) *sip.Response {
	nonce := a.issue(trunk, now)
	res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	algs := []string{"MD5"}
	if a.sha256 {
		algs = []string{"SHA-256", "MD5"}
	}
	for _, alg := range algs {
		v := `Digest realm="` + a.realm + `", nonce="` + nonce + `", algorithm=` + alg + `, qop="auth"`
		if stale {
			v += ", stale=true"
		}
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", v))
	}
	return res
}

// check verifies the Authorization of req against trunk t's credentials.
// why says what was wrong (for the log; never the password).
func (a *digestAuth) check(req *sip.Request, t *Trunk, now time.Time) (authOutcome, string) {
	var p map[string]string
	for _, h := range req.GetHeaders("Authorization") {
		if q, ok := parseDigestParams(h.Value()); ok && q["realm"] == a.realm {
			p = q
			break
		}
	}
	if p == nil {
		// None for our realm (RFC 3261 §22.4: credentials for other realms
		// are not ours to judge): challenge.
		return authChallenge, ""
	}
	nonce := p["nonce"]
	if nonce == "" {
		return authChallenge, ""
	}
	ok, why := verifyDigest(p, string(req.Method), req.Recipient, t.Username, t.Password, a.realm)
	if !ok {
		a.take(nonce, t.Name, now) // one try per nonce
		return authFailed, why
	}
	if !a.take(nonce, t.Name, now) {
		return authStale, ""
	}
	return authOK, ""
}

// verifyDigest checks a parsed Authorization (p) for method and the
// Request-URI ruri against username, password and realm: the username, the
// realm, the uri (RFC 2617 §3.2.2.5: the one the request went to) and the
// response (digestResponse), compared in constant time.
func verifyDigest(p map[string]string, method string, ruri sip.Uri, username, password, realm string) (bool, string) {
	if subtle.ConstantTimeCompare([]byte(p["username"]), []byte(username)) != 1 {
		return false, "unknown username"
	}
	if p["realm"] != realm {
		return false, "realm"
	}
	if !sameRequestURI(p["uri"], ruri) {
		return false, "uri is not the Request-URI"
	}
	want, why := digestResponse(p, method, password)
	if why != "" {
		return false, why
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(p["response"])), []byte(want)) != 1 {
		return false, "wrong response (password)"
	}
	return true, ""
}

// digestResponse is the response a client knowing password computes for
// the parameters p of its Authorization: algorithm MD5 (the default) or
// SHA-256, qop none (RFC 2069 style, RFC 2617 §3.2.2.1) or auth (RFC 7616
// §3.4.1), over p's username, realm, nonce, uri, nc and cnonce. why says
// what p lacks or what it asks that we did not offer.
func digestResponse(p map[string]string, method, password string) (string, string) {
	var newHash func() hash.Hash
	switch alg := p["algorithm"]; {
	case alg == "" || strings.EqualFold(alg, "MD5"):
		newHash = md5.New
	case strings.EqualFold(alg, "SHA-256"):
		newHash = sha256.New
	default:
		return "", "algorithm " + truncate(alg) + " not offered"
	}
	h := func(s string) string {
		x := newHash()
		x.Write([]byte(s))
		return hex.EncodeToString(x.Sum(nil))
	}
	ha1 := h(p["username"] + ":" + p["realm"] + ":" + password)
	ha2 := h(method + ":" + p["uri"])
	switch qop := p["qop"]; {
	case qop == "":
		return h(ha1 + ":" + p["nonce"] + ":" + ha2), ""
	case strings.EqualFold(qop, "auth"):
		nc, cnonce := p["nc"], p["cnonce"]
		if len(nc) != 8 || !isHex(nc) || cnonce == "" {
			return "", "qop=auth without nc or cnonce"
		}
		return h(ha1 + ":" + p["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + ha2), ""
	default:
		return "", "qop " + truncate(qop) + " not offered"
	}
}

// sameRequestURI reports whether an Authorization uri names the Request-URI
// (RFC 2617 §3.2.2.5): same scheme, host (case-insensitive) and port (the
// default one when absent), and the same user unless the uri has none.
// Some UACs (sipp among them) put the target's host:port only; with
// single-use nonces bound to the trunk that loses nothing worth keeping.
func sameRequestURI(s string, ruri sip.Uri) bool {
	var u sip.Uri
	if s == "" || sip.ParseUri(s, &u) != nil {
		return false
	}
	port := func(x sip.Uri) int {
		if x.Port != 0 {
			return x.Port
		}
		if x.Scheme == "sips" {
			return 5061
		}
		return 5060
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && (u.User == "" || u.User == ruri.User) &&
		strings.EqualFold(u.Host, ruri.Host) && port(u) == port(ruri)
}

// parseDigestParams reads a Digest credentials value (RFC 3261 §25.1
// credentials, RFC 7235 §2.1): "Digest" then comma-separated auth-params,
// token or quoted-string valued. Names are lowercased; a malformed value, a
// repeated name or too many give false.
func parseDigestParams(v string) (map[string]string, bool) {
	if len(v) > maxAuthHeader {
		return nil, false
	}
	v = strings.TrimSpace(v)
	i := strings.IndexAny(v, " \t")
	if i < 0 || !strings.EqualFold(v[:i], "Digest") {
		return nil, false
	}
	s := v[i:]
	p := make(map[string]string, 10)
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return p, true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, false
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		if !isToken(name) {
			return nil, false
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j, closed := 1, false
			for j < len(s) {
				c := s[j]
				if c == '\\' && j+1 < len(s) { // quoted-pair
					b.WriteByte(s[j+1])
					j += 2
					continue
				}
				j++
				if c == '"' {
					closed = true
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return nil, false
			}
			val, s = b.String(), s[j:]
		} else {
			j := strings.IndexAny(s, ", \t")
			if j < 0 {
				j = len(s)
			}
			val, s = s[:j], s[j:]
			if val == "" {
				return nil, false
			}
		}
		if _, dup := p[name]; dup || len(p) >= maxAuthParams {
			return nil, false
		}
		p[name] = val
		s = strings.TrimLeft(s, " \t")
		if s != "" && s[0] != ',' {
			return nil, false
		}
	}
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// Package testpeer finds the real programs the tests run as peers (sipp,
// baresip, redis-server, haproxy, …). A missing one skips the test on a
// laptop and fails it under CI (CI=true), where `make test` installs every
// peer. Test tooling only: production code does not import it.
package testpeer

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of program name: found in PATH, in /usr/sbin
// (where Debian puts some, haproxy among them, outside a user's PATH) or
// at one of also. pkg is the Debian package that installs it.
func Require(t testing.TB, name, pkg string, also ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range append([]string{"/usr/sbin/" + name}, also...) {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, name+" not installed (Debian package "+pkg+")")
	return ""
}

// Missing skips the test, or fails it under CI, for a peer (or a part of
// one) that is not there.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(what + "; CI must have every test peer (make test installs it)")
	}
	t.Skip(what)
}

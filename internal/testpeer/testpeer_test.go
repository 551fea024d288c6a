package testpeer

import (
	"os"
	"testing"
)

func TestRequire(t *testing.T) {
	if p := Require(t, "sh", "dash"); p == "" {
		t.Fatal("sh not found")
	}
	if os.Getenv("CI") == "true" {
		return // a missing peer fails there: nothing to try
	}
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Require(t, "no-such-program-wagateway", "none")
		t.Error("a missing program was not reported")
	})
	if !skipped {
		t.Error("a missing program did not skip the test outside CI")
	}
}

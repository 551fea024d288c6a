package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at build time (make build, docker/Dockerfile):
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=0123abc" ./cmd/wagateway
//
// Left unset, the version is the module version go install recorded
// (go install …/cmd/wagateway@v1.2.0), else "dev", and the commit is the
// VCS revision go build recorded from a git checkout, else "unknown".
var (
	version = "dev"
	commit  = ""
)

// buildInfo is the version and commit of this binary, and the Go release
// that built it.
func buildInfo() (ver, rev, goVersion string) {
	ver, rev, goVersion = version, commit, runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if rev == "" {
			rev = "unknown"
		}
		return ver, rev, goVersion
	}
	if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	}
	if rev == "" {
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev, goVersion
}

// printVersion answers `wagateway version` and `wagateway --version`.
func printVersion(w io.Writer) int {
	ver, rev, goVersion := buildInfo()
	fmt.Fprintf(w, "wagateway %s (commit %s, %s)\n", ver, rev, goVersion)
	return 0
}

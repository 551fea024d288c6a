//go:build !(linux && (amd64 || arm64 || riscv64 || ppc64le || loong64))

package wasim

import "net"

// Elsewhere packets are timestamped when the reader gets them.

const rxOOBLen = 0

func enableRxTimestamps(*net.UDPConn) bool { return false }

func rxTimestamp([]byte) (int64, bool) { return 0, false }

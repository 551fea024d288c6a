//go:build !linux

package sip

// tryRecv is TryReadPacket's state on Linux (rtp_poll_linux.go); elsewhere
// the bridge reads the PBX's RTP with ReadPacket on a goroutine.
type tryRecv struct{}

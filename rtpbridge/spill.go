package rtpbridge

// The playout buffer's slots and the reorder window's hold a packet's
// payload in place when it is of the usual size, and a longer one (up to
// maxPacket) in a buffer of their own, made the first time one comes and
// grown, in steps of spillStep, only for a longer one still: a steady
// stream allocates nothing once each slot has seen its size, and a call
// does not carry an MTU per slot for payloads it never gets.

const spillStep = 128

// storeSpill copies payload (cut at maxPacket) into inline if it fits, else
// into *big, and returns its length.
func storeSpill(inline []byte, big *[]byte, payload []byte) int {
	if len(payload) <= len(inline) {
		return copy(inline, payload)
	}
	if want := min(len(payload), maxPacket); len(*big) < want {
		*big = make([]byte, min((want+spillStep-1)/spillStep*spillStep, maxPacket))
	}
	return copy(*big, payload)
}

// spilled is the n bytes storeSpill kept.
func spilled(inline, big []byte, n int) []byte {
	if n > len(inline) {
		return big[:n]
	}
	return inline[:n]
}

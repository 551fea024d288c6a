package rtpbridge

import (
	"fmt"
	"strings"
)

// A direction of the bridge is a chain of small stages, each a value that
// does one job and names itself. The chain is built from the very stage
// values the direction calls, so what it prints is what runs.
type chain []fmt.Stringer

func (c chain) String() string {
	parts := make([]string, len(c))
	for i, s := range c {
		parts[i] = s.String()
	}
	return strings.Join(parts, " → ")
}

// label is a stage that only names something outside the bridge (the legs).
type label string

func (l label) String() string { return string(l) }

// codecStage names a SIP codec step (G.711, G.722). The work is a plain
// function call on the codec; the stage is here to be printed.
type codecStage struct {
	c  *sipCodec
	op string // "encode" or "decode"
}

func (s codecStage) String() string { return s.c.name + " " + s.op }

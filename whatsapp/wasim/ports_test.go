package wasim

import "testing"

// Ports handed out are never handed out again in the process, though the
// kernel may return a number twice once it is free (without the memory,
// 400 draws among Linux's ~28,000 ephemeral ports repeat one nine times in
// ten).
func TestFreeLoopbackPortUnique(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		seen := map[int]bool{}
		for range 400 {
			p, err := FreeLoopbackPort(network)
			if err != nil {
				t.Fatal(err)
			}
			if seen[p] {
				t.Fatalf("%s port %d handed out twice", network, p)
			}
			seen[p] = true
		}
	}
}

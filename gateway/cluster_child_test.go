package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ClusterChildEnv names the file a re-executed test binary runs one gateway
// instance from (the cluster tests' instances are processes, so that one
// can be killed with SIGKILL): {"config": Config, "secrets": Secrets}.
const ClusterChildEnv = "WAGATEWAY_TEST_CLUSTER_CHILD"

// ClusterChild is what the file holds.
type ClusterChild struct {
	Config  *Config  `json:"config"`
	Secrets *Secrets `json:"secrets"`
}

// runClusterChild runs the gateway of the file until SIGTERM (drain, then
// close: as `wagateway serve`) or SIGINT (close at once).
func runClusterChild(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var spec ClusterChild
	if err := json.Unmarshal(raw, &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log, err := NewLogger(spec.Config.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer log.Sync()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	g, err := New(spec.Config, spec.Secrets, log)
	if err == nil {
		err = g.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 1
	}
	if <-sigs == syscall.SIGTERM {
		if err := g.Drain(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "drain:", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	return 0
}

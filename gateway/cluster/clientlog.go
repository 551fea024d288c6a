package cluster

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// clientLog adapts a function to go-redis's logger.
type clientLog func(msg string)

func (f clientLog) Printf(_ context.Context, format string, v ...any) { f(fmt.Sprintf(format, v...)) }

// SetClientLog sends the Redis client's own messages (a failed dial, a
// pool problem: one per failing command while Redis is down) to f instead
// of stderr. The client's logger is process-wide; f should rate-limit.
func SetClientLog(f func(msg string)) { redis.SetLogger(clientLog(f)) }

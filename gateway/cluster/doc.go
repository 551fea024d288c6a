// Package cluster lets several gateways act as one: a Redis store that
// decides which instance owns a call, holds events that arrive before any
// does, counts admitted calls across instances and lets a live instance take
// over the calls of a dead one; and an internal HTTP channel that hands an
// event to the instance owning its call.
package cluster

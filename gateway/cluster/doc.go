// Package cluster lets several gateway instances act as one: call
// ownership, shared limits and orphan cleanup in Redis (redis.go), and the
// authenticated channel that carries a webhook event to the instance owning
// its call (peer.go).
package cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseStatus is what Renew found.
type LeaseStatus int

const (
	// LeaseHeld: the lease was there and is extended.
	LeaseHeld LeaseStatus = iota
	// LeaseRejoined: the lease was gone and no reaper had taken it (e.g.
	// Redis restarted empty); it is set again.
	LeaseRejoined
	// LeaseReaped: reaped:<I> exists: another instance ended our calls.
	LeaseReaped
)

func (s LeaseStatus) String() string {
	switch s {
	case LeaseHeld:
		return "held"
	case LeaseRejoined:
		return "rejoined"
	case LeaseReaped:
		return "reaped"
	}
	return fmt.Sprintf("LeaseStatus(%d)", int(s))
}

// Instance is a live instance, as its lease tells.
type Instance struct {
	ID, Node, Addr string
	Since          time.Time
}

// Join sets this instance's lease and lists it in instances (one MULTI).
func (r *Redis) Join(ctx context.Context) error {
	r.count("join")
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.instKey(r.inst()), r.self, r.lease)
		p.SAdd(ctx, r.instancesKey(), r.inst())
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: join %s: %w", r.inst(), err)
	}
	return nil
}

// Renew extends the lease; call it well within Lease (a third of it, say).
// It is one script so that a reaper and a renewal cannot interleave.
func (r *Redis) Renew(ctx context.Context) (LeaseStatus, error) {
	r.count("renew")
	n, err := renewScript.Run(ctx, r.c,
		[]string{r.instKey(r.inst()), r.reapedKey(r.inst()), r.instancesKey()},
		r.self, ms(r.lease), r.inst()).Int()
	if err != nil {
		return 0, fmt.Errorf("cluster: renew %s: %w", r.inst(), err)
	}
	return LeaseStatus(n), nil
}

// Leave removes this instance: its lease, calls and load (one MULTI).
func (r *Redis) Leave(ctx context.Context) error {
	r.count("leave")
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.instKey(r.inst()), r.callsKey(r.inst()), r.loadKey(r.inst()))
		p.SRem(ctx, r.instancesKey(), r.inst())
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: leave %s: %w", r.inst(), err)
	}
	return nil
}

// Instances lists the live instances (lease key present), by id.
func (r *Redis) Instances(ctx context.Context) ([]Instance, error) {
	r.count("instances")
	vals, err := instancesScript.Run(ctx, r.c, []string{r.instancesKey()}, r.prefix).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("cluster: instances: %w", err)
	}
	out := make([]Instance, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		var v leaseValue
		if err := json.Unmarshal([]byte(vals[i+1]), &v); err != nil {
			return nil, fmt.Errorf("cluster: instances: lease of %s: %w", vals[i], err)
		}
		out = append(out, Instance{ID: vals[i], Node: v.Node, Addr: v.Addr, Since: v.Since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

package cluster

import (
	"context"
	"fmt"
	"time"
)

// Orphan is a call of a dead instance. Info is nil when info:<id> is gone.
type Orphan struct {
	ID   string
	Info []byte
}

// Dead lists the instances whose lease is gone, never this one.
func (r *Redis) Dead(ctx context.Context) ([]string, error) {
	r.count("dead")
	dead, err := deadScript.Run(ctx, r.c, []string{r.instancesKey()}, r.prefix, r.inst()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("cluster: dead instances: %w", err)
	}
	return dead, nil
}

// Reap takes a dead instance's calls for this one to end. Of the instances
// reaping at once exactly one wins, and holds the lock for lockFor; an
// instance whose lease is back is not reaped (won=false). The winner ends
// each orphan, calls Reaped for it, then Forget.
func (r *Redis) Reap(ctx context.Context, inst string, lockFor time.Duration) (orphans []Orphan, won bool, err error) {
	r.count("reap")
	vals, err := reapScript.Run(ctx, r.c,
		[]string{r.reapKey(inst), r.reapedKey(inst), r.instKey(inst), r.callsKey(inst)},
		r.inst(), ms(lockFor), ms(reapedTTL), r.prefix).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("cluster: reap %s: %w", inst, err)
	}
	if len(vals) == 0 || vals[0] != int64(1) {
		return nil, false, nil
	}
	for i := 1; i+1 < len(vals); i += 2 {
		id, _ := vals[i].(string)
		o := Orphan{ID: id}
		if info, ok := vals[i+1].(string); ok {
			o.Info = []byte(info)
		}
		orphans = append(orphans, o)
	}
	return orphans, true, nil
}

// Reaped records that the reaper ended inst's call id (and its waID).
func (r *Redis) Reaped(ctx context.Context, inst, id, waID string) error {
	r.count("reaped")
	if err := r.endCall(ctx, inst, id, waID); err != nil {
		return fmt.Errorf("cluster: reaped %s of %s: %w", id, inst, err)
	}
	return nil
}

// Forget drops a dead instance once it has no call left: its calls and
// load keys, the reap lock and its place in instances. With calls left, or
// its lease back, it does nothing. reaped:<inst> stays until it expires.
func (r *Redis) Forget(ctx context.Context, inst string) error {
	r.count("forget")
	err := forgetScript.Run(ctx, r.c,
		[]string{r.instKey(inst), r.callsKey(inst), r.loadKey(inst), r.reapKey(inst), r.instancesKey()},
		inst).Err()
	if err != nil {
		return fmt.Errorf("cluster: forget %s: %w", inst, err)
	}
	return nil
}

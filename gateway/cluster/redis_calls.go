package cluster

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Claim is Claim's answer. Won: this instance owns the call now. Ended: the
// call ended (or a terminating event came before anyone took it). Else
// Owner is the instance that has it (possibly this one, when it claimed
// before) and Addr its event channel, "" when that owner's lease is gone.
type Claim struct {
	Won, Ended  bool
	Owner, Addr string
}

// Route is Route's answer: the owner to forward the event to (Addr "" when
// its lease is gone), or Held (kept for Place), or Ended.
type Route struct {
	Owner, Addr string
	Held, Ended bool
}

// Claim takes a call for this instance unless someone has it or it ended,
// saving its info for a reaper. id is the gateway's call key: the WhatsApp
// call id (user-initiated) or "sip:"+Call-ID (business-initiated).
func (r *Redis) Claim(ctx context.Context, id string, info []byte) (Claim, error) {
	r.count("claim")
	vals, err := claimScript.Run(ctx, r.c,
		[]string{r.callKey(id), r.infoKey(id), r.callsKey(r.inst())},
		r.inst(), info, ms(callTTL), id, r.prefix).StringSlice()
	if err != nil {
		return Claim{}, fmt.Errorf("cluster: claim %s: %w", id, err)
	}
	if len(vals) != 3 {
		return Claim{}, fmt.Errorf("cluster: claim %s: unexpected reply %q", id, vals)
	}
	switch vals[0] {
	case "won":
		return Claim{Won: true}, nil
	case "ended":
		return Claim{Ended: true}, nil
	}
	return Claim{Owner: vals[1], Addr: vals[2]}, nil
}

// SaveInfo replaces a call's info (what a reaper needs to end it).
func (r *Redis) SaveInfo(ctx context.Context, id string, info []byte) error {
	r.count("save_info")
	if err := r.c.Set(ctx, r.infoKey(id), info, callTTL).Err(); err != nil {
		return fmt.Errorf("cluster: save info %s: %w", id, err)
	}
	return nil
}

// Place makes this instance the owner of a business-initiated call's
// WhatsApp call id, even over "!ended", and returns the events held for
// it, oldest first, removing them.
func (r *Redis) Place(ctx context.Context, waID string) (held [][]byte, err error) {
	r.count("place")
	vals, err := placeScript.Run(ctx, r.c,
		[]string{r.callKey(waID), r.heldKey(waID)}, r.inst(), ms(callTTL)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("cluster: place %s: %w", waID, err)
	}
	for _, v := range vals {
		held = append(held, []byte(v))
	}
	return held, nil
}

// Route tells where a WhatsApp event for waID goes. With no owner it is
// held (the newest 8, for 30 s) for the instance that will Place the call;
// markEnded (a terminating event) also marks the unowned call ended.
func (r *Redis) Route(ctx context.Context, waID string, event []byte, markEnded bool) (Route, error) {
	r.count("route")
	mark := "0"
	if markEnded {
		mark = "1"
	}
	vals, err := routeScript.Run(ctx, r.c,
		[]string{r.callKey(waID), r.heldKey(waID)},
		r.prefix, event, mark, heldMax, ms(heldTTL), ms(endedTTL)).StringSlice()
	if err != nil {
		return Route{}, fmt.Errorf("cluster: route %s: %w", waID, err)
	}
	if len(vals) != 3 {
		return Route{}, fmt.Errorf("cluster: route %s: unexpected reply %q", waID, vals)
	}
	switch vals[0] {
	case "held":
		return Route{Held: true}, nil
	case "ended":
		return Route{Ended: true}, nil
	}
	return Route{Owner: vals[1], Addr: vals[2]}, nil
}

// End marks this instance's call ended: id, and waID when it is another
// key of the same call.
func (r *Redis) End(ctx context.Context, id, waID string) error {
	r.count("end")
	if err := r.endCall(ctx, r.inst(), id, waID); err != nil {
		return fmt.Errorf("cluster: end %s: %w", id, err)
	}
	return nil
}

// endCall drops id from inst's calls with its info and leaves "!ended" on
// id and waID, so late events and claims learn the call is over (one MULTI).
func (r *Redis) endCall(ctx context.Context, inst, id, waID string) error {
	keys := []string{id}
	if waID != "" && waID != id {
		keys = append(keys, waID)
	}
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.SRem(ctx, r.callsKey(inst), k)
			p.Del(ctx, r.infoKey(k))
			p.Set(ctx, r.callKey(k), ended, endedTTL)
		}
		return nil
	})
	return err
}

package cluster

import (
	"context"
	"fmt"
)

// Admission is Admit's answer. Why is "max_calls" or "number_limit" when
// refused. Total and Number are the calls across the live instances (in all,
// and to this number), this one included when admitted.
type Admission struct {
	OK     bool
	Why    string
	Total  int
	Number int
}

// Admit takes a call slot when fewer than totalLimit calls run across the
// live instances and fewer than numberLimit to number (a limit <= 0 is
// none; number "" is counted in the total only). The check and the count
// are one script, so instances admitting at once cannot overshoot. Each
// admitted call needs one Release.
func (r *Redis) Admit(ctx context.Context, number string, numberLimit, totalLimit int) (Admission, error) {
	r.count("admit")
	vals, err := admitScript.Run(ctx, r.c,
		[]string{r.instancesKey(), r.loadKey(r.inst())},
		r.prefix, r.inst(), numberField(number), numberLimit, totalLimit).Slice()
	if err != nil {
		return Admission{}, fmt.Errorf("cluster: admit %s: %w", number, err)
	}
	if len(vals) != 4 {
		return Admission{}, fmt.Errorf("cluster: admit %s: unexpected reply %v", number, vals)
	}
	ok, _ := vals[0].(int64)
	why, _ := vals[1].(string)
	total, _ := vals[2].(int64)
	num, _ := vals[3].(int64)
	return Admission{OK: ok == 1, Why: why, Total: int(total), Number: int(num)}, nil
}

// Release gives back a slot Admit took; counts never go below 0.
func (r *Redis) Release(ctx context.Context, number string) error {
	r.count("release")
	err := releaseScript.Run(ctx, r.c, []string{r.loadKey(r.inst())}, numberField(number)).Err()
	if err != nil {
		return fmt.Errorf("cluster: release %s: %w", number, err)
	}
	return nil
}

// numberField is number's field in inst:<I>:load; "" counts no number.
func numberField(number string) string {
	if number == "" {
		return ""
	}
	return "n:" + number
}

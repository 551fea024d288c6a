package rtpbridge

import "time"

// The pacer sends one frame toward WhatsApp per frame period from Start to
// Close, whatever the PBX does: the WhatsApp client hangs up after 20-30 s
// without media. Frames are due at start + k·period; each tick sends every
// frame that is due, so a late tick (GC pause, busy machine) is made up at
// once and the rate never drifts. After a stall longer than maxCatchUp
// frames the missed frames are skipped instead of burst out: skipped says
// how many, so the sender can move its timestamp over them.

const maxCatchUp = 5

// pace runs the schedule until stop is closed; send sends one frame.
func pace(period time.Duration, stop <-chan struct{}, send func(), skipped func(frames int64)) {
	start := time.Now()
	t := time.NewTicker(period)
	defer t.Stop()
	send() // the first frame at once: never wait for the other side
	sent := int64(1)
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			due := int64(now.Sub(start)/period) + 1
			if due-sent > maxCatchUp {
				skipped(due - 1 - sent)
				sent = due - 1
			}
			for ; sent < due; sent++ {
				send()
			}
		}
	}
}

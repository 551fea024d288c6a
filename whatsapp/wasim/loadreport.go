package wasim

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// LoadReport is what a load run measured. Times are milliseconds unless
// named otherwise.
type LoadReport struct {
	StartedAt          time.Time `json:"started_at"`
	Calls              int       `json:"calls"`
	Rate               float64   `json:"rate_per_s"`
	HoldSeconds        float64   `json:"hold_s"`
	ToneHz             float64   `json:"tone_hz"`
	MarkerEverySeconds float64   `json:"marker_every_s"`
	LateAfterMs        float64   `json:"late_after_ms"`
	RampSeconds        float64   `json:"ramp_s"`
	HeldSeconds        float64   `json:"held_s"`
	CallsUpAtHoldStart int       `json:"calls_up_at_hold_start"`
	CallsUpAtHoldEnd   int       `json:"calls_up_at_hold_end"`

	// Attempted = Bridged + Failed; Dropped calls were bridged but ended
	// before the run hung them up.
	Attempted int            `json:"attempted"`
	Bridged   int            `json:"bridged"`
	Failed    int            `json:"failed"`
	FailedBy  map[string]int `json:"failed_by"`
	Dropped   int            `json:"dropped"`
	DroppedBy map[string]int `json:"dropped_by"`
	// CallsWithViolations broke a Meta rule (the simulator's Graph and
	// media checks); Violations lists the first few distinct ones.
	CallsWithViolations int      `json:"calls_with_violations"`
	Violations          []string `json:"violations,omitempty"`
	// SetupMs: the connect webhook built → accept answered 200.
	SetupMs Percentiles `json:"setup_ms"`
	// WhatsAppCodecs counts the bridged calls by the codec the business's
	// answer picked: opus, or PCMU/PCMA when the callers offered them (the
	// number's audio.additional_codecs).
	WhatsAppCodecs map[string]int `json:"whatsapp_codecs"`

	ToGateway  ToGatewayReport  `json:"to_gateway"`
	ToWhatsApp ToWhatsAppReport `json:"to_whatsapp"`
	RoundTrip  RoundTripReport  `json:"round_trip"`

	// Gateway is the gateway's own per-call media statistics, when its log
	// was read (the caller fills it in).
	Gateway   *GatewayMedia `json:"gateway_media,omitempty"`
	Processes []ProcReport  `json:"processes"`
	// Machine is the whole machine's CPU during the hold, in cores: busy
	// (softirq and steal included), of which softirq (the loopback network
	// stack, mostly) and steal, and how much of busy the watched processes
	// do not account for (other work on the machine, and softirq run
	// outside their time).
	Machine *MachineCPU `json:"machine_cpu,omitempty"`
	// FloorUSPer20ms is the libopus floor of one transcoded call (decode +
	// encode per 20 ms), when given; CPU ratios are against it.
	FloorUSPer20ms float64 `json:"floor_us_per_20ms,omitempty"`
	// Notes say what the figures do not (a generator that fell behind, …).
	Notes []string `json:"notes,omitempty"`
	// PerCall, when asked for, has every call's own figures.
	PerCall []CallFigures `json:"per_call,omitempty"`
}

// CallFigures are one call's figures.
type CallFigures struct {
	Index   int     `json:"index"`
	CallID  string  `json:"call_id"`
	Outcome string  `json:"outcome"`
	SetupMs float64 `json:"setup_ms"`
	// Toward WhatsApp.
	Received     uint64  `json:"received"`
	Lost         uint64  `json:"lost"`
	Late         uint64  `json:"late"`
	LatenessP99  float64 `json:"lateness_p99_ms"`
	LongestGapMs float64 `json:"longest_gap_ms"`
	// The latency markers' round trips, in order, and the best.
	RoundTripsMs []float64 `json:"round_trips_ms"`
	BestMs       float64   `json:"best_round_trip_ms"`
	// The gateway's own counters for the call, when its log was read.
	GatewayLostFromCaller uint64 `json:"gateway_lost_from_caller,omitempty"`
	GatewayUnderruns      uint64 `json:"gateway_underruns,omitempty"`
}

// ToGatewayReport is the caller → gateway direction as sent.
type ToGatewayReport struct {
	PacketsSent uint64 `json:"packets_sent"`
	// SendLatenessMs is how late the generator sent packets against its own
	// schedule: its health, not the gateway's.
	SendLatenessMs Percentiles `json:"send_lateness_ms"`
}

// ToWhatsAppReport is the gateway → caller direction as received.
type ToWhatsAppReport struct {
	PacketsExpected uint64  `json:"packets_expected"`
	PacketsReceived uint64  `json:"packets_received"`
	Lost            uint64  `json:"lost"`
	LossPercent     float64 `json:"loss_percent"`
	Duplicates      uint64  `json:"duplicates"`
	// Late packets came more than LateAfterMs behind the gateway's 20 ms
	// schedule; LatenessMs is every packet's delay against that schedule
	// (0 = as early as the call's best packet).
	Late        uint64      `json:"late"`
	LatePercent float64     `json:"late_percent"`
	LatenessMs  Percentiles `json:"lateness_ms"`
	// LongestGapMs is the longest time between two packets of a call.
	LongestGapMs float64 `json:"longest_gap_ms"`
}

// RoundTripReport is the latency markers' story.
type RoundTripReport struct {
	Markers  int `json:"markers"`
	Detected int `json:"detected"`
	Missed   int `json:"missed"`
	// PassthroughCalls had their markers come back byte for byte (no
	// decode; G.711 calls are read through the G.711 tables all the same,
	// which DecodedPackets, the Opus decodes, does not count).
	PassthroughCalls int    `json:"passthrough_calls"`
	DecodedPackets   uint64 `json:"decoded_packets"`
	// RoundTripMs: the tone's return after a marker gap, WhatsApp → gateway
	// → PBX echo → gateway → WhatsApp, less the simulator's own codec delay.
	RoundTripMs Percentiles `json:"round_trip_ms"`
	// CallBestMs is each call's best round trip, over the calls: the
	// gateway's designed delay (look-ahead, pacer phase, playout margin).
	CallBestMs Percentiles `json:"call_best_round_trip_ms"`
	// AddedOneWayMs is, per marker, (its round trip − its call's best) / 2,
	// over the markers of calls with at least minMarkersForAdded of them
	// (each call's best marker itself left out).
	AddedOneWayMs Percentiles `json:"added_one_way_ms"`
	// The added round trip in two parts: FrameStepMarkers counts the round
	// trips a whole 20 ms frame or more above their call's best (a playout
	// buffer grown past a frame, which plays whole frames of silence; it
	// moves its pacer's phase for less); AddedWithinFrameOneWayMs is what
	// is left once whole frames are taken off, halved like AddedOneWayMs.
	FrameStepMarkers         int         `json:"frame_step_markers"`
	AddedWithinFrameOneWayMs Percentiles `json:"added_within_frame_one_way_ms"`
}

// GatewayMedia sums the gateway's per-call media statistics.
type GatewayMedia struct {
	Calls         int              `json:"calls"`
	WhatsAppToSIP GatewayDirection `json:"whatsapp_to_sip"`
	SIPToWhatsApp GatewayDirection `json:"sip_to_whatsapp"`
}

// GatewayDirection is one direction's sums as the gateway counted them.
type GatewayDirection struct {
	PacketsIn      uint64  `json:"packets_in"`
	PacketsOut     uint64  `json:"packets_out"`
	Lost           uint64  `json:"lost"`
	LossPercent    float64 `json:"loss_percent"`
	Late           uint64  `json:"late"`
	Concealed      uint64  `json:"concealed"`
	FECRecovered   uint64  `json:"fec_recovered"`
	Underruns      uint64  `json:"underruns"`
	SilenceFrames  uint64  `json:"silence_frames"`
	PacerResyncs   uint64  `json:"pacer_resyncs"`
	Overruns       uint64  `json:"overruns"`
	WriteErrors    uint64  `json:"write_errors"`
	MaxPlayoutMs   uint64  `json:"max_playout_delay_ms"`
	CallsWithLoss  int     `json:"calls_with_loss"`
	CallsWithLates int     `json:"calls_with_lates"`
	MaxLossPercent float64 `json:"max_call_loss_percent"`
}

// MachineCPU is the machine's CPU during the hold, in cores.
type MachineCPU struct {
	CPUs        int     `json:"cpus"`
	Busy        float64 `json:"busy_cores"`
	Softirq     float64 `json:"softirq_cores"`
	Steal       float64 `json:"steal_cores"`
	Unaccounted float64 `json:"unaccounted_cores"`
}

// ProcReport is one watched process's cost.
type ProcReport struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// HoldCPUSeconds is the CPU it used during the hold; CPUPercent the
	// same as a share of one core.
	HoldCPUSeconds float64 `json:"hold_cpu_s"`
	CPUPercent     float64 `json:"hold_cpu_percent"`
	// CPUMsPerCallSecond is HoldCPUSeconds per call per second held, in ms:
	// the CPU one call costs it.
	CPUMsPerCallSecond float64 `json:"cpu_ms_per_call_s"`
	// FloorRatio is CPUMsPerCallSecond over the libopus floor, when known.
	FloorRatio     float64 `json:"floor_ratio,omitempty"`
	RunCPUSeconds  float64 `json:"run_cpu_s"`
	RSSBaselineKiB int64   `json:"rss_baseline_kib"`
	RSSHoldKiB     int64   `json:"rss_hold_kib"`
	PeakRSSKiB     int64   `json:"peak_rss_kib"`
	// RSSPerCallKiB is (RSS at the end of the hold − RSS before any call)
	// per call up.
	RSSPerCallKiB float64 `json:"rss_per_call_kib"`
}

func procReports(watch []WatchedProcess, base, hs, he, end map[int]procSample, held time.Duration, calls float64) []ProcReport {
	var out []ProcReport
	for _, w := range watch {
		b, ok1 := base[w.PID]
		s, ok2 := hs[w.PID]
		e, ok3 := he[w.PID]
		if !ok1 || !ok2 || !ok3 {
			out = append(out, ProcReport{Name: w.Name, PID: w.PID})
			continue
		}
		p := ProcReport{
			Name: w.Name, PID: w.PID,
			HoldCPUSeconds: round3(e.cpuSeconds - s.cpuSeconds),
			RSSBaselineKiB: b.rssKiB, RSSHoldKiB: e.rssKiB, PeakRSSKiB: e.hwmKiB,
		}
		if f, ok := end[w.PID]; ok {
			p.RunCPUSeconds = round3(f.cpuSeconds - b.cpuSeconds)
			p.PeakRSSKiB = max(p.PeakRSSKiB, f.hwmKiB)
		}
		if sec := held.Seconds(); sec > 0 {
			p.CPUPercent = round3(100 * p.HoldCPUSeconds / sec)
			if calls > 0 {
				p.CPUMsPerCallSecond = round3(1000 * p.HoldCPUSeconds / sec / calls)
			}
		}
		if calls > 0 {
			p.RSSPerCallKiB = math.Round(float64(e.rssKiB-b.rssKiB) / calls)
		}
		out = append(out, p)
	}
	return out
}

// minMarkersForAdded is how many markers a call needs for its best round
// trip to stand for its designed delay.
const minMarkersForAdded = 3

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// SetFloor records the libopus floor (µs per 20 ms of a transcoded call)
// and each process's CPU against it.
func (r *LoadReport) SetFloor(usPer20ms float64) {
	r.FloorUSPer20ms = usPer20ms
	if usPer20ms <= 0 {
		return
	}
	floorMsPerS := usPer20ms * 50 / 1000
	for i := range r.Processes {
		r.Processes[i].FloorRatio = math.Round(100*r.Processes[i].CPUMsPerCallSecond/floorMsPerS) / 100
	}
}

// report gathers every call's figures once all are over.
func (r *loadRun) report(rep *LoadReport) {
	calls := r.snapshot()
	rep.FailedBy, rep.DroppedBy, rep.WhatsAppCodecs = map[string]int{}, map[string]int{}, map[string]int{}
	r.mu.Lock()
	for k, v := range r.placeErr {
		rep.FailedBy[k] += v
		rep.Failed += v
		rep.Attempted += v
	}
	r.mu.Unlock()
	var setup, rtts, best, added, within []float64
	late := newLatHist(0)
	violations := map[string]bool{}
	tw := &rep.ToWhatsApp
	rt := &rep.RoundTrip
	for _, c := range calls {
		rep.Attempted++
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cr, err := c.call.Wait(ctx)
		cancel()
		if err != nil {
			cr = &Report{Outcome: "unfinished"}
		}
		rep.ToGateway.PacketsSent += c.sent.Load()
		bridged := c.firstRx.Load() != 0 && cr.Answered()
		switch {
		case !bridged:
			rep.Failed++
			reason := c.outcome
			if reason == "" {
				reason = cr.Outcome
				if cr.Answered() && c.firstRx.Load() == 0 {
					reason = reasonNoMedia
				}
				if cr.Outcome == OutcomeMediaFailed {
					reason = reasonMediaFailed
				}
			}
			rep.FailedBy[reason]++
		default:
			rep.Bridged++
			codec, _ := c.leg.audio()
			rep.WhatsAppCodecs[codec]++
			setup = append(setup, float64(cr.AcceptAt.Sub(cr.PlacedAt))/1e6)
			if !c.hungUp {
				rep.Dropped++
				rep.DroppedBy[cr.Outcome]++
			}
		}
		if len(cr.Violations) > 0 {
			rep.CallsWithViolations++
			for _, v := range cr.Violations {
				if len(violations) < 10 {
					violations[v] = true
				}
			}
		}
		x := &c.rx
		var cf *CallFigures
		if r.opts.PerCall {
			rep.PerCall = append(rep.PerCall, CallFigures{Index: c.idx, CallID: c.call.ID(), Outcome: cr.Outcome})
			cf = &rep.PerCall[len(rep.PerCall)-1]
			if cr.Answered() {
				cf.SetupMs = math.Round(float64(cr.AcceptAt.Sub(cr.PlacedAt))/1e4) / 100
			}
		}
		if !x.started {
			continue
		}
		if cf != nil {
			cf.Received, cf.LongestGapMs = x.unique, math.Round(float64(x.gapMax)/1e4)/100
			if exp := uint64(x.maxExt-x.firstExt) + 1; exp > x.unique {
				cf.Lost = exp - x.unique
			}
			if x.hist != nil && x.hist.n > 0 {
				cf.Late = x.hist.countAbove(x.hist.min + int64(r.opts.LateAfter/time.Microsecond))
				cf.LatenessP99 = math.Round(float64(x.hist.quantile(0.99)-x.hist.min)/10) / 100
			}
			for _, v := range x.rtts {
				cf.RoundTripsMs = append(cf.RoundTripsMs, math.Round(v*100)/100)
			}
			if len(x.rtts) > 0 {
				cf.BestMs = math.Round(slices.Min(x.rtts)*100) / 100
			}
		}
		exp := uint64(x.maxExt-x.firstExt) + 1
		tw.PacketsExpected += exp
		tw.PacketsReceived += x.unique
		if exp > x.unique {
			tw.Lost += exp - x.unique
		}
		tw.Duplicates += x.dups
		tw.LongestGapMs = max(tw.LongestGapMs, float64(x.gapMax)/1e6)
		if x.hist != nil && x.hist.n > 0 {
			// The call's best packet is the schedule's anchor.
			late.addShifted(x.hist, x.hist.min)
			tw.Late += x.hist.countAbove(x.hist.min + int64(r.opts.LateAfter/time.Microsecond))
		}
		gen := int(c.mk.gen.Load())
		rt.Markers += gen
		rt.Detected += len(x.rtts)
		rt.Missed += gen - len(x.rtts)
		rt.DecodedPackets += x.decoded
		if x.byteMode {
			rt.PassthroughCalls++
		}
		rtts = append(rtts, x.rtts...)
		if len(x.rtts) > 0 {
			m := slices.Min(x.rtts)
			best = append(best, m)
			if len(x.rtts) >= minMarkersForAdded {
				skipped := false
				for _, v := range x.rtts {
					if v == m && !skipped {
						skipped = true
						continue
					}
					added = append(added, (v-m)/2)
					steps := math.Round((v - m) / loadFrameMs)
					if steps >= 1 {
						rt.FrameStepMarkers++
					}
					within = append(within, math.Abs(v-m-steps*loadFrameMs)/2)
				}
			}
		}
	}
	rep.Violations = slices.Sorted(maps.Keys(violations))
	rep.SetupMs = percentilesOf(setup)
	rep.ToGateway.SendLatenessMs = r.sendLate.percentiles()
	tw.LatenessMs = late.percentiles()
	if tw.PacketsExpected > 0 {
		tw.LossPercent = pct(tw.Lost, tw.PacketsExpected)
		tw.LatePercent = pct(tw.Late, tw.PacketsExpected)
	}
	rt.RoundTripMs = percentilesOf(rtts)
	rt.CallBestMs = percentilesOf(best)
	rt.AddedOneWayMs = percentilesOf(added)
	rt.AddedWithinFrameOneWayMs = percentilesOf(within)
	if p := rep.ToGateway.SendLatenessMs; p.P99 > 5 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the generator sent late (p99 %.1f ms behind its schedule): it, not the gateway, may be the limit", p.P99))
	}
	if rt.Markers > 0 && rt.Missed*20 > rt.Markers {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d of %d latency markers were not found", rt.Missed, rt.Markers))
	}
}

func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(1e5*float64(a)/float64(b)) / 1e3
}

// String renders the report as a table for people.
func (r *LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load: %d calls, ramp %.1f/s (%.1f s), hold %.0f s with %d up (%d at its end), tone %.0f Hz, marker every %.0f s\n",
		r.Calls, r.Rate, r.RampSeconds, r.HeldSeconds, r.CallsUpAtHoldStart, r.CallsUpAtHoldEnd, r.ToneHz, r.MarkerEverySeconds)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "calls\tattempted %d, bridged %d, failed %d%s, dropped %d%s, with violations %d\n",
		r.Attempted, r.Bridged, r.Failed, byReason(r.FailedBy), r.Dropped, byReason(r.DroppedBy), r.CallsWithViolations)
	fmt.Fprintf(w, "setup (connect → accept)\t%s\n", r.SetupMs)
	fmt.Fprintf(w, "whatsapp codec\t%s\n", strings.Trim(byReason(r.WhatsAppCodecs), " ()"))
	fmt.Fprintf(w, "to gateway\t%d packets sent; generator send lateness %s\n", r.ToGateway.PacketsSent, r.ToGateway.SendLatenessMs)
	t := r.ToWhatsApp
	fmt.Fprintf(w, "to whatsapp\t%d/%d packets, lost %d (%.3f %%), dup %d, late >%.0f ms %d (%.3f %%), longest gap %s ms\n",
		t.PacketsReceived, t.PacketsExpected, t.Lost, t.LossPercent, t.Duplicates, r.LateAfterMs, t.Late, t.LatePercent, fms(t.LongestGapMs))
	fmt.Fprintf(w, "  lateness vs 20 ms schedule\t%s\n", t.LatenessMs)
	rt := r.RoundTrip
	fmt.Fprintf(w, "round trip (markers)\t%d sent, %d found, %d missed (%d passthrough calls, %d packets decoded)\n",
		rt.Markers, rt.Detected, rt.Missed, rt.PassthroughCalls, rt.DecodedPackets)
	fmt.Fprintf(w, "  WA→PBX echo→WA\t%s\n", rt.RoundTripMs)
	fmt.Fprintf(w, "  each call's best\t%s\n", rt.CallBestMs)
	fmt.Fprintf(w, "  added one-way\t%s\n", rt.AddedOneWayMs)
	fmt.Fprintf(w, "    in whole frames\t%d markers a frame or more above their call's best\n", rt.FrameStepMarkers)
	fmt.Fprintf(w, "    within a frame\t%s\n", rt.AddedWithinFrameOneWayMs)
	if g := r.Gateway; g != nil {
		for _, d := range []struct {
			name string
			d    GatewayDirection
		}{{"gateway wa→sip", g.WhatsAppToSIP}, {"gateway sip→wa", g.SIPToWhatsApp}} {
			fmt.Fprintf(w, "%s\t%d calls: in %d, out %d, lost %d (%.3f %%, worst call %.3f %%), late %d, concealed %d, fec %d, underruns %d, silence %d, pacer resyncs %d, max playout %d ms\n",
				d.name, g.Calls, d.d.PacketsIn, d.d.PacketsOut, d.d.Lost, d.d.LossPercent, d.d.MaxLossPercent, d.d.Late, d.d.Concealed, d.d.FECRecovered,
				d.d.Underruns, d.d.SilenceFrames, d.d.PacerResyncs, d.d.MaxPlayoutMs)
		}
	}
	_ = w.Flush()
	if len(r.Processes) > 0 {
		w = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "process\tpid\tcpu s (hold)\t%% core\tcpu ms/call-s\tvs floor\trss base MiB\trss hold MiB\tpeak MiB\tKiB/call\t\n")
		for _, p := range r.Processes {
			ratio := "-"
			if p.FloorRatio > 0 {
				ratio = fmt.Sprintf("%.2f×", p.FloorRatio)
			}
			fmt.Fprintf(w, "%s\t%d\t%.2f\t%.1f\t%.3f\t%s\t%.1f\t%.1f\t%.1f\t%.0f\t\n", p.Name, p.PID, p.HoldCPUSeconds, p.CPUPercent,
				p.CPUMsPerCallSecond, ratio, float64(p.RSSBaselineKiB)/1024, float64(p.RSSHoldKiB)/1024, float64(p.PeakRSSKiB)/1024, p.RSSPerCallKiB)
		}
		_ = w.Flush()
		if r.FloorUSPer20ms > 0 {
			fmt.Fprintf(&b, "floor: libopus decode + encode %.1f µs per 20 ms = %.3f ms of CPU per call-second\n", r.FloorUSPer20ms, r.FloorUSPer20ms*50/1000)
		}
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "violation: %s\n", v)
	}
	if m := r.Machine; m != nil {
		fmt.Fprintf(&b, "machine during the hold: %.2f of %d cores busy (softirq %.2f, steal %.2f; %.2f not in the processes above)\n",
			m.Busy, m.CPUs, m.Softirq, m.Steal, m.Unaccounted)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

func byReason(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

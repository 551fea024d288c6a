package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
)

// OutcomeInstanceLost: the instance that owned the call was lost (its
// cluster lease lapsed: killed, crashed, cut off); another instance ended
// the call with Meta (terminate) and the PBX (BYE).
const OutcomeInstanceLost = "instance_lost"

// reapLoop looks for instances whose lease lapsed, every half lease (with
// jitter, so instances do not all look at once), and ends their calls: a
// lost instance's calls are ended within about 1.5 leases of its last
// renewal, plus the time Meta and the PBX take to answer.
func (n *clusterNode) reapLoop(ctx context.Context) {
	for {
		wait := n.cfg.Lease/2 + time.Duration(rand.Int64N(int64(n.cfg.Lease/10)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if n.available() {
			n.reapDead(ctx)
		}
	}
}

// reapDead ends the calls of every lapsed instance this one wins the reap
// of (one instance reaps each: a lock in Redis).
func (n *clusterNode) reapDead(ctx context.Context) {
	opCtx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	dead, err := n.store.Dead(opCtx)
	n.learnPeers(opCtx)
	cancel()
	if err != nil {
		n.setUp(false, err)
		return
	}
	for _, inst := range dead {
		if ctx.Err() != nil {
			return
		}
		n.reap(ctx, inst)
	}
}

// reapLock bounds one reap: the orphans' Graph terminates and BYEs, with
// their retries; another instance may take over after it.
const reapLock = 2 * time.Minute

func (n *clusterNode) reap(ctx context.Context, inst string) {
	opCtx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	orphans, won, err := n.store.Reap(opCtx, inst, reapLock)
	cancel()
	if err != nil {
		n.setUp(false, err)
		return
	}
	if !won {
		return
	}
	log := n.log.With(zap.String("lost_instance", inst))
	if len(orphans) > 0 {
		log.Warn("instance lost (its lease lapsed): ending its calls with Meta and the PBX", zap.Int("calls", len(orphans)))
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxReapsAtOnce)
	for _, o := range orphans {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			n.endOrphan(ctx, inst, o.ID, o.Info, log)
		}()
	}
	wg.Wait()
	opCtx, cancel = context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	if err := n.store.Forget(opCtx, inst); err != nil {
		log.Warn("cluster: lost instance not forgotten yet (retried at the next look)", zap.Error(err))
		return
	}
	log.Info("lost instance's calls ended", zap.Int("calls", len(orphans)))
}

// endOrphan ends one call of a lost instance: Graph terminate (Meta bills
// the call and keeps the user on the line until its own media timeout
// otherwise), a BYE built from the PBX dialog the owner saved, and a call
// record saying so.
func (n *clusterNode) endOrphan(ctx context.Context, inst, id string, raw []byte, log *zap.Logger) {
	g, m := n.g, n.g.ops.metrics
	var ci clusterCallInfo
	if raw == nil || json.Unmarshal(raw, &ci) != nil {
		m.clusterOrphans.WithLabelValues("no_state").Inc()
		log.Warn("lost instance's call has no saved state: nothing to end", zap.String("call", id))
		_ = n.reaped(ctx, inst, id, "")
		return
	}
	log = log.With(zap.String("call_id", ci.WACallID), zap.String("call", id))
	rec := &CallRecord{CallID: ci.WACallID, Direction: ci.Direction, PhoneNumberID: ci.PhoneNumberID,
		Caller: RecordCaller{Number: ci.Caller}, Route: ci.Route, Trunk: ci.Trunk, Outcome: OutcomeInstanceLost,
		HangupBy: byGateway, Reason: "instance " + inst + " lost (cluster lease lapsed); ended by " + n.self(),
		Times: RecordTimes{Connect: ci.Started, Accept: ci.Bridged}}
	var wg sync.WaitGroup
	if ci.WACallID != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if ci.Direction == DirectionUserInitiated && ci.Bridged.IsZero() {
				// Not accepted yet: Meta takes reject until accept (as endWhatsApp).
				rctx, cancel := context.WithTimeout(ctx, g.timeouts.graph)
				err = g.graph.Reject(rctx, ci.PhoneNumberID, ci.WACallID)
				cancel()
			}
			if err != nil || ci.Direction != DirectionUserInitiated || !ci.Bridged.IsZero() {
				err = n.terminate(ctx, ci.PhoneNumberID, ci.WACallID)
			}
			if graphRefused(err) { // over on Meta's side already
				m.clusterOrphans.WithLabelValues("terminate_refused").Inc()
				log.Info("lost instance's call: Meta refused terminate (the call had ended there)", zap.Error(err))
				return
			}
			rec.TerminateFailed = err != nil
			if err != nil {
				m.clusterOrphans.WithLabelValues("terminate_failed").Inc()
				log.Error("lost instance's call: graph terminate failed", zap.Error(err))
				return
			}
			m.clusterOrphans.WithLabelValues("terminated").Inc()
		}()
	}
	if ci.Dialog != nil {
		rec.SIPCallID = ci.Dialog.CallID
		why := sip.Reason{Protocol: "Q.850", Cause: 41, Text: "gateway instance lost"}
		rec.ReasonSent = recordReason(why)
		wg.Add(1)
		go func() {
			defer wg.Done()
			bctx, cancel := context.WithTimeout(ctx, 2*g.timeouts.bye)
			defer cancel()
			err := g.ua.ByeDialog(bctx, *ci.Dialog, why)
			var fe *sip.FinalError
			switch {
			case err == nil:
				m.clusterOrphans.WithLabelValues("bye_sent").Inc()
			case errors.As(err, &fe) && fe.Code == 481:
				m.clusterOrphans.WithLabelValues("bye_gone").Inc() // the PBX had ended it
			default:
				m.clusterOrphans.WithLabelValues("bye_failed").Inc()
				log.Warn("lost instance's call: BYE to the PBX failed", zap.Error(err))
			}
		}()
	}
	wg.Wait()
	rec.Times.End = g.now()
	if !rec.Times.Accept.IsZero() {
		rec.BillableSeconds = int64(rec.Times.End.Sub(rec.Times.Accept).Seconds())
	}
	rec.Disposition = disposition(rec)
	g.ops.records.write(rec)
	m.calls.WithLabelValues(ci.Direction, OutcomeInstanceLost, ci.Trunk).Inc()
	log.Info("lost instance's call ended", zap.Bool("terminate_failed", rec.TerminateFailed), zap.Bool("bye", ci.Dialog != nil))
	_ = n.reaped(ctx, inst, id, ci.WACallID)
}

// terminate sends Graph terminate, retried as a call's own (retryTerminate)
// until ctx (the reaper's) ends.
func (n *clusterNode) terminate(ctx context.Context, pnid, waID string) error {
	g := n.g
	_, err := g.retryTerminate(true, func() bool { return ctx.Err() != nil }, func() error {
		tctx, cancel := context.WithTimeout(ctx, g.timeouts.graph)
		defer cancel()
		return g.graph.Terminate(tctx, pnid, waID)
	})
	return err
}

func (n *clusterNode) reaped(ctx context.Context, inst, id, waID string) error {
	opCtx, cancel := context.WithTimeout(ctx, clusterOpTimeout)
	defer cancel()
	err := n.store.Reaped(opCtx, inst, id, waID)
	if err != nil {
		n.log.Warn("cluster: ended orphan not recorded (ended again at the next reap)", zap.String("call", id), zap.Error(err))
	}
	return err
}

package gateway

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// At start the daemon compares each number's calling: section with Meta's
// settings, in the background: drift is logged (WARN, with the diff's
// lines) and shown by wagateway_calling_settings_drift. It never changes
// Meta's settings: that is `wagateway settings apply`.

// callingCheckTimeout bounds the whole comparison (every number, the Graph
// requests' retries included).
const callingCheckTimeout = 60 * time.Second

// startCallingCheck starts the comparison when some number has calling:;
// Close cancels it.
func (g *Gateway) startCallingCheck() {
	managed := false
	for _, n := range g.cfg.Numbers {
		managed = managed || n.Calling != nil
	}
	if !managed || g.settings == nil {
		return
	}
	g.ops.wg.Add(1)
	go func() {
		defer g.ops.wg.Done()
		ctx, cancel := context.WithTimeout(g.ctx, callingCheckTimeout)
		defer cancel()
		g.checkCalling(ctx)
	}()
}

// checkCalling compares every managed number once. A number whose settings
// cannot be read is logged once and its gauge left alone.
func (g *Gateway) checkCalling(ctx context.Context) {
	g.checkCallingOf(ctx, func(string) bool { return true })
}

// checkCallingOf compares the managed numbers that want says.
func (g *Gateway) checkCallingOf(ctx context.Context, want func(pnid string) bool) {
	log := g.log.Named("settings")
	state, err := loadCallingState(g.cfg.CallingStateFile)
	if err != nil {
		log.Warn("calling settings: the state file cannot be read; voicemail announcements compare as never uploaded", zap.Error(err))
		state, _ = loadCallingState("")
	}
	for i, n := range g.cfg.Numbers {
		cc := n.Calling
		if cc == nil || !want(n.PhoneNumberID) {
			continue
		}
		if ctx.Err() != nil {
			if g.ctx.Err() == nil {
				log.Warn("calling settings: comparison cut short; the remaining numbers are not compared", zap.Duration("timeout", callingCheckTimeout))
			}
			return
		}
		nlog := log.With(zap.String("phone_number_id", n.PhoneNumberID))
		var ann *announcement
		if file := cc.announcementFile(); file != "" {
			if ann, err = readAnnouncement(file); err != nil {
				nlog.Warn("calling settings: voicemail announcement not compared",
					zap.String("field", fmt.Sprintf("numbers[%d].calling.voicemail.announcement_file", i)), zap.Error(err))
			}
		}
		have, err := g.settings.GetCallingSettings(ctx, n.PhoneNumberID, false)
		if err != nil {
			if ctx.Err() != nil && g.ctx.Err() != nil {
				return // stopping
			}
			nlog.Warn("calling settings: Meta's cannot be read; drift unknown", zap.Error(err))
			continue
		}
		if have != nil && have.Restrictions != nil && len(have.Restrictions.RestrictionsList) > 0 {
			nlog.Warn("calling settings: Meta restricts calling on this number", zap.Any("restrictions", have.Restrictions.RestrictionsList))
		}
		lines, _ := diffCalling(callingSettings(cc), have, ann.check(state.Numbers[n.PhoneNumberID]))
		gauge := g.ops.metrics.callingDrift.WithLabelValues(n.PhoneNumberID)
		if len(lines) == 0 {
			gauge.Set(0)
			nlog.Info("calling settings: Meta's match the config file")
			continue
		}
		gauge.Set(1)
		nlog.Warn("calling settings drift: Meta's differ from the config file (wagateway settings diff shows them, apply sends them; the gateway never changes them)",
			zap.Strings("changes", lines))
	}
}

package sip

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Keepalive defaults: a vanished PBX ends its calls within about
// KeepaliveMisses × DefaultKeepaliveInterval.
const (
	DefaultKeepaliveInterval = 30 * time.Second
	KeepaliveMisses          = 2
)

// keepalive probes the PBX with in-dialog OPTIONS (RFC 3261 §11) every
// interval while the dialog is up. KeepaliveMisses probes in a row without a
// final response, or a 481/408 (the dialog is gone at the PBX, §12.2.1.2),
// end the call as "pbx_unreachable"; a BYE with a Reason header then goes
// out, best effort. Any other final response, 405 or 501 included, shows the
// PBX is there. Each probe waits at most one interval (and Timer F).
func (c *Call) keepalive(interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-c.ua.ctx.Done():
			return
		case <-tick.C:
		}
		req := c.d.request(sip.OPTIONS, 0)
		req.AppendHeader(sip.NewHeader("User-Agent", c.ua.cfg.UserAgent))
		ctx, cancel := context.WithTimeout(c.ua.ctx, min(interval, sip.Timer_F))
		res, err := doRequest(ctx, c.st, req)
		cancel()
		select {
		case <-c.done:
			return // ended meanwhile: the probe's outcome does not matter
		default:
		}
		switch {
		case err != nil:
			missed++
			c.log.Info("sip keepalive OPTIONS unanswered", zap.Int("missed", missed), zap.Error(err))
		case res.StatusCode == 481 || res.StatusCode == 408:
			missed = KeepaliveMisses
			c.log.Info("sip keepalive: the PBX no longer knows the dialog", zap.Int("code", res.StatusCode))
		default:
			missed = 0
		}
		if missed >= KeepaliveMisses {
			c.unreachable()
			return
		}
	}
}

// unreachable ends the call as "pbx_unreachable" (Done closes as the BYE
// goes out) and tells the PBX, in case it can still hear (bounded, best
// effort); a call a BYE already ended is left as it is.
func (c *Call) unreachable() {
	ctx, cancel := context.WithTimeout(c.ua.ctx, 2*time.Second)
	defer cancel()
	if err := c.hangup(ctx, EndUnreachable, Reason{Protocol: "SIP", Cause: 408, Text: "PBX unreachable"}); err != nil {
		c.log.Debug("sip BYE to an unreachable PBX", zap.Error(err))
	}
}

// EndUnreachable is the EndReason of a call whose PBX stopped answering
// in-dialog OPTIONS.
const EndUnreachable = "pbx_unreachable"

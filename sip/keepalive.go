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

// startKeepalive probes the PBX with in-dialog OPTIONS (RFC 3261 §11) every
// interval while the dialog is up. KeepaliveMisses probes in a row without a
// final response, or a 481/408 (the dialog is gone at the PBX, §12.2.1.2),
// end the call as "pbx_unreachable"; a BYE with a Reason header then goes
// out, best effort. Any other final response, 405 or 501 included, shows the
// PBX is there. Each probe waits at most one interval (and Timer F). The
// probes run from a timer: no goroutine of the call waits between them.
func (c *Call) startKeepalive(interval time.Duration) {
	k := &keepalive{c: c, interval: interval}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.keepalive = time.AfterFunc(interval, k.fire)
	}
}

// keepalive is one call's probing state (its timer is Call.keepalive,
// stopped by Call.end).
type keepalive struct {
	c        *Call
	interval time.Duration
	missed   int
}

// fire runs one probe as the UA's background work (none once it closes).
func (k *keepalive) fire() { k.c.ua.runBackground(k.probe) }

func (k *keepalive) probe() {
	c := k.c
	select {
	case <-c.done:
		return
	case <-c.ua.ctx.Done():
		return
	default:
	}
	start := time.Now()
	req := c.d.request(sip.OPTIONS, 0)
	req.AppendHeader(sip.NewHeader("User-Agent", c.ua.cfg.UserAgent))
	ctx, cancel := context.WithTimeout(c.ua.ctx, min(k.interval, sip.Timer_F))
	res, err := doRequest(ctx, c.st, req)
	cancel()
	select {
	case <-c.done:
		return // ended meanwhile: the probe's outcome does not matter
	default:
	}
	switch {
	case err != nil:
		k.missed++
		c.log.Info("sip keepalive OPTIONS unanswered", zap.Int("missed", k.missed), zap.Error(err))
	case res.StatusCode == 481 || res.StatusCode == 408:
		k.missed = KeepaliveMisses
		c.log.Info("sip keepalive: the PBX no longer knows the dialog", zap.Int("code", res.StatusCode))
	default:
		k.missed = 0
	}
	if k.missed >= KeepaliveMisses {
		c.unreachable()
		return
	}
	// The next probe one interval after this one began (as a ticker).
	c.mu.Lock()
	if !c.ended {
		c.keepalive.Reset(max(k.interval-time.Since(start), 0))
	}
	c.mu.Unlock()
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

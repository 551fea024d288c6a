package gateway

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/sip"
)

// buildTrunks turns the trunk configs into SIP trunks with their
// passwords, whether each is pinged, and each one's media policy (DTMF
// mode as the media bridge takes it, WhatsApp codec).
func buildTrunks(cfg *Config, secrets *Secrets) (map[string]*sip.Trunk, map[string]bool, map[string]trunkMedia, error) {
	trunks := make(map[string]*sip.Trunk, len(cfg.Trunks))
	pinged := make(map[string]bool, len(cfg.Trunks))
	media := make(map[string]trunkMedia, len(cfg.Trunks))
	for _, tc := range cfg.Trunks {
		t := &sip.Trunk{
			Name: tc.Name, Address: tc.Address, Transport: tc.Transport,
			Username: tc.Username, Password: secrets.TrunkPasswords[tc.Name],
			FromDomain: tc.FromDomain, Codecs: tc.Codecs, AllowFrom: tc.AllowFrom,
		}
		if err := t.Validate(); err != nil {
			return nil, nil, nil, fmt.Errorf("trunk %q: %w", tc.Name, err)
		}
		mode, err := parseDTMFPolicy(tc.DTMF, tc.DTMFFallback)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("trunk %q: %w", tc.Name, err)
		}
		tm := trunkMedia{dtmf: mode, g711: tc.WhatsAppCodec == WhatsAppCodecG711}
		trunks[tc.Name], pinged[tc.Name], media[tc.Name] = t, tc.optionsPing(), tm
	}
	return trunks, pinged, media, nil
}

// trunkList is the trunks (who may send SIP requests), in no order.
func trunkList(trunks map[string]*sip.Trunk) []*sip.Trunk {
	out := make([]*sip.Trunk, 0, len(trunks))
	for _, t := range trunks {
		out = append(out, t)
	}
	return out
}

// Reload takes the routes (numbers) and trunks of a new config, as SIGHUP
// does, without touching the calls in progress: they keep the trunk and
// route they were set up with. Other sections need a restart; changes to
// them are logged and otherwise ignored. The call record file is reopened
// (for logrotate).
func (g *Gateway) Reload(cfg *Config, secrets *Secrets) error {
	g.ops.reloadMu.Lock()
	defer g.ops.reloadMu.Unlock()
	trunks, pinged, media, err := buildTrunks(cfg, secrets)
	if err != nil {
		g.ops.metrics.configReloads.WithLabelValues("error").Inc()
		return err
	}
	running := g.ops.started.Load() && !g.ops.stopped.Load()
	// The new trunks' addresses may send requests before calls are routed
	// to them (resolving names takes a moment).
	if running {
		if err := g.ua.SetTrunks(g.ctx, trunkList(trunks)); err != nil {
			g.log.Warn("reload: trunk addresses not all resolved; their requests are dropped until they are", zap.Error(err))
		}
	}
	router := NewRouter(cfg.Numbers)
	router.now = func() time.Time { return g.now() }
	g.rmu.Lock()
	g.router, g.trunks, g.trunkPing, g.trunkMedia = router, trunks, pinged, media
	g.outbound = cfg.Outbound.Routes
	g.rmu.Unlock()

	if running {
		g.ops.monitor.run(trunks, pinged)
		if err := g.ops.records.reopen(); err != nil {
			g.log.Error("reload: call record file", zap.Error(err))
		}
	}
	if ignored := restartOnly(g.cfg, cfg); len(ignored) > 0 {
		g.log.Warn("reload: these sections changed but only take effect on restart",
			zap.String("sections", strings.Join(ignored, ", ")))
	}
	g.ops.metrics.configReloads.WithLabelValues("ok").Inc()
	g.log.Info("reloaded routes and trunks", zap.Int("trunks", len(trunks)), zap.Int("numbers", len(cfg.Numbers)),
		zap.Int("outbound_routes", len(cfg.Outbound.Routes)),
		zap.Int("active_calls", g.reg.count()))
	return nil
}

// restartOnly names the sections that differ but are not reloaded.
func restartOnly(old, new *Config) []string {
	var out []string
	for name, pair := range map[string][2]any{
		"log": {old.Log, new.Log}, "http": {old.HTTP, new.HTTP}, "whatsapp": {old.WhatsApp, new.WhatsApp},
		"webrtc": {old.WebRTC, new.WebRTC}, "sip": {old.SIP, new.SIP}, "media": {old.Media, new.Media},
		"drain_timeout": {old.DrainTimeout, new.DrainTimeout}, "health": {old.Health, new.Health},
		"call_records": {old.CallRecords, new.CallRecords}, "admin": {old.Admin, new.Admin},
		"metrics":                       {old.Metrics, new.Metrics},
		"outbound.forward_webhooks_url": {old.Outbound.ForwardWebhooksURL, new.Outbound.ForwardWebhooksURL},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			out = append(out, name)
		}
	}
	sortStrings(out)
	return out
}

// ReloadFile re-reads the config file and its secrets and reloads routes and
// trunks (SIGHUP). A config that does not load changes nothing.
func (g *Gateway) ReloadFile(path string) error {
	cfg, err := LoadConfig(path)
	if err == nil {
		var secrets *Secrets
		if secrets, err = cfg.ResolveSecrets(); err == nil {
			return g.Reload(cfg, secrets)
		}
	}
	g.ops.metrics.configReloads.WithLabelValues("error").Inc()
	return err
}

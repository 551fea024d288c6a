package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wagateway/wagateway/rtpbridge"
	"github.com/wagateway/wagateway/sip"
	"github.com/wagateway/wagateway/whatsapp"
)

// metrics are the gateway's Prometheus collectors. Each Gateway has its own
// registry (never the global one), so tests can run several gateways.
type metrics struct {
	reg *prometheus.Registry

	activeByCodec *prometheus.GaugeVec
	calls         *prometheus.CounterVec
	metaErrors    *prometheus.CounterVec
	setupLatency  prometheus.Histogram
	graphRequests *prometheus.CounterVec
	graphLatency  *prometheus.HistogramVec
	sipFinal      *prometheus.CounterVec
	pbxReasons    *prometheus.CounterVec
	// Business-initiated calls' permissions (permission.go).
	permissionRequests *prometheus.CounterVec
	permissionReplies  *prometheus.CounterVec
	permissionChecks   *prometheus.CounterVec
	// Meta's account events (account_events.go).
	accountEvents     *prometheus.CounterVec
	callingRestricted *prometheus.GaugeVec
	voicemails        *prometheus.CounterVec
	webhooks          *prometheus.CounterVec
	packets           *prometheus.CounterVec
	lost              *prometheus.CounterVec
	late              *prometheus.CounterVec
	concealed         *prometheus.CounterVec
	fecRecovered      *prometheus.CounterVec
	jitter            *prometheus.HistogramVec
	digits            *prometheus.CounterVec
	codecPaths        *prometheus.CounterVec
	mos               prometheus.Histogram
	trunkUp           *prometheus.GaugeVec
	trunkPingRTT      *prometheus.GaugeVec
	trunkAuthFail     *prometheus.GaugeVec
	trunkInviteFail   *prometheus.GaugeVec
	draining          prometheus.Gauge
	records           *prometheus.CounterVec
	callDuration      prometheus.Histogram
	configReloads     *prometheus.CounterVec
	adminRequests     *prometheus.CounterVec
	recordsDropped    prometheus.Counter
	stateErrors       prometheus.Counter
	// Calling settings compared with Meta's at start (settings_watch.go).
	callingDrift *prometheus.GaugeVec
	// Admission and the cluster (cluster*.go).
	admissionRefused      *prometheus.CounterVec
	clusterUp             prometheus.Gauge
	clusterInstances      prometheus.Gauge
	clusterLease          *prometheus.CounterVec
	clusterClaims         *prometheus.CounterVec
	clusterForwards       *prometheus.CounterVec
	clusterForwardSeconds prometheus.Histogram
	clusterOrphans        *prometheus.CounterVec
}

const ns = "wagateway"

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.activeByCodec = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "active_bridged_calls",
		Help: "Bridged calls in progress by codec path (opus-pcmu, opus-pcma, opus-g722, opus-passthrough, pcmu-passthrough, pcma-passthrough)."}, []string{"codec_path"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "calls_total",
		Help: "Ended calls by direction (user_initiated, business_initiated) and outcome (bridged, no_media, pbx_media_timeout, pbx_unreachable, pbx_rejected, no_answer, caller_hungup, no_route, trunk_down, draining, failed, shutdown, admin_hangup; business-initiated also no_permission, permission_requested, permission_declined, permission_timeout, meta_refused, user_declined, agent_cancelled), and the route's trunk (empty when the call was never routed)."}, []string{"direction", "outcome", "trunk"})
	m.metaErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "meta_call_errors_total",
		Help: "Error codes in Meta's terminate webhooks (errors[].code, e.g. 138021)."}, []string{"code"})
	m.setupLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "call_setup_seconds",
		Help:    "From the connect webhook to Graph accept answered 200 (includes the PBX's ringing time).",
		Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60}})
	m.graphRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "graph_requests_total",
		Help: "Graph API call actions by action and result (ok, graph_error, network_error, bad_response, canceled)."}, []string{"action", "result"})
	m.graphLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "graph_request_seconds",
		Help:    "Time of one Graph API call action, retries included.",
		Buckets: []float64{0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3, 6, 12, 30}}, []string{"action"})
	m.sipFinal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sip_invite_final_responses_total",
		Help: "Final responses to the gateway's INVITEs by status code (200, 486, 503, …)."}, []string{"code"})
	m.pbxReasons = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "sip_pbx_reasons_total",
		Help: "Reason headers (RFC 3326) on the PBX's final responses and BYEs, by protocol (Q.850, SIP) and cause."}, []string{"protocol", "cause"})
	m.permissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "call_permission_requests_total",
		Help: "Call permission requests sent to WhatsApp users, by kind (interactive, template) and result (sent, failed)."}, []string{"kind", "result"})
	m.permissionReplies = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "call_permission_replies_total",
		Help: "Call permission replies from WhatsApp users, by response (accept, reject), permanence (temporary, permanent) and source (user_action, automatic)."}, []string{"response", "permanence", "source"})
	m.permissionChecks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "call_permission_checks_total",
		Help: "Permission states read before business-initiated calls, by state (no_permission, temporary, permanent, error) and whether they came from the cache."}, []string{"state", "cached"})
	m.accountEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "account_events_total",
		Help: "Meta's account events by event (PHONE_NUMBER_SETTINGS, ACCOUNT_VIOLATION, ACCOUNT_RESTRICTION, other) and type (the violation or restriction type, none, other)."}, []string{"event", "type"})
	m.callingRestricted = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "calling_restricted",
		Help: "1 while Meta restricts calling on a number (account_update ACCOUNT_RESTRICTION, until its expiration), by number and restriction."}, []string{"phone_number", "restriction"})
	m.voicemails = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "voicemails_total",
		Help: "Voicemails callers left (Meta's voicemail message), by result (recorded, downloaded, forwarded, download_failed, forward_failed)."}, []string{"result"})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_deliveries_total",
		Help: "Webhook requests and events by result (accepted, duplicate, stale, bad_signature, malformed, ignored, verified, verify_failed)."}, []string{"result"})
	dir := []string{"direction"}
	m.packets = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "media_packets_total",
		Help: "RTP packets by direction (whatsapp_to_sip, sip_to_whatsapp) and stage (in, out)."}, []string{"direction", "stage"})
	m.lost = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "media_lost_packets_total",
		Help: "Packets missing from the input sequence, by direction."}, dir)
	m.late = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "media_late_packets_total",
		Help: "Duplicate or out-of-order packets discarded, by direction."}, dir)
	m.concealed = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "media_concealed_frames_total",
		Help: "Frames filled by packet-loss concealment, by direction."}, dir)
	m.fecRecovered = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "media_fec_recovered_frames_total",
		Help: "Lost frames rebuilt from Opus in-band FEC, by direction."}, dir)
	m.jitter = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "media_jitter_seconds",
		Help:    "Interarrival jitter (RFC 3550) of each call's input at its end, by direction.",
		Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2}}, dir)
	m.digits = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dtmf_digits_total",
		Help: "DTMF digits found, by the side that sent them (whatsapp, sip)."}, []string{"from"})
	m.codecPaths = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bridged_calls_total",
		Help: "Calls that were bridged, by codec path."}, []string{"codec_path"})
	m.mos = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "call_mos",
		Help:    "Estimated MOS (E-model, G.107) of each bridged call, the worse direction.",
		Buckets: []float64{1.5, 2, 2.5, 3, 3.5, 3.8, 4, 4.2, 4.4}})
	m.callDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "call_talk_seconds",
		Help:    "From accept to the end of a bridged call.",
		Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1200, 3600}})
	m.trunkUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "trunk_up",
		Help: "1 when the trunk answers SIP OPTIONS (or is not pinged), 0 when it is marked down."}, []string{"trunk"})
	m.trunkPingRTT = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "trunk_options_rtt_seconds",
		Help: "Round trip of the last answered OPTIONS ping."}, []string{"trunk"})
	m.trunkAuthFail = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "trunk_auth_failed",
		Help: "1 when the trunk refuses the credentials answering its OPTIONS digest challenge (or the challenge cannot be answered); calls to it fail too."}, []string{"trunk"})
	m.trunkInviteFail = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "trunk_invite_failing",
		Help: "1 when the trunk refused health.invite_failures INVITEs in a row (auth refusals 401/403/407, 5xx, no response at all): it answers OPTIONS but takes no call; 0 again after an INVITE succeeds."}, []string{"trunk"})
	m.draining = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "draining",
		Help: "1 while the gateway drains (SIGTERM): new calls are rejected."})
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "call_records_total",
		Help: "Call records by sink (file, url) and result (ok, error)."}, []string{"sink", "result"})
	m.stateErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "call_state_errors_total",
		Help: "Call state transitions refused as illegal (a bug in the call machine; the call stays in its state)."})
	m.recordsDropped = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "call_records_dropped_total",
		Help: "Call records not POSTed because the send queue was full."})
	m.configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "config_reloads_total",
		Help: "SIGHUP reloads by result (ok, error)."}, []string{"result"})
	m.callingDrift = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "calling_settings_drift",
		Help: "1 when a number's calling settings at Meta differ from its calling: section in the config file (read at start), 0 when they match; absent when not managed or Meta could not be read."}, []string{"phone_number_id"})
	m.adminRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "admin_requests_total",
		Help: "Admin API requests by result (ok, unauthorized, not_found, bad_request)."}, []string{"result"})
	m.admissionRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "calls_refused_total",
		Help: "New calls refused by admission: max_calls, number_limit (the number's max_calls), cluster_unavailable (Redis unreachable, cluster.redis_down: refuse)."}, []string{"why"})
	m.clusterUp = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "cluster_redis_up",
		Help: "1 when the cluster's Redis answered the last lease renewal (0: calls in progress go on, new calls follow cluster.redis_down); only with a cluster."})
	m.clusterInstances = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "cluster_instances",
		Help: "Live instances of the cluster (leases held), as this one last saw them; only with a cluster."})
	m.clusterLease = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cluster_lease_lost_total",
		Help: "Times this instance found its lease gone: rejoined (Redis lost it: calls registered again) or reaped (another instance took it for lost and ended its calls)."}, []string{"status"})
	m.clusterClaims = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cluster_claims_refused_total",
		Help: "New calls not taken because another instance owns them or they already ended (duplicate deliveries)."}, []string{"result"})
	m.clusterForwards = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cluster_webhooks_total",
		Help: "Webhook events for calls not active here: sent to their owner, failed (owner unreachable after retries), dropped (too many in flight), held (in Redis for the call's future owner), ended (the call had ended), orphaned (its owner is lost); and received from other instances (received, received_duplicate)."}, []string{"result"})
	m.clusterForwardSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "cluster_forward_seconds",
		Help:    "Time to pass one webhook event to its owner: the Redis request saying who owns the call, then the POST to it (retries included).",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2, 6}})
	m.clusterOrphans = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cluster_orphans_total",
		Help: "Actions on the calls of lost instances: terminated, terminate_failed, bye_sent, bye_gone (481: the PBX had ended it), bye_failed, no_state."}, []string{"result"})
	for _, c := range m.all() {
		f(c)
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f(newWorkerCollector())
	// Label values known up front, so a dashboard shows 0 rather than
	// nothing (the calls by trunk: knownTrunk).
	for _, d := range []string{dirWhatsAppToSIP, dirSIPToWhatsApp} {
		m.packets.WithLabelValues(d, "in")
		m.packets.WithLabelValues(d, "out")
		m.lost.WithLabelValues(d)
	}
	return m
}

// knownTrunk exports the trunk's main call outcomes as 0 from the start.
func (m *metrics) knownTrunk(trunk string) {
	for _, o := range []string{OutcomeBridged, OutcomePBXRejected, OutcomeNoAnswer, OutcomeCallerHungUp, OutcomeFailed} {
		m.calls.WithLabelValues(DirectionUserInitiated, o, trunk)
	}
}

// watchSIP exports the SIP user agent's drop counts (hostile or broken
// peers: issue 13).
func (m *metrics) watchSIP(stats func() sip.Stats) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "pbx_rtp_stranger_packets_total",
		Help: "Datagrams dropped on calls' PBX-side RTP ports because they did not come from the PBX's negotiated address."},
		func() float64 { return float64(stats().StrangerRTPPackets) }))
	for reason, f := range map[string]func(sip.Stats) uint64{
		"not_trunk":       func(s sip.Stats) uint64 { return s.RequestsNotFromTrunk },
		"rate_limited":    func(s sip.Stats) uint64 { return s.RequestsRateLimited },
		"not_dialog_peer": func(s sip.Stats) uint64 { return s.RequestsNotFromDialogPeer },
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "sip_requests_dropped_total",
			Help:        "SIP requests dropped unanswered by reason (not_trunk, rate_limited, not_dialog_peer).",
			ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(f(stats())) }))
	}
	for reason, f := range map[string]func(sip.Stats) uint64{
		"not_trunk":  func(s sip.Stats) uint64 { return s.ConnectionsNotFromTrunk },
		"over_limit": func(s sip.Stats) uint64 { return s.ConnectionsOverLimit },
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "sip_connections_refused_total",
			Help:        "TCP or TLS connections to the SIP port closed as they were accepted, before any read, by reason (not_trunk, over_limit: 64 per source address or 1024 in all open).",
			ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(f(stats())) }))
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "rtp_ports_in_use",
		Help: "RTP ports the gateway's SIP side holds open now (one per call leg toward a PBX, taken from sip.rtp_port_min-rtp_port_max)."},
		func() float64 { return float64(stats().RTPPortsInUse) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "rtp_ports",
		Help: "RTP ports the SIP side can use: the even ports of sip.rtp_port_min-rtp_port_max, the most calls' PBX legs open at once."},
		func() float64 { return float64(stats().RTPPorts) }))
}

// all lists the gateway's own collectors.

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.activeByCodec, m.calls, m.metaErrors, m.setupLatency,
		m.graphRequests, m.graphLatency, m.sipFinal, m.pbxReasons, m.permissionRequests, m.permissionReplies, m.permissionChecks, m.accountEvents, m.callingRestricted, m.voicemails, m.webhooks, m.packets, m.lost, m.late, m.concealed,
		m.fecRecovered, m.jitter, m.digits, m.codecPaths, m.mos, m.callDuration, m.trunkUp, m.trunkPingRTT,
		m.trunkAuthFail, m.trunkInviteFail,
		m.draining, m.records, m.recordsDropped, m.configReloads, m.adminRequests, m.stateErrors,
		m.callingDrift, m.admissionRefused, m.clusterLease, m.clusterClaims,
		m.clusterForwards, m.clusterForwardSeconds, m.clusterOrphans}
}

// clusterGauges are registered only with a cluster (newClusterNode).
func (m *metrics) clusterGauges() []prometheus.Collector {
	return []prometheus.Collector{m.clusterUp, m.clusterInstances}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Directions as labelled in metrics and call records.
const (
	dirWhatsAppToSIP = "whatsapp_to_sip"
	dirSIPToWhatsApp = "sip_to_whatsapp"
)

func (m *metrics) graphRequest(action, result string, d time.Duration) {
	m.graphRequests.WithLabelValues(action, result).Inc()
	m.graphLatency.WithLabelValues(action).Observe(d.Seconds())
}

func (m *metrics) webhookResult(r whatsapp.WebhookResult) {
	m.webhooks.WithLabelValues(string(r)).Inc()
}

func (m *metrics) terminateErrors(errs []whatsapp.CallError) {
	for _, e := range errs {
		m.metaErrors.WithLabelValues(strconv.Itoa(e.Code)).Inc()
	}
}

// addMedia adds the growth of the bridge's counters since the last report.
func (m *metrics) addMedia(now, prev rtpbridge.Stats) {
	add := func(dir string, n, p rtpbridge.DirectionStats) {
		m.packets.WithLabelValues(dir, "in").Add(float64(delta(n.PacketsIn, p.PacketsIn)))
		m.packets.WithLabelValues(dir, "out").Add(float64(delta(n.PacketsOut, p.PacketsOut)))
		m.lost.WithLabelValues(dir).Add(float64(delta(n.Lost, p.Lost)))
		m.late.WithLabelValues(dir).Add(float64(delta(n.Late, p.Late)))
		m.concealed.WithLabelValues(dir).Add(float64(delta(n.Concealed, p.Concealed)))
		m.fecRecovered.WithLabelValues(dir).Add(float64(delta(n.FECRecovered, p.FECRecovered)))
	}
	add(dirWhatsAppToSIP, now.WhatsAppToSIP, prev.WhatsAppToSIP)
	add(dirSIPToWhatsApp, now.SIPToWhatsApp, prev.SIPToWhatsApp)
	if d := delta(now.WhatsAppToSIP.Digits, prev.WhatsAppToSIP.Digits); d > 0 {
		m.digits.WithLabelValues("whatsapp").Add(float64(d))
	}
	if d := delta(sipDigits(now.SIPToWhatsApp), sipDigits(prev.SIPToWhatsApp)); d > 0 {
		m.digits.WithLabelValues("sip").Add(float64(d))
	}
}

// sipDigits counts the PBX's digits: those found in its media (events or
// tones), or, when more, those sent on to WhatsApp (SIP INFO digits are
// only sent, never found in the media).
func sipDigits(s rtpbridge.DirectionStats) uint64 { return max(s.Digits, s.DigitsSent) }

func delta(now, prev uint64) uint64 {
	if now < prev {
		return 0
	}
	return now - prev
}

// codecPath names the media path of a call for labels: the WhatsApp leg's
// codec (Opus unless a g711 trunk's call runs G.711 on it; "" before the
// bridge, taken as Opus) and the SIP side's: opus-pcmu, opus-g722 …
// (transcoded), opus-passthrough, pcmu-passthrough or pcma-passthrough.
func codecPath(waCodec, sipCodec string) string {
	c, w := strings.ToLower(sipCodec), strings.ToLower(waCodec)
	switch {
	case c == "":
		return ""
	case w == "":
		w = "opus"
	}
	if w == c {
		return w + "-passthrough"
	}
	return w + "-" + c
}

// RegisterBuildInfo exports wagateway_build_info{version,commit,go_version}
// = 1, the binary's build (the daemon calls it once after New; issue 18).
func (g *Gateway) RegisterBuildInfo(version, commit, goVersion string) {
	g.ops.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help:        "Always 1: the version, commit and Go release of the running binary in its labels.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "go_version": goVersion}},
		func() float64 { return 1 }))
}

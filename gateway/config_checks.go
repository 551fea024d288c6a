package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Checks of values that are well-formed but break calls (issue 18): an
// error where a call cannot work, a warning where it depends on the
// network (a private public_ips serves a local simulator or a private
// interconnect, never Meta on the internet).

// codecAliases: the PBXs' names for the G.711 codecs (Asterisk's allow=ulaw,alaw).
var codecAliases = map[string]string{"ulaw": "PCMU", "alaw": "PCMA", "pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}

// dtmfAliases: FreeSWITCH and older Asterisk call RFC 4733 events rfc2833.
var dtmfAliases = map[string]string{"rfc2833": "rfc4733"}

// normalizeAliases writes codecs and DTMF modes in the gateway's names:
// ulaw → PCMU, alaw → PCMA (any case), rfc2833 → rfc4733; whatsapp_codec
// in lower case.
func (c *Config) normalizeAliases() {
	for i := range c.Trunks {
		t := &c.Trunks[i]
		for j, name := range t.Codecs {
			if canon, ok := codecAliases[strings.ToLower(strings.TrimSpace(name))]; ok {
				t.Codecs[j] = canon
			}
		}
		for _, m := range []*string{&t.DTMF, &t.DTMFFallback, &t.WhatsAppCodec} {
			low := strings.ToLower(strings.TrimSpace(*m))
			if canon, ok := dtmfAliases[low]; ok {
				low = canon
			}
			if low != "" {
				*m = low
			}
		}
	}
}

// docPrefixes can never be reached: they exist to be written in examples.
var docPrefixes = []struct {
	p   netip.Prefix
	rfc string
}{
	{netip.MustParsePrefix("192.0.2.0/24"), "RFC 5737"},
	{netip.MustParsePrefix("198.51.100.0/24"), "RFC 5737"},
	{netip.MustParsePrefix("203.0.113.0/24"), "RFC 5737"},
	{netip.MustParsePrefix("2001:db8::/32"), "RFC 3849"},
}

var sharedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking (RFC 2544)
}

// documentationRange names the RFC of a documentation address, or "".
func documentationRange(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return ""
	}
	a = a.Unmap()
	for _, d := range docPrefixes {
		if d.p.Contains(a) {
			return d.rfc
		}
	}
	return ""
}

// notPublic says why Meta cannot reach ip from the internet, or "".
func notPublic(ip net.IP) string {
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	}
	if a, ok := netip.AddrFromSlice(ip); ok {
		for _, p := range sharedPrefixes {
			if p.Contains(a.Unmap()) {
				return "not a public address (" + p.String() + ")"
			}
		}
	}
	return ""
}

// validateDeployment returns the errors of values that cannot work.
func (c *Config) validateDeployment() []string {
	var p []string
	bad := func(field, format string, a ...any) { p = append(p, field+": "+fmt.Sprintf(format, a...)) }
	for i, s := range c.WebRTC.PublicIPs {
		if ip := net.ParseIP(s); ip != nil {
			if rfc := documentationRange(ip); rfc != "" {
				bad(fmt.Sprintf("webrtc.public_ips[%d]", i), "%s is a documentation address (%s) that no one can reach: put the public address Meta reaches this host on (its own, or its NAT's 1:1 address)", s, rfc)
			}
		}
	}
	if port := c.WebRTC.UDPPort; port > 0 {
		if _, sp, err := net.SplitHostPort(c.SIP.Listen); err == nil && c.SIP.Transport == "udp" && sp == strconv.Itoa(port) {
			bad("webrtc.udp_port", "%d is also sip.listen's port (%s): WebRTC media and SIP cannot share one UDP port; keep the default 3478, or move sip.listen", port, c.SIP.Listen)
		}
		validRange := c.SIP.RTPPortMin >= 1024 && c.SIP.RTPPortMax <= 65535 && c.SIP.RTPPortMax > c.SIP.RTPPortMin
		if validRange && c.SIP.RTPPortMin <= port && port <= c.SIP.RTPPortMax {
			bad("webrtc.udp_port", "%d lies inside the SIP RTP range sip.rtp_port_min-rtp_port_max (%d-%d), which a call's RTP socket takes: pick a port outside it (default 3478)", port, c.SIP.RTPPortMin, c.SIP.RTPPortMax)
		}
	}
	type place struct{ number, route int }
	names := map[string]place{}
	for i, n := range c.Numbers {
		for j, r := range n.Routes {
			rf := fmt.Sprintf("numbers[%d].routes[%d]", i, j)
			if first, dup := names[r.Name]; dup {
				where := fmt.Sprintf("routes[%d]", first.route)
				if first.number != i {
					where = fmt.Sprintf("numbers[%d].routes[%d]", first.number, first.route)
				}
				bad(rf+".name", "%q is also the name of %s: route names label the metrics, logs and call records, so each must be unique (e.g. %s-%d)", r.Name, where, r.Name, j+1)
			} else {
				names[r.Name] = place{i, j}
			}
		}
		for j, r := range n.Routes {
			if j == len(n.Routes)-1 || !catchAll(r) {
				continue
			}
			var hidden []string
			for k := j + 1; k < len(n.Routes); k++ {
				hidden = append(hidden, fmt.Sprintf("routes[%d] %q", k, n.Routes[k].Name))
			}
			why := "it has no cta_payload nor deeplink_payload"
			if r.Hours != nil {
				why += ", and outside its hours it sends calls to its after_hours_destination"
			}
			bad(fmt.Sprintf("numbers[%d].routes[%d]", i, j), "takes every call (%s), so the routes after it are never tried (%s): move it last, or give it a cta_payload", why, strings.Join(hidden, ", "))
			break
		}
	}
	return p
}

// catchAll: the route takes every call that reaches it.
func catchAll(r RouteConfig) bool {
	all := func(pattern string) bool { return pattern == "" || pattern == "*" }
	return all(r.CTAPayload) && all(r.DeeplinkPayload) && (r.Hours == nil || r.AfterHoursDestination != "")
}

// deploymentWarnings lists values that work only on some networks.
func (c *Config) deploymentWarnings() []string {
	var w []string
	add := func(field, format string, a ...any) { w = append(w, c.placed(field+": "+fmt.Sprintf(format, a...))) }
	if len(c.WebRTC.PublicIPs) == 0 {
		var private []string
		for _, s := range c.WebRTC.ListenIPs {
			if ip := net.ParseIP(s); ip != nil && notPublic(ip) != "" {
				private = append(private, s)
			}
		}
		if len(private) > 0 {
			add("webrtc.public_ips", "empty, and the listen_ips advertised instead (%s) are not public: Meta cannot reach them; set public_ips to the address Meta reaches this host on (or WAGATEWAY_WEBRTC_PUBLIC_IPS)", strings.Join(private, ", "))
		} else {
			add("webrtc.public_ips", "empty: the gateway advertises its interface addresses, which Meta reaches only on a host with a public address (not in a container, not behind NAT); set public_ips to the host's public address (or WAGATEWAY_WEBRTC_PUBLIC_IPS)")
		}
	}
	for i, s := range c.WebRTC.PublicIPs {
		if ip := net.ParseIP(s); ip != nil && documentationRange(ip) == "" {
			if why := notPublic(ip); why != "" {
				add(fmt.Sprintf("webrtc.public_ips[%d]", i), "%s is %s: Meta, on the internet, cannot reach it (fine only for a local simulator); put the host's public address, or its NAT's 1:1 address", s, why)
			}
		}
	}
	if lh, lp, err := net.SplitHostPort(c.SIP.Listen); err == nil && lp != "0" {
		lip := net.ParseIP(lh)
		everywhere := lh == "" || (lip != nil && lip.IsUnspecified())
		for i, t := range c.Trunks {
			th, tp, err := net.SplitHostPort(t.Address)
			if err != nil || tp != lp || !localHost(th) {
				continue
			}
			if !everywhere && !strings.EqualFold(lh, th) && !(lip != nil && lip.Equal(net.ParseIP(th))) {
				continue
			}
			add("sip.listen", "%q takes port %s, and trunks[%d] (%s) is a PBX on this host at %s: they cannot both bind it; move sip.listen to another port (e.g. \"%s\") and point the PBX's endpoint for the gateway at it", c.SIP.Listen, lp, i, t.Name, t.Address, net.JoinHostPort(lh, "5070"))
		}
	}
	return w
}

// localHost: the host is this machine's (loopback, or an interface address).
func localHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

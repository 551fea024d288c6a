package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestParseDialled(t *testing.T) {
	for in, want := range map[string]waUser{
		"+14085551234":     {waID: "14085551234"},
		"14085551234":      {waID: "14085551234"},
		"+44 (20) 7946-01": {waID: "4420794601"},
		"US.1234567890123": {bsuid: "US.1234567890123"},
		"abc_DEF-12.3":     {bsuid: "abc_DEF-12.3"},
	} {
		got, err := parseDialled(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "+", "+0123456", "+1234567890123456", "12", "a b", "x@y", "+abc", strings.Repeat("a", 129)} {
		if u, err := parseDialled(in); err == nil {
			t.Errorf("%q taken as %+v", in, u)
		}
	}
}

func TestRouteOutbound(t *testing.T) {
	routes := []OutboundRouteConfig{
		{Name: "uk", Trunk: "pbx", Prefix: "+44", PhoneNumberID: "111"},
		{Name: "by-header", Trunk: "pbx", PhoneNumberIDHeader: "X-WA-Number", PhoneNumberIDs: []string{"222", "333"},
			BizOpaqueHeader: "X-Ticket"},
		{Name: "other-trunk", Trunk: "pbx2", PhoneNumberID: "444"},
	}
	hdr := func(m map[string]string) func(string) string { return func(n string) string { return m[n] } }
	cases := []struct {
		in     inviteInfo
		route  string
		pnid   string
		opaque string
		code   int
	}{
		{inviteInfo{trunk: "pbx", user: "+447700900123", header: hdr(nil), sipCallID: "cid-1"}, "uk", "111", "cid-1", 0},
		{inviteInfo{trunk: "pbx", user: "14085551234", header: hdr(map[string]string{"X-WA-Number": "333", "X-Ticket": "T-9"}), sipCallID: "cid-2"}, "by-header", "333", "T-9", 0},
		{inviteInfo{trunk: "pbx", user: "14085551234", header: hdr(map[string]string{"X-WA-Number": "999"})}, "", "", "", 403},
		{inviteInfo{trunk: "pbx", user: "14085551234", header: hdr(nil)}, "", "", "", 400},
		{inviteInfo{trunk: "pbx2", user: "US.123", header: hdr(nil), sipCallID: "c"}, "other-trunk", "444", "c", 0},
		{inviteInfo{trunk: "pbx3", user: "14085551234", header: hdr(nil)}, "", "", "", 404},
		{inviteInfo{trunk: "pbx", user: "not a number", header: hdr(nil)}, "", "", "", 404},
	}
	for i, tc := range cases {
		oc, ref := routeOutbound(routes, tc.in)
		switch {
		case tc.code != 0 && (ref == nil || ref.code != tc.code):
			t.Errorf("case %d: refusal %v, want %d", i, ref, tc.code)
		case tc.code == 0 && ref != nil:
			t.Errorf("case %d: refused: %v", i, ref)
		case tc.code == 0 && (oc.route.Name != tc.route || oc.pnid != tc.pnid || oc.bizOpaque != tc.opaque):
			t.Errorf("case %d: route %q number %q opaque %q", i, oc.route.Name, oc.pnid, oc.bizOpaque)
		}
	}
	// biz_opaque_callback_data: at most 512 characters, no control characters.
	oc, _ := routeOutbound(routes, inviteInfo{trunk: "pbx", user: "+447700900123", header: hdr(nil), sipCallID: strings.Repeat("é", 600) + "\r\n"})
	if n := len([]rune(oc.bizOpaque)); n != maxBizOpaque || strings.ContainsAny(oc.bizOpaque, "\r\n") {
		t.Errorf("biz opaque of %d characters", n)
	}
}

func TestOutboundConfig(t *testing.T) {
	good := minimal + `
outbound:
  forward_webhooks_url: https://crm.example.com/whatsapp
  routes:
    - {trunk: pbx, phone_number_id: "1", permission: wait, permission_message: "May we call you?"}
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Outbound.Routes[0]
	if r.Name != "outbound#0" || r.PermissionWait != defaultPermissionWait || r.RingTimeout != defaultRingTimeout {
		t.Errorf("defaults %+v", r)
	}
	bad := minimal + `
outbound:
  forward_webhooks_url: "ftp://x"
  routes:
    - {name: a, trunk: nope, phone_number_id: "x1", prefix: "44a", permission: maybe}
    - {name: a, trunk: pbx, permission: wait, permission_wait: 10m, ring_timeout: 1s, phone_number_id_header: "Bad Header"}
`
	_, err = ParseConfig([]byte(bad))
	if err == nil {
		t.Fatal("bad outbound config taken")
	}
	for _, field := range []string{"forward_webhooks_url", "routes[0].trunk", "routes[0].phone_number_id", "routes[0].prefix",
		"routes[0].permission", "routes[1].name", "routes[1].permission_wait", "routes[1].ring_timeout",
		"routes[1].phone_number_id_header", "routes[1].permission:"} {
		if !strings.Contains(err.Error(), "outbound."+field) {
			t.Errorf("no problem named outbound.%s in:\n%v", field, err)
		}
	}
}

func TestRefusalForMeta(t *testing.T) {
	for code, want := range map[int]int{138006: 403, 138009: 403, 138012: 403, 138013: 403, 138014: 503, 131044: 403, 138002: 503, 613: 503, 100: 500, 999999: 500} {
		r := refusalForMeta(code, "detail")
		if r.code != want || r.q850 == 0 || !strings.Contains(r.text, "Meta error") || r.metaCode != code {
			t.Errorf("%d: %+v, want %d", code, r, want)
		}
	}
	if r := refusePermissionTimeout(time.Minute); r.code != 480 || !strings.Contains(r.text, "1m0s") {
		t.Errorf("%+v", r)
	}
}

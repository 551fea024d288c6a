package whatsapp

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
)

// Payload types Meta uses in its offers (whatsapp-calling.md, media rules).
const (
	OpusPayloadType    = 111
	DTMFPayloadType    = 126 // telephone-event/8000
	opusFmtp           = "minptime=10;useinbandfec=1"
	telephoneEventMime = "audio/telephone-event"
	udpMuxBufferSize   = 4 << 20 // bytes, each way, on the shared ICE socket
)

// MediaConfig sets up the WebRTC side shared by every call.
type MediaConfig struct {
	// UDPPort is the one UDP port every call's ICE traffic shares (an ICE UDP
	// mux), so a container exposes a single port.
	UDPPort int
	// ListenIPs restricts the addresses the mux binds on; empty means every
	// non-loopback interface address.
	ListenIPs []string
	// PublicIPs are advertised as host candidates instead of the bound
	// addresses (NAT 1:1): Meta is ICE-lite and only reaches what we announce.
	PublicIPs []string
	Logger    *zap.Logger
}

// Media is the WebRTC stack shared by all calls: one pion API over one UDP mux.
type Media struct {
	api    *webrtc.API
	mux    *ice.MultiUDPMuxDefault
	log    *zap.Logger
	listen []net.Addr
}

// NewMedia binds the ICE UDP port and prepares the pion API that answers
// Meta's offers.
func NewMedia(cfg MediaConfig) (*Media, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 {
		return nil, fmt.Errorf("webrtc udp port %d out of range", cfg.UDPPort)
	}
	var keep map[string]bool
	loopback := false
	if len(cfg.ListenIPs) > 0 {
		keep = map[string]bool{}
		for _, s := range cfg.ListenIPs {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("webrtc listen ip %q is not an IP address", s)
			}
			keep[ip.String()] = true
			loopback = loopback || ip.IsLoopback()
		}
	}
	for _, s := range cfg.PublicIPs {
		if net.ParseIP(s) == nil {
			return nil, fmt.Errorf("webrtc public ip %q is not an IP address", s)
		}
	}
	ipFilter := func(ip net.IP) bool { return keep == nil || keep[ip.String()] }

	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithIPFilter(ipFilter),
		ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
		// Every call's media shares this one socket: at tens of thousands of
		// packets a second the default kernel buffer overflows during a
		// short pause of its reader (measured with wasim load: 0.25 % loss at
		// 500 passthrough calls, 0 % with 4 MiB). The kernel caps the size at
		// net.core.rmem_max / wmem_max.
		ice.UDPMuxFromPortWithReadBufferSize(udpMuxBufferSize),
		ice.UDPMuxFromPortWithWriteBufferSize(udpMuxBufferSize),
	}
	if loopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, opts...)
	if err != nil {
		return nil, fmt.Errorf("webrtc: bind ICE UDP port %d: %w", cfg.UDPPort, err)
	}
	listen := mux.GetListenAddresses()
	if len(listen) == 0 {
		_ = mux.Close()
		return nil, errors.New("webrtc: no address to bind the ICE UDP port on (check webrtc.listen_ips)")
	}

	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	se.SetIPFilter(ipFilter)
	se.SetIncludeLoopbackCandidate(loopback)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	// Meta expects the business to be the DTLS client: a=setup:active
	// (media-stack.md, traps).
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
		_ = mux.Close()
		return nil, fmt.Errorf("webrtc: dtls role: %w", err)
	}

	me := &webrtc.MediaEngine{}
	codecs := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: opusFmtp}, PayloadType: OpusPayloadType},
		// Only telephone-event/8000: Meta sends DTMF on 126/8000, and a
		// browser offering 48000 too then also sends its digits on 126.
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: telephoneEventMime, ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: DTMFPayloadType},
	}
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			_ = mux.Close()
			return nil, fmt.Errorf("webrtc: register %s: %w", c.MimeType, err)
		}
	}
	// RTCP sender and receiver reports only: no NACK buffers, no TWCC, so the
	// media path keeps no per-packet copies.
	reg := &interceptor.Registry{}
	rr, err := report.NewReceiverInterceptor()
	if err == nil {
		reg.Add(rr)
	}
	sr, err2 := report.NewSenderInterceptor()
	if err2 == nil {
		reg.Add(sr)
	}
	if err := errors.Join(err, err2); err != nil {
		_ = mux.Close()
		return nil, fmt.Errorf("webrtc: rtcp report interceptors: %w", err)
	}

	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg))
	addrs := make([]string, len(listen))
	for i, a := range listen {
		addrs[i] = a.String()
	}
	log.Info("webrtc media ready", zap.Strings("ice_udp", addrs), zap.Strings("public_ips", cfg.PublicIPs))
	return &Media{api: api, mux: mux, log: log, listen: listen}, nil
}

// ListenAddrs are the bound ICE UDP addresses.
func (m *Media) ListenAddrs() []net.Addr { return m.listen }

// Close releases the shared UDP port. Close every Leg first.
func (m *Media) Close() error { return m.mux.Close() }

// normalizeSDP makes an SDP from a JSON webhook parseable whatever its line
// ends: pion wants CRLF.
func normalizeSDP(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

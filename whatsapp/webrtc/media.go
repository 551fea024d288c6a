package webrtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/internal/rawudp"
	"github.com/wagateway/wagateway/whatsapp/webrtc/dtlssrtp"
)

const (
	// opusFmtp is what our SDP, answer or offer, asks of the peer's Opus
	// (RFC 7587 §7): 10 ms packets at the least, in-band FEC.
	opusFmtp         = "minptime=10;useinbandfec=1"
	udpMuxBufferSize = 4 << 20 // bytes, each way, on each shared ICE socket
)

// MediaConfig sets up the WebRTC side shared by every call.
type MediaConfig struct {
	// UDPPort is the one UDP port every call's ICE traffic shares, so a
	// container exposes a single port. 0 picks a free one (tests).
	UDPPort int
	// ListenIPs restricts the addresses bound; empty means every
	// non-loopback interface address.
	ListenIPs []string
	// PublicIPs are advertised as host candidates instead of the bound
	// addresses (NAT 1:1), one per address family: Meta is ICE-lite and only
	// reaches what we announce.
	PublicIPs []string
	Logger    *zap.Logger
}

// Media is the WebRTC side shared by all calls: the ICE sockets (one per
// listen address, all on one port), the STUN demultiplexer, and the DTLS
// certificate every leg presents.
type Media struct {
	sockets    []*iceSocket
	advertised []netip.Addr // per socket: the address put in our candidates
	mux        *legMux
	cert       *dtlssrtp.Certificate
	timing     iceTiming     // every leg's ICE agent's
	tieBreaker func() uint64 // every ICE agent's tie-breaker (tests fix it); nil: random
	log        *zap.Logger
	listen     []net.Addr
}

// NewMedia binds the ICE UDP port on every listen address.
func NewMedia(cfg MediaConfig) (*Media, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 {
		return nil, fmt.Errorf("webrtc udp port %d out of range", cfg.UDPPort)
	}
	ips, err := listenAddrs(cfg.ListenIPs)
	if err != nil {
		return nil, err
	}
	var public []netip.Addr
	for _, s := range cfg.PublicIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("webrtc public ip %q is not an IP address", s)
		}
		public = append(public, ip.Unmap())
	}
	cert, err := dtlssrtp.NewCertificate("wagateway")
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	m := &Media{mux: newLegMux(), cert: cert, timing: defaultICETiming(), log: log}
	port := cfg.UDPPort
	for _, ip := range ips {
		conn, err := rawudp.Listen(net.IP(ip.AsSlice()), port)
		if err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("webrtc: bind ICE UDP port %d on %s: %w", port, ip, err)
		}
		// Every call's media shares these sockets: at tens of thousands of
		// packets a second the default kernel buffer overflows during a
		// short pause of the reader (measured with wasim load: 0.25 % loss at
		// 500 passthrough calls, 0 % with 4 MiB). The kernel caps the size at
		// net.core.rmem_max / wmem_max.
		_ = conn.SetBuffers(udpMuxBufferSize, udpMuxBufferSize)
		s, err := newICESocket(conn, m.mux, log)
		if err != nil {
			_ = conn.Close()
			_ = m.Close()
			return nil, fmt.Errorf("webrtc: ICE UDP port %d on %s: %w", port, ip, err)
		}
		port = int(s.local.Port()) // with port 0, the others follow the first
		m.sockets = append(m.sockets, s)
		m.listen = append(m.listen, conn.LocalAddr())
		m.advertised = append(m.advertised, advertise(ip, public))
	}
	addrs := make([]string, len(m.listen))
	for i, a := range m.listen {
		addrs[i] = a.String()
	}
	log.Info("webrtc media ready", zap.Strings("ice_udp", addrs), zap.Strings("public_ips", cfg.PublicIPs))
	return m, nil
}

// listenAddrs are the configured addresses, or every up interface's
// non-loopback, non-link-local address.
func listenAddrs(configured []string) ([]netip.Addr, error) {
	var ips []netip.Addr
	if len(configured) > 0 {
		for _, s := range configured {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("webrtc listen ip %q is not an IP address", s)
			}
			ips = append(ips, ip.Unmap())
		}
		return ips, nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("webrtc: list interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr().Unmap()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
				continue
			}
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("webrtc: no address to bind the ICE UDP port on (check webrtc.listen_ips)")
	}
	return ips, nil
}

// advertise is the public address of ip's family if one is configured
// (NAT 1:1), else ip itself.
func advertise(ip netip.Addr, public []netip.Addr) netip.Addr {
	for _, p := range public {
		if p.Is4() == ip.Is4() {
			return p
		}
	}
	return ip
}

// Close releases the shared UDP port. Close every Leg first.
// PolledSocket is one of the ICE sockets as a media worker polls and reads
// it (rtpbridge.SharedSocket): every call's WebRTC media arrives on them.
type PolledSocket interface {
	SyscallConn() (syscall.RawConn, error)
	TryRead()
	SetPolled(on bool)
}

// Sockets are the ICE sockets, for media workers to read while they have
// calls (until then, and after, each socket's own goroutine does).
func (m *Media) Sockets() []PolledSocket {
	out := make([]PolledSocket, len(m.sockets))
	for i, s := range m.sockets {
		out[i] = s
	}
	return out
}

func (m *Media) Close() error {
	var errs []error
	for _, s := range m.sockets {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

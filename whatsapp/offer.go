package whatsapp

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/wagateway/wagateway/whatsapp/dtlssrtp"
)

// offer is what the gateway needs of the caller's SDP offer: Meta's (one
// audio m-line, ICE-lite, host candidates, DTLS actpass, Opus 111 and
// telephone-event 126; whatsapp-calling.md, media rules), or a browser's.
type offer struct {
	mid         string
	ufrag, pwd  string
	fingerprint []byte // sha-256 of the caller's DTLS certificate
	lite        bool   // a=ice-lite: the caller only answers checks, so we control (RFC 8445 §6.1.1)
	candidates  []netip.AddrPort
	opusPT      uint8
	dtmfPT      uint8 // telephone-event/8000; 0 if none
	proto       string
	others      []string // the m-lines after the audio one, answered rejected (port 0)
}

// parseOffer reads an offer, at session or media level as the attributes
// come. The first audio m-line is the call's; its attributes win over the
// session's.
func parseOffer(sdp string) (*offer, error) {
	o := &offer{}
	var sessFP, mediaFP, sessUfrag, sessPwd string
	var cands []candidate
	var connAddr netip.Addr
	var mPort int
	section := "session" // "session", "audio" (ours), "other"
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if m, ok := strings.CutPrefix(line, "m="); ok {
			f := strings.Fields(m)
			if len(f) < 4 {
				return nil, fmt.Errorf("offer: bad m-line %q", line)
			}
			if f[0] == "audio" && o.proto == "" {
				section, o.proto = "audio", f[2]
				mPort, _ = strconv.Atoi(f[1])
				continue
			}
			section = "other"
			o.others = append(o.others, f[0]+" 0 "+f[2]+" "+f[3])
			continue
		}
		if section == "other" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "c=IN "); ok && section == "audio" {
			if f := strings.Fields(c); len(f) == 2 {
				connAddr, _ = netip.ParseAddr(f[1])
			}
			continue
		}
		a, ok := strings.CutPrefix(line, "a=")
		if !ok {
			continue
		}
		name, val, _ := strings.Cut(a, ":")
		switch name {
		case "ice-lite":
			o.lite = true
		case "ice-ufrag":
			if section == "audio" {
				o.ufrag = val
			} else {
				sessUfrag = val
			}
		case "ice-pwd":
			if section == "audio" {
				o.pwd = val
			} else {
				sessPwd = val
			}
		case "fingerprint":
			if section == "audio" {
				mediaFP = val
			} else {
				sessFP = val
			}
		case "mid":
			if section == "audio" {
				o.mid = val
			}
		case "setup":
			if val == "active" {
				// The caller wants to be the DTLS client; Meta offers actpass
				// and expects the business to be the client.
				return nil, errors.New("offer: a=setup:active (the caller as DTLS client) is not supported")
			}
		case "candidate":
			if c, ok := parseCandidate(val); ok && section == "audio" {
				cands = append(cands, c)
			}
		case "rtpmap":
			if section != "audio" {
				continue
			}
			pt, enc, _ := strings.Cut(val, " ")
			n, err := strconv.Atoi(pt)
			if err != nil || n < 0 || n > 127 {
				continue
			}
			switch strings.ToLower(enc) {
			case "opus/48000/2":
				if o.opusPT == 0 {
					o.opusPT = uint8(n)
				}
			case "telephone-event/8000":
				if o.dtmfPT == 0 {
					o.dtmfPT = uint8(n)
				}
			}
		}
	}
	if o.proto == "" {
		return nil, errors.New("offer has no audio m-line")
	}
	if !strings.Contains(o.proto, "SAVP") {
		return nil, fmt.Errorf("offer: audio is %s, not DTLS-SRTP", o.proto)
	}
	if o.opusPT == 0 {
		return nil, errors.New("offer has no opus/48000/2")
	}
	if o.ufrag == "" {
		o.ufrag = sessUfrag
	}
	if o.pwd == "" {
		o.pwd = sessPwd
	}
	if o.ufrag == "" || o.pwd == "" {
		return nil, errors.New("offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
	}
	fp := mediaFP
	if fp == "" {
		fp = sessFP
	}
	if fp == "" {
		return nil, errors.New("offer has no a=fingerprint")
	}
	var err error
	if o.fingerprint, err = dtlssrtp.ParseFingerprint(fp); err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	// Highest priority first (RFC 8445 §6.1.2.6); the m/c-line address only
	// when there is no candidate at all.
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].priority > cands[j].priority })
	for _, c := range cands {
		o.candidates = append(o.candidates, c.addr)
	}
	if len(o.candidates) == 0 && connAddr.IsValid() && !connAddr.IsUnspecified() && mPort > 0 {
		o.candidates = append(o.candidates, netip.AddrPortFrom(connAddr, uint16(mPort)))
	}
	if len(o.candidates) == 0 {
		return nil, errors.New("offer has no UDP candidate we can use")
	}
	return o, nil
}

type candidate struct {
	addr     netip.AddrPort
	priority uint32
}

// parseCandidate reads "foundation component transport priority address
// port typ type …" (RFC 8839 §5.1). Only RTP-component UDP candidates with
// an IP literal are used (Meta sends host candidates; mDNS names and TCP
// are not).
func parseCandidate(v string) (candidate, bool) {
	f := strings.Fields(v)
	if len(f) < 8 || f[1] != "1" || !strings.EqualFold(f[2], "udp") {
		return candidate{}, false
	}
	prio, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return candidate{}, false
	}
	ip, err := netip.ParseAddr(f[4])
	if err != nil {
		return candidate{}, false
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil || port == 0 {
		return candidate{}, false
	}
	return candidate{addr: netip.AddrPortFrom(ip.Unmap(), uint16(port)), priority: uint32(prio)}, true
}

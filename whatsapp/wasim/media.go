package wasim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/rtpbridge/opus"
	"github.com/wagateway/wagateway/whatsapp/rtptrack"
)

// What Meta offers (Meta, WhatsApp Cloud API Calling,
// https://developers.facebook.com/docs/whatsapp/cloud-api/calling/).
const (
	opusPT        = 111
	dtmfPT        = 126
	opusFmtp      = "minptime=10;useinbandfec=1"
	rtpClock      = 48000
	gatherTimeout = 5 * time.Second
	// maxPacerLag is how far the sender catches up after a stall.
	maxPacerLag = 200 * time.Millisecond
	// dropBurstLen is how many packets DropBurstAt drops in a row.
	dropBurstLen = 5
	// maxWAVSeconds bounds the WAV audio encoded for a call.
	maxWAVSeconds = 120
	toneAmplitude = 8000 // about -15 dBFS RMS
)

// newPeerConnection builds a PeerConnection that behaves like Meta's media
// leg: ICE-lite, host candidates on the media IP only, no mDNS, Opus/111,
// the G.711 codecs g711 on their static numbers (the number's
// audio.additional_codecs; g711.go) and telephone-event/126 only, ICE
// credentials shaped like Meta's (ufrag with '/'). answerRole is the DTLS
// role it takes when it answers (a business-initiated call): client
// (a=setup:active, Meta's) or server (a=setup:passive); DTLSRoleAuto when
// it offers.
func (s *Sim) newPeerConnection(answerRole webrtc.DTLSRole, g711 ...string) (*webrtc.PeerConnection, error) {
	se := webrtc.SettingEngine{}
	se.SetLite(true)
	if answerRole != webrtc.DTLSRoleAuto {
		if err := se.SetAnsweringDTLSRole(answerRole); err != nil {
			return nil, fmt.Errorf("wasim: dtls role: %w", err)
		}
	}
	ip := s.mediaIP
	se.SetIPFilter(func(x net.IP) bool { return x.Equal(ip) })
	se.SetInterfaceFilter(func(name string) bool { return interfaceHas(name, ip) })
	if ip.To4() != nil {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP6})
	}
	se.SetIncludeLoopbackCandidate(ip.IsLoopback())
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICECredentials(randomAlnum(12)+"/"+randomAlnum(1), randomAlnum(24))

	me := &webrtc.MediaEngine{}
	codecs := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: rtpClock, Channels: 2, SDPFmtpLine: opusFmtp}, PayloadType: opusPT},
	}
	for _, name := range g711 {
		codecs = append(codecs, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/" + name, ClockRate: 8000}, PayloadType: webrtc.PayloadType(g711PT(name))})
	}
	codecs = append(codecs, webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: dtmfPT})
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("wasim: register %s: %w", c.MimeType, err)
		}
	}
	reg := &interceptor.Registry{}
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return nil, err
	}
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	reg.Add(rr)
	reg.Add(sr)
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg))
	return api.NewPeerConnection(webrtc.Configuration{})
}

// interfaceHas keeps only the interface holding ip, so pion never even looks
// at the others.
func interfaceHas(name string, ip net.IP) bool {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false
	}
	addrs, err := ifi.Addrs()
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

// pairSelected notes the addresses (local-remote) of a pair pion reports
// selected: after the first, another is a switch, which Meta forbids. The
// same addresses may be reported again (seen once in some hundreds of test
// calls): the gateway's checks start before its answer reaches the
// simulator, so pion may first know the gateway's address as a
// peer-reflexive candidate and then as the answer's host one. That is the
// same path, not a switch.
func (c *Call) pairSelected(pair string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.selectedPair {
	case "":
		c.selectedPair = pair
	case pair:
	default:
		c.violationLocked("ice: the selected candidate pair changed mid-call (Meta: never switch pairs)")
	}
}

// setupMedia creates the call's PeerConnection with one sendrecv audio
// transceiver and gathers candidates completely (Meta does not trickle). It
// returns the offer as posted in the connect webhook.
func (c *Call) setupMedia(ctx context.Context) (string, error) {
	pc, err := c.sim.newPeerConnection(webrtc.DTLSRoleAuto, c.sim.additionalCodecs(c.sim.cfg.PhoneNumberID)...)
	if err != nil {
		return "", fmt.Errorf("wasim: peer connection: %w", err)
	}
	c.pc = pc
	track := rtptrack.New("WhatsAppTrack1", "WhatsAppMedia")
	c.track = track
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		return "", fmt.Errorf("wasim: transceiver: %w", err)
	}
	c.watchMedia(tr.Sender())

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("wasim: create offer: %w", err)
	}
	return c.gather(ctx, offer)
}

// watchMedia hooks the call's handlers to its PeerConnection: connection
// state, the business's track and RTCP, the selected ICE pair.
func (c *Call) watchMedia(sender *webrtc.RTPSender) {
	pc := c.pc
	pc.OnConnectionStateChange(c.onConnectionState)
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		if c.mediaGo() {
			go func() {
				defer c.mediaWG.Done()
				c.readRTCP(r)
			}()
		}
		if !c.mediaGo() {
			return
		}
		defer c.mediaWG.Done()
		c.receive(t)
	})
	if ice := sender.Transport().ICETransport(); ice != nil {
		ice.OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
			c.log.Debug("ice pair selected", zap.Stringer("pair", p))
			c.pairSelected(fmt.Sprintf("%s:%d-%s:%d", p.Local.Address, p.Local.Port, p.Remote.Address, p.Remote.Port))
		})
	}
	// RTCP from the business: drain it so the report interceptors see it.
	if c.mediaGo() {
		go func() {
			defer c.mediaWG.Done()
			for {
				if _, _, err := sender.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
}

// readRTCP reads the RTCP the business sends about its own stream (sender
// reports, BYE) and notes its first BYE.
func (c *Call) readRTCP(r *webrtc.RTPReceiver) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if _, ok := p.(*rtcp.Goodbye); ok {
				c.mu.Lock()
				if c.byeAt.IsZero() {
					c.byeAt = time.Now()
				}
				c.mu.Unlock()
			}
		}
	}
}

// gather sets desc as the local description, waits for every candidate
// and returns the description in Meta's shape.
func (c *Call) gather(ctx context.Context, desc webrtc.SessionDescription) (string, error) {
	pc := c.pc
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("wasim: set local %s: %w", desc.Type, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(gatherTimeout):
		return "", errors.New("wasim: ICE gathering did not complete")
	}
	sdp := pc.LocalDescription().SDP
	if !strings.Contains(sdp, "a=candidate:") {
		return "", fmt.Errorf("wasim: no host candidate gathered on media ip %s", c.sim.mediaIP)
	}
	return metaStyleOffer(sdp), nil
}

// metaStyleOffer rewrites pion's offer (or answer) into the shape of Meta's
// where a parser could notice: CRLF line ends; the fingerprint at media level; the
// m= port and c= address of the host candidate (not 9 and 0.0.0.0); only
// component-1 candidates (rtcp-mux); no trickle, end-of-candidates, cryptex
// or extmap-allow-mixed lines, which Meta does not send. pion's own local
// description is left as it was: none of this changes the negotiation.
func metaStyleOffer(sdp string) string {
	lines := strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n")
	var session, media []string
	var fingerprint, ip, port string
	inMedia := false
	for _, l := range lines {
		switch {
		case l == "", strings.HasPrefix(l, "a=ice-options:"), l == "a=end-of-candidates",
			l == "a=cryptex", l == "a=extmap-allow-mixed":
			continue
		case strings.HasPrefix(l, "m="):
			inMedia = true
		case strings.HasPrefix(l, "a=fingerprint:") && !inMedia:
			fingerprint = l
			continue
		case strings.HasPrefix(l, "a=candidate:"):
			f := strings.Fields(l)
			if len(f) < 8 || f[1] != "1" {
				continue
			}
			if ip == "" {
				ip, port = f[4], f[5]
			}
		}
		if inMedia {
			media = append(media, l)
		} else {
			session = append(session, l)
		}
	}
	out := session
	for _, l := range media {
		switch {
		case strings.HasPrefix(l, "m=audio ") && port != "":
			if f := strings.Fields(l); len(f) > 2 {
				f[1] = port
				l = strings.Join(f, " ")
			}
		case strings.HasPrefix(l, "c=IN ") && ip != "":
			if strings.Contains(ip, ":") {
				l = "c=IN IP6 " + ip
			} else {
				l = "c=IN IP4 " + ip
			}
		}
		out = append(out, l)
		if strings.HasPrefix(l, "a=ice-pwd:") && fingerprint != "" {
			out = append(out, fingerprint)
			fingerprint = ""
		}
	}
	if fingerprint != "" { // no ice-pwd line: keep it at session level
		out = append(out[:len(session):len(session)], append([]string{fingerprint}, out[len(session):]...)...)
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

// mediaGo registers one media goroutine unless media is already closed.
func (c *Call) mediaGo() bool {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	if c.mediaClosed {
		return false
	}
	c.mediaWG.Add(1)
	return true
}

// closeMedia closes the PeerConnection and waits for every media goroutine.
func (c *Call) closeMedia() {
	c.mediaMu.Lock()
	c.mediaClosed = true
	c.mediaMu.Unlock()
	if c.pc != nil {
		if err := c.pc.Close(); err != nil {
			c.log.Debug("close peer connection", zap.Error(err))
		}
	}
	c.mediaWG.Wait()
}

func (c *Call) onConnectionState(st webrtc.PeerConnectionState) {
	c.log.Debug("media state", zap.Stringer("state", st))
	switch st {
	case webrtc.PeerConnectionStateConnected:
		c.connectedOnce.Do(func() {
			c.mu.Lock()
			c.rep.MediaUpAt = time.Now()
			c.mu.Unlock()
			close(c.connected)
		})
	case webrtc.PeerConnectionStateFailed:
		c.finish(endSpec{outcome: OutcomeMediaFailed, status: statusFailed, webhook: true,
			code: 138020, message: "Relay connection failed", details: "ICE/DTLS with the business failed"})
	}
}

// send plays the call's pre-encoded audio loop toward the business, one
// packet per frame: one SSRC, seq +1, timestamp += frame samples.
// It starts once the connection is up; with a Duration it hangs up after
// that long.
func (c *Call) send() {
	defer c.mediaWG.Done()
	select {
	case <-c.connected:
	case <-c.endCh:
		return
	}
	loop := c.loop
	audioPT, codec := c.audio()
	if codec != "opus" { // the business answered G.711: the same audio in it
		l, err := c.sim.loopFor(loopKey{tone: c.opts.ToneHz, wav: c.opts.WAVFile, frameMs: c.opts.FrameMs, g711: codec})
		if err != nil {
			c.log.Error("g711 audio", zap.Error(err))
			return
		}
		loop = l
	}
	frame := time.Duration(c.opts.FrameMs) * time.Millisecond
	// Paced by the clock, not by ticks: a late wake-up sends the packets
	// that are due at once, so the rate holds on a busy machine; after a
	// stall of more than maxPacerLag the schedule restarts from now.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	seq := uint16(mrand.Uint32())
	ts := mrand.Uint32()
	next := time.Now()
	var hangupAt time.Time
	if c.opts.Duration > 0 {
		hangupAt = next.Add(c.opts.Duration)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: audioPT, Marker: true}}
	var digits *dtmfPlan
	if c.dtmfPT != 0 {
		digits = newDTMFPlan(c.opts.Digits, c.opts.DigitsAfter, frame)
	}
	dtmfPayload := make([]byte, 4)
	var eventTS uint32
	for n := 1; ; n++ {
		pkt.SequenceNumber, pkt.Timestamp = seq, ts
		pkt.PayloadType = audioPT
		pkt.Payload = loop.frames[(n-1)%len(loop.frames)]
		if k, ok := digits.packet(n, dtmfPayload); ok {
			if k == 0 {
				eventTS = ts
			}
			pkt.PayloadType, pkt.Payload, pkt.Marker, pkt.Timestamp = c.dtmfPT, dtmfPayload, k == 0, eventTS
		}
		if c.dropPacket(n) {
			c.mu.Lock()
			c.rep.PacketsDropped++
			c.mu.Unlock()
		} else {
			pkt.SSRC = c.track.SSRC()
			if _, err := c.track.WriteRTP(&pkt.Header, pkt.Payload); err != nil {
				return
			}
			c.mu.Lock()
			c.rep.PacketsSent++
			if c.rep.FirstSentAt.IsZero() {
				c.rep.FirstSentAt = time.Now()
			}
			c.mu.Unlock()
		}
		pkt.Marker = false
		seq++
		ts += loop.step
		now := time.Now()
		if !hangupAt.IsZero() && !now.Before(hangupAt) {
			c.userHangup()
			return
		}
		next = next.Add(frame)
		if now.Sub(next) > maxPacerLag {
			next = now
		}
		if wait := next.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.endCh:
				return
			}
		} else {
			select {
			case <-c.endCh:
				return
			default:
			}
		}
	}
}

func (c *Call) dropPacket(n int) bool {
	if b := c.opts.DropBurstAt; b > 0 && n >= b && n < b+dropBurstLen {
		return true
	}
	return c.opts.DropPercent > 0 && mrand.Float64()*100 < c.opts.DropPercent
}

// receive reads what the business sends on one remote track: counts,
// sequence gaps, DTMF, and decodes Opus at 16 kHz into a bounded buffer
// (on a business-initiated call, from the user's answer on: before it the
// user hears nothing).
func (c *Call) receive(t *webrtc.TrackRemote) {
	dec, err := opus.NewDecoder(analysisRate)
	if err != nil {
		c.log.Error("opus decoder", zap.Error(err))
		return
	}
	defer dec.Close()
	pcm := make([]int16, analysisRate*120/1000)
	narrow := make([]int16, 8000*120/1000) // G.711, before its upsampling
	for {
		p, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		c.mu.Lock()
		c.countReceived(p, now)
		c.mu.Unlock()
		audioPT, codec := c.audio()
		if p.PayloadType != audioPT || len(p.Payload) == 0 {
			continue
		}
		var n int
		if codec != "opus" {
			if len(p.Payload) > len(narrow) {
				continue
			}
			decodeG711(codec, p.Payload, narrow[:len(p.Payload)])
			upsample2(narrow[:len(p.Payload)], pcm)
			n = 2 * len(p.Payload)
		} else {
			n, err = dec.Decode(p.Payload, pcm)
		}
		c.mu.Lock()
		if err != nil {
			c.rep.DecodeErrors++
		} else if c.bic != nil && c.rep.AcceptAt.IsZero() {
			// ringback or silence while the phone rings: not heard
		} else if room := maxReceivedSamples - len(c.pcm); room > 0 {
			c.pcm = append(c.pcm, pcm[:min(n, room)]...)
		}
		c.mu.Unlock()
	}
}

// seqState follows one SSRC's sequence numbers.
type seqState struct {
	last uint16
}

// countReceived updates the receive statistics; c.mu is held.
func (c *Call) countReceived(p *rtp.Packet, now time.Time) {
	r := &c.rep
	r.PacketsReceived++
	switch {
	case c.bic != nil:
		// Meta's SIP mode: "the business sends the first SRTP packet";
		// media may flow once ICE and DTLS are up, the user hears it once
		// they answer.
		if r.AcceptAt.IsZero() {
			r.PacketsBeforeAnswer++
		}
	case c.state != StateAccepted && c.state != StateEnded && !c.flaggedEarlyMedia:
		c.flaggedEarlyMedia = true
		c.violationLocked(fmt.Sprintf("media: the business sent RTP before accept returned 200 (state %s)", c.state))
	}
	if r.FirstMediaAt.IsZero() {
		r.FirstMediaAt = now
	} else if gap := now.Sub(c.lastRecv); gap > r.LongestSilenceGap {
		r.LongestSilenceGap = gap
	}
	c.lastRecv = now
	audioPT := c.opusPT
	if c.g711 != "" {
		audioPT = g711PT(c.g711)
	}
	switch {
	case p.PayloadType == audioPT:
	case p.PayloadType == c.dtmfPT && c.dtmfPT != 0:
		r.DTMFPacketsReceived++
		c.dtmfIn.add(p.Timestamp, p.Payload)
		r.DigitsReceived = string(c.dtmfIn.digits)
	default:
		if !c.flaggedPT {
			c.flaggedPT = true
			c.violationLocked(fmt.Sprintf("media: payload type %d received; the call negotiated only %d (audio) and %d (telephone-event)", p.PayloadType, audioPT, c.dtmfPT))
		}
	}
	st, ok := c.ssrcs[p.SSRC]
	if !ok {
		c.ssrcs[p.SSRC] = &seqState{last: p.SequenceNumber}
		return
	}
	d := p.SequenceNumber - st.last
	switch {
	case d == 0 || d >= 0x8000: // duplicate or late
	case d > 1000:
		r.SeqGaps += int(d) - 1
		c.violationLocked(fmt.Sprintf("media: sequence number jumped by %d (Meta wants continuous sequence numbers)", d))
		st.last = p.SequenceNumber
	default:
		r.SeqGaps += int(d) - 1
		st.last = p.SequenceNumber
	}
}

// loopKey identifies one pre-encoded audio loop; calls with the same audio
// options share it.
type loopKey struct {
	tone    float64
	wav     string
	frameMs int
	g711    string // "PCMU" or "PCMA": the audio in that law at 8 kHz; "": Opus
}

// audioLoop is the caller's audio, Opus- (or G.711-) encoded once and
// replayed.
type audioLoop struct {
	frames [][]byte
	step   uint32 // RTP timestamp increment per frame (48 kHz clock; 8 kHz for G.711)
}

func (s *Sim) loopFor(k loopKey) (*audioLoop, error) {
	s.mu.Lock()
	l := s.loops[k]
	s.mu.Unlock()
	if l != nil {
		return l, nil
	}
	l, err := buildLoop(k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if prev := s.loops[k]; prev != nil {
		l = prev
	} else {
		s.loops[k] = l
	}
	s.mu.Unlock()
	return l, nil
}

// buildLoop encodes the caller's audio: a second of tone (encoded twice,
// keeping the second pass, so the encoder state is continuous across the
// loop point) or a WAV file (at its own rate when Opus supports it, else
// linearly resampled to 48 kHz).
func buildLoop(k loopKey) (*audioLoop, error) {
	rate := rtpClock
	if k.g711 != "" {
		rate = 8000
	}
	var pcm []int16
	passes := 1
	if k.wav != "" {
		p, r, err := audio.ReadWAV(k.wav)
		if err != nil {
			return nil, fmt.Errorf("wasim: wav %s: %w", k.wav, err)
		}
		if r <= 0 || len(p) == 0 {
			return nil, fmt.Errorf("wasim: wav %s holds no audio", k.wav)
		}
		switch {
		case k.g711 != "" && r != 8000:
			p, r = resampleLinear(p, r, 8000), 8000
		case k.g711 != "":
		case r == 8000, r == 12000, r == 16000, r == 24000, r == 48000:
		default:
			p, r = resampleLinear(p, r, rtpClock), rtpClock
		}
		if len(p) > maxWAVSeconds*r {
			p = p[:maxWAVSeconds*r]
		}
		pcm, rate = p, r
	} else {
		// Whole seconds (whole cycles of an integer-Hz tone) and whole
		// frames: 1 s, or 3 s for 60 ms frames.
		loopMs := 1000
		for loopMs%k.frameMs != 0 {
			loopMs += 1000
		}
		pcm = make([]int16, rate*loopMs/1000)
		audio.NewTone(k.tone, rate, toneAmplitude).Fill(pcm)
		passes = 2
	}
	spf := rate * k.frameMs / 1000
	if r := len(pcm) % spf; r != 0 {
		pcm = append(pcm, make([]int16, spf-r)...)
	}
	if k.g711 != "" { // one byte a sample, no state
		l := &audioLoop{step: uint32(spf)}
		for i := 0; i+spf <= len(pcm); i += spf {
			f := make([]byte, spf)
			encodeG711(k.g711, pcm[i:i+spf], f)
			l.frames = append(l.frames, f)
		}
		return l, nil
	}
	enc, err := opus.NewEncoder(rate, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	if err := errors.Join(enc.SetInbandFEC(true), enc.SetComplexity(5), enc.SetBitrate(32000)); err != nil {
		return nil, err
	}
	nf := len(pcm) / spf
	l := &audioLoop{step: uint32(rtpClock * k.frameMs / 1000), frames: make([][]byte, 0, nf)}
	buf := make([]byte, 1500)
	for pass := 0; pass < passes; pass++ {
		l.frames = l.frames[:0]
		for i := 0; i < nf; i++ {
			n, err := enc.Encode(pcm[i*spf:(i+1)*spf], buf)
			if err != nil {
				return nil, fmt.Errorf("wasim: opus encode: %w", err)
			}
			l.frames = append(l.frames, append([]byte(nil), buf[:n]...))
		}
	}
	return l, nil
}

// resampleLinear converts pcm from rate `from` to `to` by linear interpolation;
// good enough for test speech and tones.
func resampleLinear(pcm []int16, from, to int) []int16 {
	n := int(int64(len(pcm)) * int64(to) / int64(from))
	out := make([]int16, n)
	for i := range out {
		pos := float64(i) * float64(from) / float64(to)
		j := int(pos)
		if j+1 >= len(pcm) {
			out[i] = pcm[len(pcm)-1]
			continue
		}
		f := pos - float64(j)
		out[i] = int16(float64(pcm[j])*(1-f) + float64(pcm[j+1])*f)
	}
	return out
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomAlnum(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alnum)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			v = big.NewInt(int64(mrand.IntN(len(alnum))))
		}
		b[i] = alnum[v.Int64()]
	}
	return string(b)
}

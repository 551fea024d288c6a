package wasim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/zap"

	"github.com/wagateway/wagateway/rtpbridge/opus"
	"github.com/wagateway/wagateway/whatsapp/webrtc/dtlssrtp"
)

// A load run places many simulated calls through the gateway at a given
// rate, holds them all up together for a while, then hangs them up, and
// measures what the gateway did to them. Each call is a real Cloud API call
// as far as the gateway can tell (signed connect webhook, Graph actions
// checked against Meta's rules, ICE-lite + DTLS-SRTP + Opus on its own
// socket), but its media side is the lite leg (lite.go) and its audio is
// encoded once for the whole run (loadaudio.go), so the generator costs far
// less than the gateway it measures.
//
// Sending: one goroutine sends every call's packets. A call is given one of
// 20 slots of 1 ms in the 20 ms frame period, so the gateway gets a steady
// stream rather than a burst every 20 ms; the schedule is kept by the clock
// (a late wake-up sends what is due at once) and every packet's lateness
// against it is recorded (the generator's own health).
//
// Measuring, per call, on the leg's reader goroutine, with kernel receive
// timestamps:
//   - toward WhatsApp, every packet: loss (sequence gaps), duplicates, and
//     its lateness: arrival minus its place on the gateway's 20 ms schedule
//     (RTP timestamp / 48 kHz from the call's earliest packet). This is the
//     delay the gateway added to that packet beyond its best, whatever the
//     cause (pacer wake-up, CPU, socket queues);
//   - the round trip WhatsApp → gateway → PBX echo → gateway → WhatsApp, by
//     latency markers: every MarkerEvery the caller's tone stops for 120 ms
//     and comes back; the receiver times the tone's return. Transcoded
//     calls decode only the few packets around the expected return (a
//     cheap energy detector); Opus passthrough calls carry the caller's
//     packets back byte for byte, so the onset packet is found by comparing
//     bytes and nothing is decoded; G.711 calls (the callers offered it,
//     the gateway picked it) are read through the G.711 tables. The simulator's own codec delay (found
//     once by decoding the marker locally) is taken off.
//   - added latency, per marker: half of (its round trip − the call's best
//     round trip). A call's best round trip holds the gateway's designed
//     delay, which is fixed for the call (codec look-ahead, and the wait
//     for its pacer's next tick: 0-20 ms by the phase of the call's pacer
//     against the caller's packets, plus the playout buffer's margin);
//     what comes on top of it is what load added, both ways, halved. A
//     playout buffer that grows by a frame after late packets shows as
//     10 ms added.

// LoadOptions shape a load run.
type LoadOptions struct {
	Calls int           // calls placed in all (and held up together)
	Rate  float64       // calls placed per second
	Hold  time.Duration // how long every call stays up together once the last is bridged
	// HangupRate is how many calls hang up per second at the end (default Rate).
	HangupRate float64
	ToneHz     float64 // the caller's tone (default 1000 Hz, 300-2000)
	// MarkerEvery is how often each call sends a latency marker (whole
	// seconds, default 2 s; negative: no markers).
	MarkerEvery time.Duration
	// LateAfter: a packet toward WhatsApp more than this behind its
	// schedule counts as late (default 20 ms, one frame).
	LateAfter time.Duration
	// SetupTimeout bounds the wait for a call to be bridged (default 30 s).
	SetupTimeout time.Duration
	// Watch lists processes whose CPU and memory are read from /proc.
	Watch []WatchedProcess
	// Progress, if set, gets one line per phase.
	Progress io.Writer
	// PerCall adds every call's own figures to the report.
	PerCall bool
}

// WatchedProcess names a process to measure.
type WatchedProcess struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

const (
	loadSlots        = loadFrameMs // 1 ms slots in the frame period
	markerDetectFrom = 60 * time.Millisecond
	markerMaxRTT     = time.Second
	loadMonitorTick  = 200 * time.Millisecond
	hangupConcurrent = 64
)

// Failure reasons beside the Outcome… constants.
const (
	reasonPlaceError   = "place_error"
	reasonSetupTimeout = "setup_timeout"
	reasonNoMedia      = "no_media_after_accept"
	reasonMediaFailed  = "ice_dtls_failed"
)

// loadCall is one call of the run.
type loadCall struct {
	run  *loadRun
	idx  int
	slot int
	call *Call
	leg  *liteLeg
	// placed is call for the leg's reader, which may run before place has
	// published c through the run's lock.
	placed atomic.Pointer[Call]

	stopped  atomic.Bool  // the sender leaves it alone
	firstRx  atomic.Int64 // first packet from the business (ns), 0 before
	lastRx   atomic.Int64
	acceptNS atomic.Int64 // when the sender first saw it accepted
	markPass atomic.Int32 // marker every this many seconds (0: none)
	sent     atomic.Uint64

	// Sender-owned.
	sending bool
	// The audio the answer picked: Opus 111, or G.711 (g711.go).
	pt           uint8
	tone, marker [][]byte
	tsStep       uint32
	n            int
	pass         int
	inMark       bool
	seq          uint16
	ts           uint32
	ssrcOut      uint32

	mk struct {
		gen     atomic.Uint32
		startNS atomic.Int64
		onsetNS atomic.Int64
	}

	// Receiver-owned (the leg's reader goroutine) until the leg is closed.
	rx rxState

	// Set when the call is over.
	hungUp  bool   // by us, at the end
	outcome string // the call's outcome or a failure reason
	dropped bool
}

// rxState is what the receiver keeps per call.
type rxState struct {
	started  bool
	firstExt int64
	maxExt   int64
	lastSeq  uint16
	window   [4]uint64 // the last 256 sequence numbers seen, bit 0 = maxExt
	unique   uint64
	dups     uint64
	otherPT  uint64
	tsExt    int64
	lastTS   uint32
	t0       int64 // arrival of the first packet (ns): the provisional schedule anchor
	hist     *latHist
	gapMax   int64 // longest time between packets (ns)
	lastAt   int64

	mkGen    uint32
	mkStart  int64
	mkDone   bool
	byteMode bool // passthrough: the marker's packet comes back as sent
	det      onsetDetector
	dec      *opus.Decoder
	pcm      []int16
	rtts     []float64 // ms
	missed   int
	decoded  uint64
}

// loadRun is one run.
type loadRun struct {
	sim   *Sim
	opts  LoadOptions
	audio *loadAudio
	cert  *dtlssrtp.Certificate
	poll  *litePoller // nil: each leg reads its own socket
	log   *zap.Logger
	g711  []string // the G.711 codecs the callers offer beside Opus (the number's audio.additional_codecs)

	mu    sync.Mutex
	calls []*loadCall
	slots [loadSlots][]*loadCall

	sendLate *latHist // sender-owned
	epoch    time.Time
	stop     chan struct{}
	wg       sync.WaitGroup
	placeErr map[string]int
}

// RunLoad runs a load test through the gateway this simulator is wired to
// and returns its report. It is bounded: ramp + setup + hold + hang-up, each
// with its own limit; ctx ends it early (the calls are hung up).
func (s *Sim) RunLoad(ctx context.Context, o LoadOptions) (*LoadReport, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	ok := s.started && !s.closing
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("wasim: simulator not started or closed")
	}
	aud, err := newLoadAudio(o.ToneHz)
	if err != nil {
		return nil, err
	}
	cert, err := newLiteCert()
	if err != nil {
		return nil, err
	}
	r := &loadRun{
		sim: s, opts: o, audio: aud, cert: cert, log: s.log.Named("load"), g711: s.additionalCodecs(s.cfg.PhoneNumberID),
		sendLate: newLatHist(0), epoch: time.Now(), stop: make(chan struct{}),
		placeErr: map[string]int{},
	}
	rep := &LoadReport{
		Calls: o.Calls, Rate: o.Rate, HoldSeconds: o.Hold.Seconds(), ToneHz: o.ToneHz,
		MarkerEverySeconds: o.MarkerEvery.Seconds(), LateAfterMs: float64(o.LateAfter) / 1e6,
		StartedAt: time.Now(),
	}
	if p, err := newLitePoller(); err == nil {
		r.poll = p
		defer p.Close() // after every leg is closed (hangupAll)
	}
	base := r.sampleProcs()
	r.wg.Add(2)
	go r.sendLoop()
	go r.monitor()
	defer func() {
		close(r.stop)
		r.wg.Wait()
	}()

	// Ramp.
	r.progress("ramp: %d calls at %.1f/s", o.Calls, o.Rate)
	rampStart := time.Now()
	for i := 0; i < o.Calls && ctx.Err() == nil; i++ {
		sleepUntil(ctx, rampStart.Add(time.Duration(float64(i)/o.Rate*float64(time.Second))))
		r.place(ctx)
	}
	rep.RampSeconds = time.Since(rampStart).Seconds()
	r.waitBridged(ctx, time.Now().Add(o.SetupTimeout))

	// Hold.
	live := r.liveCount()
	r.progress("hold: %d calls up for %s", live, o.Hold)
	holdStart, m0 := r.sampleProcs(), readMachine()
	t0 := time.Now()
	sleepCtx(ctx, o.Hold)
	holdEnd, m1 := r.sampleProcs(), readMachine()
	held := time.Since(t0)
	liveEnd := r.liveCount()
	rep.CallsUpAtHoldStart, rep.CallsUpAtHoldEnd = live, liveEnd
	rep.HeldSeconds = held.Seconds()

	// Hang-up.
	r.progress("hang-up: %d calls at %.1f/s", liveEnd, o.HangupRate)
	r.hangupAll(o.HangupRate)
	end := r.sampleProcs()

	r.report(rep)
	rep.Processes = procReports(o.Watch, base, holdStart, holdEnd, end, held, float64(live+liveEnd)/2)
	if sec := held.Seconds(); m0.ok && m1.ok && sec > 0 {
		mc := &MachineCPU{
			CPUs:    runtime.NumCPU(),
			Busy:    round3((m1.busy - m0.busy) / sec),
			Softirq: round3((m1.softirq - m0.softirq) / sec),
			Steal:   round3((m1.steal - m0.steal) / sec),
		}
		procs := 0.0
		for _, p := range rep.Processes {
			procs += p.HoldCPUSeconds
		}
		mc.Unaccounted = round3(mc.Busy - procs/sec)
		rep.Machine = mc
	}
	return rep, nil
}

func (o *LoadOptions) normalize() error {
	if o.ToneHz == 0 {
		o.ToneHz = 1000
	}
	if o.MarkerEvery == 0 {
		o.MarkerEvery = 2 * time.Second
	}
	if o.MarkerEvery > 0 {
		o.MarkerEvery = max(o.MarkerEvery.Round(time.Second), time.Second)
	}
	if o.LateAfter <= 0 {
		o.LateAfter = 20 * time.Millisecond
	}
	if o.SetupTimeout <= 0 {
		o.SetupTimeout = 30 * time.Second
	}
	if o.HangupRate <= 0 {
		o.HangupRate = o.Rate
	}
	var errs []error
	if o.Calls < 1 || o.Calls > 5000 {
		errs = append(errs, fmt.Errorf("wasim: load: %d calls: want 1-5000", o.Calls))
	}
	if !(o.Rate > 0 && o.Rate <= 500) || !(o.HangupRate <= 1000) {
		errs = append(errs, fmt.Errorf("wasim: load: rate %g calls/s: want 0-500", o.Rate))
	}
	if o.Hold < 0 || o.Hold > time.Hour {
		errs = append(errs, fmt.Errorf("wasim: load: hold %s: want 0-1h", o.Hold))
	}
	return errors.Join(errs...)
}

func (r *loadRun) progress(format string, a ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, "wasim load: "+format+"\n", a...)
	}
}

func (r *loadRun) snapshot() []*loadCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// place starts one call: a lite leg, then the connect webhook carrying its
// offer. A failure to place is counted, not fatal.
func (r *loadRun) place(ctx context.Context) {
	r.mu.Lock()
	idx := len(r.calls) + sumMap(r.placeErr)
	r.mu.Unlock()
	c := &loadCall{run: r, idx: idx, slot: idx % loadSlots}
	leg, err := newLiteLeg(r.sim.mediaIP, r.cert, c.onRTP, r.poll)
	if err != nil {
		r.placeFailed(err)
		return
	}
	c.leg = leg
	leg.g711 = r.g711
	if r.opts.MarkerEvery > 0 {
		c.markPass.Store(int32(r.opts.MarkerEvery / time.Second))
	}
	call, err := r.sim.PlaceCall(ctx, CallOptions{
		From:          strconv.Itoa(15550000000 + idx),
		ProfileName:   "Load Caller " + strconv.Itoa(idx),
		ExternalOffer: leg.offer(),
		OnAnswer:      leg.setAnswer,
	})
	if err != nil {
		leg.Close()
		r.placeFailed(err)
		return
	}
	c.call = call
	c.placed.Store(call)
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.slots[c.slot] = append(r.slots[c.slot], c)
	r.mu.Unlock()
}

func (r *loadRun) placeFailed(err error) {
	r.log.Warn("call not placed", zap.Error(err))
	r.mu.Lock()
	r.placeErr[reasonPlaceError]++
	r.mu.Unlock()
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// waitBridged waits until every call is bridged (media from the business)
// or over, or until the deadline; calls still not bridged then are given up
// (the user hangs up: setup_timeout).
func (r *loadRun) waitBridged(ctx context.Context, deadline time.Time) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		pending := 0
		for _, c := range r.snapshot() {
			if c.firstRx.Load() == 0 && c.call.State() != StateEnded {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			for _, c := range r.snapshot() {
				if c.firstRx.Load() == 0 && c.call.State() != StateEnded {
					c.stopped.Store(true)
					c.outcome = reasonSetupTimeout
					_ = c.call.Hangup()
				}
			}
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

func (r *loadRun) liveCount() int {
	n := 0
	for _, c := range r.snapshot() {
		if c.firstRx.Load() != 0 && c.call.State() != StateEnded {
			n++
		}
	}
	return n
}

// monitor plays Meta's media watchdog for the lite calls (the simulator's
// own does not watch external-offer calls): ICE/DTLS failure ends the call
// with 138020, no business media for NoMediaTimeout with 138021.
func (r *loadRun) monitor() {
	defer r.wg.Done()
	t := time.NewTicker(loadMonitorTick)
	defer t.Stop()
	noMedia := r.sim.cfg.NoMediaTimeout
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			for _, c := range r.snapshot() {
				if c.stopped.Load() || c.call.State() == StateEnded {
					continue
				}
				select {
				case <-c.leg.Failed():
					c.call.finish(endSpec{outcome: OutcomeMediaFailed, status: statusFailed, webhook: true,
						code: 138020, message: "Relay connection failed", details: c.leg.err().Error()})
					continue
				default:
				}
				last := c.lastRx.Load()
				if last == 0 {
					last = c.acceptNS.Load()
				}
				if last != 0 && now.UnixNano()-last >= int64(noMedia) {
					c.call.finish(endSpec{outcome: OutcomeMediaTimeout, status: statusFailed, webhook: true,
						code: ErrMediaReceiveTimeout, message: "Media receive timeout",
						details: fmt.Sprintf("no media from the business for %s", noMedia)})
				}
			}
		}
	}
}

// sendLoop sends every call's frames, slot by slot.
func (r *loadRun) sendLoop() {
	defer r.wg.Done()
	plain := make([]byte, liteMaxPacket)
	out := make([]byte, liteMaxPacket+64)
	var hdr rtp.Header
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	slot := time.Duration(loadFrameMs) * time.Millisecond / loadSlots
	for k := int64(0); ; k++ {
		due := r.epoch.Add(time.Duration(k) * slot)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.stop:
				return
			}
		} else {
			select {
			case <-r.stop:
				return
			default:
			}
		}
		r.mu.Lock()
		calls := r.slots[k%loadSlots]
		r.mu.Unlock()
		for _, c := range calls {
			c.sendFrame(due, plain, out, &hdr)
		}
	}
}

// sendFrame sends the call's next frame, once the call is accepted and
// SRTP is up; a marker second in place of a tone second every markPass.
func (c *loadCall) sendFrame(due time.Time, plain, out []byte, hdr *rtp.Header) {
	if c.stopped.Load() {
		return
	}
	if !c.sending {
		if !c.leg.isReady() || c.call.State() != StateAccepted {
			return
		}
		c.sending = true
		c.acceptNS.Store(time.Now().UnixNano())
		name, pt := c.leg.audio()
		c.pt, c.tone, c.marker, c.tsStep = pt, c.run.audio.tone, c.run.audio.marker, loadFrameTS
		if g := c.run.audio.g711[name]; g != nil {
			c.tone, c.marker, c.tsStep = g.tone, g.marker, loadG711FrameTS
		}
		c.seq, c.ts = uint16(mrand.Uint32()), mrand.Uint32()
		// Markers start at a random second so the calls' markers spread.
		c.pass = -1 - mrand.IntN(max(int(c.markPass.Load()), 1))
	}
	a := c.run.audio
	pos := c.n % loadFrames
	if pos == 0 {
		c.pass++
		mp := int(c.markPass.Load())
		c.inMark = mp > 0 && c.pass >= 0 && c.pass%mp == 0
	}
	payload := c.tone[pos]
	if c.inMark {
		payload = c.marker[pos]
	}
	h := rtp.Header{Version: 2, PayloadType: c.pt, Marker: c.n == 0, SequenceNumber: c.seq, Timestamp: c.ts, SSRC: c.leg.ssrc}
	hl, err := h.MarshalTo(plain)
	if err != nil {
		return
	}
	n := hl + copy(plain[hl:], payload)
	now := time.Now()
	if c.inMark {
		switch pos {
		case 0:
			c.mk.startNS.Store(now.UnixNano())
			c.mk.onsetNS.Store(0)
			c.mk.gen.Add(1)
		case a.onset:
			c.mk.onsetNS.Store(now.UnixNano())
		}
	}
	if err := c.leg.writeRTP(plain[:n], hdr, out); err == nil {
		c.sent.Add(1)
	}
	c.run.sendLate.add(int64(now.Sub(due) / time.Microsecond))
	c.n++
	c.seq++
	c.ts += c.tsStep
}

// onRTP takes one packet from the business (the leg's reader goroutine).
func (c *loadCall) onRTP(h *rtp.Header, payload []byte, at int64) {
	c.lastRx.Store(at)
	x := &c.rx
	if !x.started {
		x.started = true
		if call := c.placed.Load(); call == nil {
			x.started = false // PlaceCall has not returned: nothing to judge the packet by yet
			return
		} else if st := call.State(); st != StateAccepted && st != StateEnded {
			call.violation(fmt.Sprintf("media: the business sent RTP before accept returned 200 (state %s)", st))
		}
		c.firstRx.Store(at)
		x.firstExt, x.maxExt, x.lastSeq = 0, 0, h.SequenceNumber
		x.window[0] = 1
		x.unique = 1
		x.lastTS, x.tsExt, x.t0 = h.Timestamp, 0, at
		x.hist = newLatHist(-histSpanUS / 2)
		x.hist.add(0)
		x.lastAt = at
		return
	}
	if g := at - x.lastAt; g > x.gapMax {
		x.gapMax = g
	}
	x.lastAt = at
	// Sequence: loss and duplicates.
	ext := x.maxExt + int64(int16(h.SequenceNumber-x.lastSeq))
	switch d := ext - x.maxExt; {
	case d > 0:
		shiftWindow(&x.window, d)
		x.window[0] |= 1
		x.maxExt, x.lastSeq = ext, h.SequenceNumber
		x.unique++
	case -d < 256:
		w, b := (-d)/64, uint(-d)%64
		if x.window[w]&(1<<b) != 0 {
			x.dups++
			return
		}
		x.window[w] |= 1 << b
		x.unique++
	default:
		x.unique++ // very late: counted, not placed
	}
	name, pt := c.leg.audio()
	if h.PayloadType != pt {
		x.otherPT++
		return
	}
	clock := int64(loadRate)
	if name != "opus" {
		clock = 8000
	}
	// Schedule: the RTP timestamp says when the gateway's pacer sent it.
	if d := int64(int32(h.Timestamp - x.lastTS)); d > 0 {
		x.tsExt += d
		x.lastTS = h.Timestamp
		late := at - (x.t0 + x.tsExt*1e9/clock)
		x.hist.add(late / 1e3)
	}
	c.detect(name, payload, at)
}

// shiftWindow moves the duplicate window d packets on.
func shiftWindow(w *[4]uint64, d int64) {
	if d >= 256 {
		*w = [4]uint64{}
		return
	}
	for ; d >= 64; d -= 64 {
		w[3], w[2], w[1], w[0] = w[2], w[1], w[0], 0
	}
	if d > 0 {
		s := uint(d)
		w[3] = w[3]<<s | w[2]>>(64-s)
		w[2] = w[2]<<s | w[1]>>(64-s)
		w[1] = w[1]<<s | w[0]>>(64-s)
		w[0] <<= s
	}
}

// detect follows the latency marker in the packets coming back (codec:
// "opus", or the G.711 law the answer picked).
func (c *loadCall) detect(codec string, payload []byte, at int64) {
	x := &c.rx
	g := c.mk.gen.Load()
	if g != x.mkGen {
		x.mkGen, x.mkDone = g, false
		x.mkStart = c.mk.startNS.Load()
		x.det.reset()
	}
	if g == 0 || x.mkDone || at < x.mkStart+int64(markerDetectFrom) {
		return
	}
	onset := c.mk.onsetNS.Load()
	if onset != 0 && at > onset+int64(markerMaxRTT) {
		x.mkDone = true
		x.missed++
		return
	}
	a := c.run.audio
	if g := a.g711[codec]; g != nil {
		// G.711 is stateless: every frame of the tone is the same bytes,
		// the marker's onset frame too, so bytes cannot tell the onset
		// from the tone before the gap. The packets are decoded instead
		// (a table lookup a sample, at detectRate: no codec delay to take
		// off, not counted as decoded); a call whose onset packet came
		// back byte for byte counts as passed through.
		if len(payload) > detectRate*120/1000 {
			return
		}
		if x.pcm == nil {
			x.pcm = make([]int16, detectRate*120/1000)
		}
		decodeG711(codec, payload, x.pcm[:len(payload)])
		if i, ok := x.det.feed(x.pcm[:len(payload)]); ok {
			x.byteMode = x.byteMode || bytes.Equal(payload, g.marker[a.onset])
			c.markerFound(at+int64(i)*1e9/detectRate, onset, 0)
		}
		return
	}
	if bytes.Equal(payload, a.marker[a.onset]) { // passed through untouched
		x.byteMode = true
		c.markerFound(at, onset, 0)
		return
	}
	if x.byteMode {
		return
	}
	if x.dec == nil {
		dec, err := opus.NewDecoder(detectRate)
		if err != nil {
			x.mkDone = true
			return
		}
		x.dec, x.pcm = dec, make([]int16, detectRate*120/1000)
	}
	n, err := x.dec.Decode(payload, x.pcm)
	x.decoded++
	if err != nil {
		return
	}
	if i, ok := x.det.feed(x.pcm[:n]); ok {
		c.markerFound(at+int64(i)*1e9/detectRate, onset, int64(a.onsetDelay)*1e9/detectRate)
	}
}

// markerFound records one round trip: the onset heard at `heard`, sent at
// `onset`, less the simulator's own codec delay.
func (c *loadCall) markerFound(heard, onset, codecDelay int64) {
	x := &c.rx
	x.mkDone = true
	if onset == 0 { // found before it was sent: noise, not the marker
		x.missed++
		return
	}
	x.rtts = append(x.rtts, float64(heard-onset-codecDelay)/1e6)
}

// hangupAll hangs every call up at rate per second, and closes the legs.
func (r *loadRun) hangupAll(rate float64) {
	calls := r.snapshot()
	sem := make(chan struct{}, hangupConcurrent)
	var wg sync.WaitGroup
	start := time.Now()
	k := 0
	for _, c := range calls {
		c.stopped.Store(true)
		if c.call.State() == StateEnded {
			continue
		}
		sleepUntil(context.Background(), start.Add(time.Duration(float64(k)/rate*float64(time.Second))))
		k++
		c.hungUp = true
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = c.call.Hangup()
		}()
	}
	wg.Wait()
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _ = c.call.Wait(ctx)
		cancel()
		c.leg.Close() // the reader is done with c.rx after this
		if c.rx.dec != nil {
			c.rx.dec.Close()
			c.rx.dec = nil
		}
	}
}

func (r *loadRun) sampleProcs() map[int]procSample {
	m := map[int]procSample{}
	for _, w := range r.opts.Watch {
		if s, err := readProc(w.PID); err == nil {
			m[w.PID] = s
		}
	}
	return m
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func sleepUntil(ctx context.Context, at time.Time) {
	if d := time.Until(at); d > 0 {
		sleepCtx(ctx, d)
	}
}

package rtpbridge

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// The playout buffer sits between one call's SIP reader (put) and its pacer
// (get, every 20 ms). It is clock-driven: each packet from the PBX is
// placed on a timeline by its RTP timestamp, and the pacer plays the
// timeline at its own steady pace, so packets reordered on the way fall
// into place, jitter is absorbed, and a packet that comes after its time
// has been played is dropped (counted late).
//
// Slack and phase. Packets are laid on the timeline so that they start on
// frame boundaries (for the usual 20 ms packets): a packet is then late
// only if it comes after the tick that plays it, and its slack (how long
// before that tick it came) is all the jitter it can take. Left alone, the
// slack would be wherever the call's start happened to put the pacer's
// ticks against the PBX's packets (0-20 ms, by luck), and growing it would
// take a whole frame. Instead the buffer moves the ticks: at each tick get
// hands the pacer a shift, less than a frame either way, by which its next
// tick and all after it move (pacer.go).
//
//   - At the first packet after Start or a restart of the timeline, the
//     phase is picked so that the packets after it come playMarginMs (plus
//     what the delay has grown by and kept, see grown) before their ticks:
//     the ticks move earlier or later, and frames of a backlog go.
//   - The delay grows when the slack gets too small: after a late packet
//     by what it lacked plus the margin (once for the packets one stall
//     made late together), and at the end of a window of packets by what
//     brings the window's least slack up to the margin.
//     What is under a frame moves the next tick later (one interval toward
//     WhatsApp is that much longer, which its jitter buffer takes as any
//     jitter); whole frames are played as silence without moving on. It
//     grows to playMaxMs at most.
//   - It shrinks by whole frames, skipping one (a quiet one when it can
//     find one): when playSteadyWins windows in a row had no late packet
//     and all their packets came a frame and the margin or more ahead; or
//     at once, down to the margin, when all came two frames and the margin
//     ahead (a backlog).
//   - What it grew by, and how far the ticks moved since the phase was
//     picked, it gives back first, moving the next tick earlier (no audio
//     skipped), when playSteadyWins windows in a row had no late packet
//     and all their packets came twice the margin or more ahead: a stall
//     or a burst of jitter that has passed. So the stream toward WhatsApp
//     stays on its timestamps' schedule; only a PBX running fast, with
//     the ticks back where they were picked, gains slack until a frame is
//     skipped.
//
// So a PBX whose clock runs slow against ours (its packets ever later) is
// followed by small delays of the ticks, without a late packet while its
// jitter stays within the margin; one that runs fast (its packets ever
// earlier) gains slack until a frame is skipped. The delay reported
// (Stats.PlayoutDelayMs) is the packets' mean time from arrival to their
// tick: about the margin plus their mean jitter.
//
// The timeline is restarted (the next packet played at the next tick, or
// after what is still held, and the phase picked afresh) when the PBX's
// SSRC changes, when a talkspurt starts (marker bit) while nothing is
// held, when a packet lands more than playResyncMs off it (a PBX that
// restarted its timestamps, or resumed after hold with the old ones), and
// when playLateRun packets in a row come late (its timestamps slipped
// behind its clock by more than the delay can grow). Silence, of any
// length, needs nothing: the pacer plays silence meanwhile, and the next
// packet's timestamp places it.
//
// Before the pacer starts (Bridge.StartSIPReceive before Start), packets are
// kept from the first one on, up to playCapacityMs (the oldest audio goes
// if more comes): a PBX greeting that starts while the WhatsApp leg is being
// accepted is played from its start once Start runs, and the delay comes
// back down by skipping quiet frames.
//
// One mutex, taken once per packet by the SIP reader and once per frame by
// the pacer, guards it: no other goroutine ever takes it. The shift reaches
// the pacer as a result of get.

const (
	// playMarginMs is the slack kept for the packets beyond what jitter has
	// taken so far. Under load their arrival jitter is 1.5-2.5 ms at p99,
	// but every second or so a stall of the PBX or of the machine makes
	// every call's packets a few ms late together: with 4 ms, 200-call runs
	// (wasim load, 60 s) had 250-330 late packets and grew by whole frames;
	// with 6 ms, 12. It is all the delay a steady call pays, where luck
	// gave 0-20 ms.
	playMarginMs    = 6
	playMaxMs       = 40   // the most the delay grows to
	playWindow      = 50   // packets per measuring window (a second at 20 ms)
	playFirstWindow = 10   // the first window after a pick: jitter the picked packet did not show is met sooner
	playSteadyWins  = 3    // windows without a late packet before the delay shrinks
	playCapacityMs  = 1000 // most audio held
	playResyncMs    = 500
	playLateRun     = 5   // late packets in a row that restart the timeline
	playQuantumDiv  = 400 // validity is kept per 2.5 ms
	playEstN        = 256 // packets the delay's moving average spans (about 5 s)
	// playQuietLevel is the mean square below which a stretch of audio is
	// quiet enough to skip (about -50 dBFS).
	playQuietLevel = 100 * 100
	// playForceAfter is how many frames a pending shrink waits for a quiet
	// stretch before it skips audio anyway.
	playForceAfter = 50
	// playMaxSkips bounds the quiet frames skipped per tick while catching
	// up on a backlog.
	playMaxSkips = 4
)

// playKind is what get found for one frame.
type playKind uint8

const (
	playSilence playKind = iota // nothing held for this frame
	playAudio                   // PCM, with zeros where some was missing
	playPacket                  // a whole Opus packet (passthrough)
	playCovered                 // passthrough: the last packet sent still lasts
)

// playStore is where the playout buffer keeps its audio: a pcmRing for a
// transcoded call (playout_pcm.go), packetSlots for Opus passthrough
// (playout_packets.go). The buffer's timeline, phase and delay are the
// same for both; only what a frame holds differs.
type playStore interface {
	// configure makes the store hold s's audio, empty, and gives the
	// timeline's geometry; release frees the memory of a store not in use.
	configure(s *sipSetup) playGeometry
	release()
	// play takes the frame at pos: PCM into pcm, or a packet into pkt (n
	// bytes lasting dur units).
	play(pos int64, pcm []int16, pkt []byte) (kind playKind, n int, dur int64)
	// silence makes pcm a frame of silence where the store plays PCM.
	silence(pcm []int16)
	discard(from, to int64)
	quiet(pos int64) bool // the frame at pos holds nothing, or nothing loud
	held() int            // timeline units held (tests)
}

// playGeometry is the timeline of a store's audio.
type playGeometry struct {
	rate     int64 // timeline units per second
	mul      int64 // timeline units per RTP timestamp unit (2 for G.722)
	frame    int64 // units per frame
	capacity int64 // most units held
	mid      int64 // what a packet's start is moved by to find its frame: a passthrough packet takes the slot it mostly falls in
}

type playout struct {
	mu sync.Mutex
	c  *dirCounters

	setup   *sipSetup // what the held audio was put with
	packets bool      // passthrough: whole Opus packets, one per frame slot
	store   playStore // &ring or &slots, as packets says
	ring    pcmRing
	slots   packetSlots
	playGeometry
	period int64 // a frame's ns
	margin int64 // playMarginMs in units

	rd, end int64 // next unit to play (always on a frame boundary); end of the audio held
	synced  bool
	lateRun int // late packets in a row
	ssrc    uint32
	lastTS  uint32 // newest timestamp seen, and its place on the extended timeline
	lastExt int64
	off     int64 // timeline position = extended timestamp · mul + off

	running bool  // the pacer has started
	tickAt  int64 // when the last frame was due (ns, the bridge's clock)
	nextAt  int64 // when the next one is, with the shift handed out

	delay  int64   // the packets' mean delay (units): as picked, then as measured
	est    float64 // its running measure: the mean of the first packets, then a moving average
	estN   int64
	adjust int64 // pending, in frames: > 0 play silence without moving on, < 0 skip audio
	shift  int64 // pending, in units (under a frame): the next tick's move, for get to hand out
	// pick: the next packet in time picks the phase. grown: what the delay
	// grew by and has not given back (units), which picks keep beyond the
	// margin (up to a frame).
	pick  bool
	grown int64
	// moved: how far the ticks have moved since the phase was picked
	// (units, > 0 later), by the shifts handed out. Giving it back keeps
	// the stream toward WhatsApp on its timestamps' schedule: growth by
	// later ticks then shrinking by skipped frames would leave it ever
	// later, like a sender whose clock runs slow.
	moved      int64
	lateMark   int64 // a late packet for a frame before it grows nothing: the last growth was for it
	shrinkWait int
	winLen     int // packets in this window
	win        struct {
		n, lates int
		minSlack int64 // least time to spare before a packet's tick (units; < 0 late)
	}
	steady int                   // windows in a row without a late packet
	recent [playSteadyWins]int64 // the least slack of the last of them
}

func newPlayout(c *dirCounters) *playout { return &playout{c: c} }

func (p *playout) String() string { return fmt.Sprintf("playout %d-%dms", playMarginMs, playMaxMs) }

// configure makes the buffer hold s's audio, dropping whatever it held
// (a PCM rate or passthrough change). The pacer's timing carries on.
func (p *playout) configure(s *sipSetup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.configureLocked(s)
}

func (p *playout) configureLocked(s *sipSetup) {
	p.setup = s
	p.packets = s.codec.passthrough
	var unused playStore
	if p.packets {
		p.store, unused = &p.slots, &p.ring
	} else {
		p.store, unused = &p.ring, &p.slots
	}
	unused.release()
	p.playGeometry = p.store.configure(s)
	p.period = int64(s.frame.d)
	p.margin = p.ms(playMarginMs)
	p.rd, p.end, p.synced = 0, 0, false
	p.adjust, p.shift, p.shrinkWait, p.steady = 0, 0, 0, 0
	p.pick, p.grown, p.moved, p.lateMark = true, 0, 0, 0
	p.setDelay(p.margin)
	p.winLen = playWindow
	p.restartWindow()
}

func (p *playout) ms(n int64) int64 { return p.rate * n / 1000 }

// units is t ns in timeline units.
func (p *playout) units(t int64) int64 { return t * p.rate / int64(time.Second) }

// frameOf is the frame position pos is played in: the frame it starts in
// (PCM), or the one it mostly falls in (a passthrough packet takes a whole
// slot).
func (p *playout) frameOf(pos int64) int64 {
	pos += p.mid
	return pos - (pos%p.frame+p.frame)%p.frame
}

// until is the time (in units) from now to the tick that plays the frame
// at x: negative once it has been played. Ticks to come are counted from
// the next one as the pacer was told, with the pending silence frames and
// shift (which moves the ticks after the next); a pending skip is left
// out, as it waits for a quiet frame.
func (p *playout) until(x, now int64) int64 {
	if !p.running {
		return x - p.rd
	}
	if x < p.rd {
		return x - (p.rd - p.frame) - p.units(max(now-p.tickAt, 0))
	}
	i := (x-p.rd)/p.frame + max(p.adjust, 0) // ticks after the next
	u := p.units(max(p.nextAt-now, 0)) + i*p.frame
	if i > 0 {
		u += p.shift
	}
	return u
}

// putResult is what became of a packet.
type putResult uint8

const (
	putOK        putResult = iota
	putLate                // its time has been played
	putDuplicate           // everything in it is held already
)

// place maps a packet of n units stamped h onto the timeline, restarting
// the timeline if needed, and measures its slack. It returns where its
// audio goes; from may be before rd (the caller keeps only what is not).
func (p *playout) place(h rtpHeader, n int64, now int64) (from int64) {
	if !p.synced || h.ssrc != p.ssrc {
		p.resync()
		p.ssrc, p.lastTS = h.ssrc, h.ts
	}
	d := int64(int32(h.ts - p.lastTS))
	ext := p.lastExt + d
	if d > 0 {
		p.lastTS, p.lastExt = h.ts, ext
	}
	from = ext*p.mul + p.off
	if !p.running {
		return from
	}
	resync := p.ms(playResyncMs)
	if p.frameOf(from) < p.rd {
		p.lateRun++
	} else {
		p.lateRun = 0
	}
	switch {
	case from+n < p.rd-resync || from > max(p.end, p.rd+p.delay)+resync || p.lateRun >= playLateRun:
		// Off the timeline: the PBX's timestamps jumped, or its stream
		// slipped later than the delay can grow.
		p.c.resets.Add(1)
		fallthrough
	case h.marker && p.end <= p.rd:
		p.resync()
		p.lastTS, p.lastExt = h.ts, 0
		from = p.off
	}
	p.measure(from, now)
	return from
}

// resync starts the timeline afresh with the next packet: it is placed on
// the next frame to play, or after whatever is still held, and picks the
// phase (measure).
func (p *playout) resync() {
	base := max(p.rd, p.end+(p.frame-p.end%p.frame)%p.frame)
	p.synced, p.lateRun = true, 0
	p.lastExt, p.off = 0, base
	p.pick = true
	p.restartWindow()
}

// measure keeps the statistics of the packets' delay and of their slack
// (how long before the tick that plays it a packet came), and adapts the
// delay to them.
func (p *playout) measure(from, now int64) {
	x := p.frameOf(from)
	slack := p.until(x, now)
	late := x < p.rd
	if p.pick && !late {
		p.pickPhase(slack)
		return
	}
	w := &p.win
	if w.n == 0 || slack < w.minSlack {
		w.minSlack = slack
	}
	w.n++
	// The packets' mean delay: as picked until some packets came, then
	// their mean, then (past playEstN packets) a moving average, which
	// follows the PBX's clock drifting against ours. Late packets are left
	// out: lateness is often one-sided (a few packets much later than the
	// rest), and the delay must stay within the most for the others.
	if !late {
		p.estN++
		p.est += (float64(slack+from-x) - p.est) / float64(min(p.estN, playEstN))
		if p.estN >= playWindow/5 {
			p.setDelay(int64(p.est))
		}
	}
	if late {
		w.lates++
		p.steady = 0
		p.c.underruns.Add(1)
		// A stall (the PBX's, the network's or this process's) makes
		// several packets late at once: the first one's growth is for
		// them all, and the frames up to the next tick, which it cannot
		// move, are theirs.
		if x >= p.lateMark {
			p.grow(p.margin - slack)
			p.lateMark = p.rd + p.frame
		}
		p.restartWindow()
		return
	}
	if w.n < p.winLen {
		return
	}
	steadyMin := int64(-1) // over the last playSteadyWins windows, when all were steady
	if w.lates == 0 {
		p.recent[p.steady%playSteadyWins] = w.minSlack
		p.steady++
		if p.steady >= playSteadyWins {
			steadyMin = slices.Min(p.recent[:])
		}
	}
	switch {
	case w.minSlack < p.margin:
		// Jitter took more than the margin left (or the PBX's clock is
		// slower than ours): keep the margin beyond the latest packet.
		p.grow(p.margin - w.minSlack)
		p.steady = 0
	case w.minSlack >= 2*p.frame+p.margin:
		// Every packet came two frames or more ahead of its time: a backlog
		// (audio kept before Start) or a PBX running ahead. Shrink now,
		// down to the margin.
		p.adjust = -((w.minSlack - p.margin) / p.frame)
		p.steady = 0
	case max(p.grown, p.moved) > 0 && steadyMin >= 2*p.margin:
		// What a stall or jitter asked for is not needed any more: give
		// it back by earlier ticks (no audio skipped), down to the margin
		// and by no more than the ticks moved or the delay grew. Twice
		// the margin keeps what the usual jitter needs from coming and
		// going.
		back := min(max(p.grown, p.moved), steadyMin-p.margin, p.frame-1)
		p.retime(-back)
		p.grown = max(p.grown-back, 0)
		p.moveDelay(-back)
		p.steady = 0
	case steadyMin >= p.frame+p.margin:
		// A frame to spare for some seconds with the ticks where they
		// were picked: a faster PBX clock. Skip a frame.
		p.adjust = -1
		p.steady = 0
	}
	p.winLen = playWindow
	p.restartWindow()
}

// pickPhase moves the ticks so that the packets after the one that came
// slack units before its tick come the margin (and what the delay grew by)
// before theirs.
// The shift moves the ticks after the next: this packet's too unless it is
// the next one's, which has come and stays as it is.
func (p *playout) pickPhase(slack int64) {
	p.pick = false
	target := p.margin + min(p.grown, p.frame-p.margin)
	p.retime(target - slack - min(p.adjust, 0)*p.frame) // pending skips count as done
	p.moved = -p.shift                                  // the phase picked is the baseline once handed out
	p.setDelay(target)
	p.est, p.estN = float64(target), 0
	p.winLen = playFirstWindow
	p.restartWindow()
}

// grow delays the packets' play by need units (as far as playMaxMs
// allows). A pending shrink is called off: the slack it was for is gone.
func (p *playout) grow(need int64) {
	need = min(need, p.ms(playMaxMs)-p.delay)
	if need <= 0 {
		return
	}
	if p.adjust < 0 {
		p.adjust, p.shrinkWait = 0, 0
	}
	p.retime(need)
	p.grown += need
	p.moveDelay(need)
}

// retime moves the ticks after the next by d units: whole frames as
// silence played (or frames skipped), the rest as the shift handed to the
// pacer.
func (p *playout) retime(d int64) {
	p.shift += d
	p.adjust += p.shift / p.frame
	p.shift %= p.frame
}

// moveDelay notes that the timeline moved by d units against the ticks.
func (p *playout) moveDelay(d int64) {
	p.est += float64(d)
	p.setDelay(p.delay + d)
}

func (p *playout) setDelay(d int64) {
	p.delay = d
	p.c.playoutDelayMs.Store(uint64(max(d, 0) * 1000 / p.rate))
}

func (p *playout) restartWindow() { p.win.n, p.win.lates, p.win.minSlack = 0, 0, 0 }

// room makes sure the buffer can hold up to to, dropping the oldest audio
// (counted as an overrun) if not.
func (p *playout) room(to int64) {
	if over := to - p.rd - p.capacity; over > 0 {
		over += (p.frame - over%p.frame) % p.frame
		p.discard(p.rd + over)
		p.c.overruns.Add(1)
	}
}

// putPCM places one packet's decoded PCM.
func (p *playout) putPCM(h rtpHeader, pcm []int16, now int64) putResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.packets || len(pcm) == 0 {
		return putDuplicate
	}
	n := int64(len(pcm))
	from := p.place(h, n, now)
	to := from + n
	if to <= p.rd {
		p.c.late.Add(1)
		return putLate
	}
	if from < p.rd {
		pcm = pcm[p.rd-from:]
		from = p.rd
	}
	if p.ring.has(from, to) {
		return putDuplicate
	}
	p.room(to)
	p.ring.write(from, pcm)
	p.end = max(p.end, to)
	return putOK
}

// putPacket places one Opus packet lasting dur units (passthrough).
func (p *playout) putPacket(h rtpHeader, payload []byte, dur int64, now int64) putResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.packets || len(payload) == 0 || dur <= 0 {
		return putDuplicate
	}
	from := p.place(h, dur, now)
	// Frames are whole: the packet takes the slot it mostly falls in.
	first := p.frameOf(from)
	if first < p.rd {
		p.c.late.Add(1)
		return putLate
	}
	frames := max((dur+p.frame/2)/p.frame, 1)
	p.room(first + frames*p.frame)
	if !p.slots.put(first, frames, from, payload, dur) {
		return putDuplicate
	}
	p.end = max(p.end, first+frames*p.frame)
	return putOK
}

// get plays the frame due at now: PCM into pcm, or a packet into pkt (n
// bytes, lasting dur units). It returns the setup the audio belongs to,
// and the shift by which the pacer is to move its next tick.
func (p *playout) get(now int64, pcm []int16, pkt []byte) (kind playKind, n int, dur int64, s *sipSetup, shift time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		// What was kept before the start is the delay from now on; it is
		// to come down by skipping quiet frames, to a frame (the next
		// packet comes within one) until a packet picks the phase.
		p.running, p.pick = true, true
		p.setDelay(p.end - p.rd)
		p.est, p.estN = float64(p.delay), 0
		if excess := p.delay - p.frame; excess >= p.frame {
			p.adjust = -(excess / p.frame)
		}
	}
	p.tickAt = now
	shift = time.Duration(p.shift * int64(time.Second) / p.rate)
	p.moved += p.shift
	p.shift = 0
	p.nextAt = now + p.period + int64(shift)
	if p.adjust > 0 {
		// Grow: a frame of silence, the read point stays.
		p.adjust--
		p.store.silence(pcm)
		return playSilence, 0, 0, p.setup, shift
	}
	if p.adjust < 0 {
		p.shrink()
	}
	kind, n, dur = p.store.play(p.rd, pcm, pkt)
	p.rd += p.frame
	return kind, n, dur, p.setup, shift
}

// shrink skips frames at the read point for a pending shrink: quiet ones
// (up to playMaxSkips at a time), or one of any kind once the shrink has
// waited playForceAfter frames for quiet (a fifth of that while a backlog
// of frames is to go).
func (p *playout) shrink() {
	skipped := 0
	force := playForceAfter
	if p.adjust < -1 {
		force /= 5
	}
	for p.adjust < 0 && skipped < playMaxSkips && (p.store.quiet(p.rd) || p.shrinkWait >= force) {
		p.discard(p.rd + p.frame)
		p.adjust++
		p.grown = max(p.grown-p.frame, 0)
		p.moveDelay(-p.frame)
		skipped++
		p.shrinkWait = 0
	}
	if skipped > 0 {
		p.c.catchUps.Add(uint64(skipped))
		p.restartWindow()
	} else {
		p.shrinkWait++
	}
}

// discard drops the held audio before to and moves the read point there.
func (p *playout) discard(to int64) {
	if to <= p.rd {
		return
	}
	p.store.discard(p.rd, to)
	p.rd = to
}

// held is the number of units of audio held (tests).
func (p *playout) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.store.held()
}

// skip drops frames frames at the read point: the pacer skipped them.
func (p *playout) skip(frames int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.discard(p.rd + frames*p.frame)
}

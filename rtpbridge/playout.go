package rtpbridge

import (
	"fmt"
	"math/bits"
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
// Delay. A packet's delay is the time from its arrival until its first
// sample is heard at WhatsApp's end (the frame that carries it is sent at a
// tick, and the sample lies some way into that frame). Packets are laid on
// the timeline so that they start on frame boundaries (for the usual 20 ms
// packets): then a packet is late only if it comes after the tick that
// plays it, so all of its delay protects it against jitter. The delay
// starts at up to 20 ms (the first tick a frame's length after a packet
// comes), grows by a frame when a packet comes late, as long as it stays
// within 40 ms, and shrinks by a frame when three seconds of packets all
// came with a frame to spare (or at once, down to what they need, when
// they all came with two or more: a backlog). It grows by playing a frame
// of silence without moving on, and shrinks by skipping a frame, a quiet
// one when it can find one.
//
// The timeline is restarted (the next packet played after the target
// delay, or after what is still held) when the PBX's SSRC changes, when a
// talkspurt starts (marker bit) while nothing is held, when a packet
// lands more than playResyncMs off it (a PBX that restarted its
// timestamps, or resumed after hold with the old ones), and when
// playLateRun packets in a row come late (its timestamps slipped behind
// its clock by more than the delay can grow). Silence, of any
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
// the pacer, guards it: no other goroutine ever takes it.

const (
	playMinMs      = 20   // the delay aimed at first
	playMaxMs      = 40   // the most it grows to
	playWindow     = 50   // packets per measuring window (a second at 20 ms)
	playSteadyWins = 3    // windows without a late packet before the delay shrinks
	playCapacityMs = 1000 // most audio held
	playResyncMs   = 500
	playLateRun    = 5   // late packets in a row that restart the timeline
	playQuantumDiv = 400 // validity is kept per 2.5 ms
	playEstN       = 256 // packets the delay's moving average spans (about 5 s)
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

// playSlot holds one passthrough frame.
type playSlot struct {
	pos     int64 // where its packet starts on the timeline (to tell duplicates)
	n       int   // payload bytes, 0 if empty
	dur     int64 // the packet's duration, timeline units
	covered bool  // a longer packet before it lasts over this frame
	buf     [maxPacket]byte
}

type playout struct {
	mu sync.Mutex
	c  *dirCounters

	setup    *sipSetup // what the held audio was put with
	packets  bool      // passthrough: whole Opus packets, one per frame slot
	rate     int64     // timeline units per second
	frame    int64     // units per frame
	mul      int64     // timeline units per RTP timestamp unit (2 for G.722)
	capacity int64     // most units held
	q        int64     // units per validity bit (PCM)

	pcm   []int16    // PCM ring, indexed by timeline position
	valid []uint64   // a bit per quantum of pcm
	slots []playSlot // passthrough ring, one slot per frame

	rd, end int64 // next unit to play (always on a frame boundary); end of the audio held
	synced  bool
	lateRun int // late packets in a row
	ssrc    uint32
	lastTS  uint32 // newest timestamp seen, and its place on the extended timeline
	lastExt int64
	off     int64 // timeline position = extended timestamp · mul + off

	running bool  // the pacer has started
	tickAt  int64 // when the last frame was played (ns, the bridge's clock)
	tickPos int64 // where on the timeline that frame started

	delay      int64   // the packets' mean delay (units): as laid out, then as measured
	est        float64 // its running measure: the mean of the first packets, then a moving average
	estN       int64
	adjust     int64 // pending, in frames: > 0 play silence without moving on, < 0 skip audio
	shrinkWait int
	win        struct {
		n, lates int
		sum      int64 // of the delays
		minSlack int64 // least time to spare before a packet's frame was played
	}
	steady int
}

func newPlayout(c *dirCounters) *playout { return &playout{c: c} }

func (p *playout) String() string { return fmt.Sprintf("playout %d-%dms", playMinMs, playMaxMs) }

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
	if p.packets {
		p.rate, p.mul = opusClock, 1
		p.frame = int64(s.frame.opusTS)
		p.capacity = p.frame * (playCapacityMs / int64(s.frame.d/time.Millisecond))
		if n := int(p.capacity/p.frame) + 2; len(p.slots) != n {
			p.slots = make([]playSlot, n)
		} else {
			clear(p.slots)
		}
		p.pcm, p.valid = nil, nil
	} else {
		p.rate = int64(s.codec.pcmRate)
		p.mul = p.rate / int64(s.codec.clock)
		p.frame = int64(s.frame.samples)
		p.q = p.rate / playQuantumDiv
		p.capacity = p.rate * playCapacityMs / 1000
		n := p.capacity + 2*p.frame
		n += (p.q*64 - n%(p.q*64)) % (p.q * 64) // whole words of quanta
		if int64(len(p.pcm)) != n {
			p.pcm = make([]int16, n)
			p.valid = make([]uint64, n/p.q/64)
		} else {
			clear(p.pcm)
			clear(p.valid)
		}
		p.slots = nil
	}
	p.rd, p.end, p.synced = 0, 0, false
	p.tickPos = 0
	p.adjust, p.shrinkWait, p.steady = 0, 0, 0
	p.setDelay(p.ms(playMinMs))
	p.restartWindow()
}

func (p *playout) ms(n int64) int64 { return p.rate * n / 1000 }

// playPoint is where on the timeline the audio being heard now is: the
// last frame's start plus the time since (at most a frame).
func (p *playout) playPoint(now int64) int64 {
	if !p.running {
		return p.rd
	}
	el := (now - p.tickAt) * p.rate / int64(time.Second)
	return p.tickPos + min(max(el, 0), p.frame)
}

// putResult is what became of a packet.
type putResult uint8

const (
	putOK        putResult = iota
	putLate                // its time has been played
	putDuplicate           // everything in it is held already
)

// place maps a packet of n units stamped h onto the timeline, restarting
// the timeline if needed, and measures its delay. It returns where its
// audio goes; from may be before rd (the caller keeps only what is not).
func (p *playout) place(h rtpHeader, n int64, now int64) (from int64) {
	if !p.synced || h.ssrc != p.ssrc {
		p.resync(now)
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
	pp := p.playPoint(now)
	resync := p.ms(playResyncMs)
	late := from < p.rd
	if late {
		p.lateRun++
	} else {
		p.lateRun = 0
	}
	switch {
	case from+n < p.rd-resync || from > max(p.end, pp+p.delay)+resync || p.lateRun >= playLateRun:
		// Off the timeline: the PBX's timestamps jumped, or its stream
		// slipped later than the delay can grow.
		p.c.resets.Add(1)
		fallthrough
	case h.marker && p.end <= p.rd:
		p.resync(now)
		p.lastTS, p.lastExt = h.ts, 0
		from = p.off
		late = false
	}
	p.measure(from-pp, from-p.rd, late)
	return from
}

// resync starts the timeline afresh with the next packet: it is placed on
// the frame boundary nearest before the delay aimed at (playMinMs, or
// what the delay has grown to) from now, and after whatever is still
// held.
func (p *playout) resync(now int64) {
	base := p.rd
	pp := p.playPoint(now)
	if p.running {
		base = pp + max(p.delay, p.ms(playMinMs))
		base -= base % p.frame
	}
	if end := p.end + (p.frame-p.end%p.frame)%p.frame; base < end {
		base = end
	}
	p.synced, p.lateRun = true, 0
	p.lastExt, p.off = 0, max(base, p.rd)
	if p.running {
		p.setDelay(p.off - pp)
	}
	p.est, p.estN = float64(p.delay), 0
	p.restartWindow()
}

// measure keeps the statistics of the packets' delay and of their time to
// spare (slack: how long before the tick that plays it a packet came), and
// adapts the delay to them.
func (p *playout) measure(delay, slack int64, late bool) {
	w := &p.win
	if w.n == 0 || slack < w.minSlack {
		w.minSlack = slack
	}
	w.n++
	w.sum += delay
	// The packets' mean delay: as laid out until some packets came, then
	// their mean, then (past playEstN packets) a moving average, which
	// follows the PBX's clock drifting against ours. Late packets are left
	// out: lateness is often one-sided (a few packets much later than the
	// rest), and the delay must stay within the most for the others.
	if !late {
		p.estN++
		p.est += (float64(delay) - p.est) / float64(min(p.estN, playEstN))
		if p.estN >= playWindow/5 {
			p.setDelay(int64(p.est))
		}
	}
	maxD := p.ms(playMaxMs)
	if late {
		w.lates++
		p.steady = 0
		p.c.underruns.Add(1)
		// Grow by a frame if the delay, once measured, stays within the
		// most.
		if p.adjust <= 0 && p.estN >= playWindow && p.delay+p.frame <= maxD {
			p.adjust = 1
			p.moveDelay(p.frame)
			p.restartWindow()
		}
		return
	}
	if w.n < playWindow {
		return
	}
	if w.lates == 0 {
		p.steady++
	}
	switch {
	case w.minSlack >= 2*p.frame:
		// Every packet came two frames or more ahead of its time: a backlog
		// (audio kept before Start) or a PBX running ahead. Shrink now,
		// to leave a frame of slack.
		p.adjust = -(w.minSlack/p.frame - 1)
		p.steady = 0
	case p.steady >= playSteadyWins && w.minSlack >= p.frame:
		p.adjust = -1
		p.steady = 0
	case p.delay > maxD:
		// Grown past the most on a first guess of the delay (before the
		// packets had measured it).
		p.adjust = -1
	}
	p.restartWindow()
}

// moveDelay notes that the timeline moved by d units against the play
// point.
func (p *playout) moveDelay(d int64) {
	p.est += float64(d)
	p.setDelay(p.delay + d)
}

func (p *playout) setDelay(d int64) {
	p.delay = d
	p.c.playoutDelayMs.Store(uint64(max(d, 0) * 1000 / p.rate))
}

func (p *playout) restartWindow() { p.win.n, p.win.lates, p.win.sum, p.win.minSlack = 0, 0, 0, 0 }

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
	if p.allValid(from, to) {
		return putDuplicate
	}
	p.room(to)
	ring := int64(len(p.pcm))
	i := from % ring
	c := copy(p.pcm[i:], pcm)
	copy(p.pcm, pcm[c:])
	p.setValid(from, to)
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
	first := (from + p.frame/2) / p.frame * p.frame
	if first < p.rd {
		p.c.late.Add(1)
		return putLate
	}
	frames := max((dur+p.frame/2)/p.frame, 1)
	p.room(first + frames*p.frame)
	s := p.slot(first)
	if s.n > 0 && s.pos == from {
		return putDuplicate
	}
	s.pos, s.dur, s.covered = from, dur, false
	s.n = copy(s.buf[:], payload)
	for k := int64(1); k < frames; k++ {
		if c := p.slot(first + k*p.frame); c.n == 0 {
			c.covered = true
		}
	}
	p.end = max(p.end, first+frames*p.frame)
	return putOK
}

func (p *playout) slot(pos int64) *playSlot { return &p.slots[pos/p.frame%int64(len(p.slots))] }

// get plays the next frame at time now: PCM into pcm, or a packet into pkt
// (n bytes, lasting dur units). It returns the setup the audio belongs to,
// and the shift by which the pacer is to move its next tick (none yet).
func (p *playout) get(now int64, pcm []int16, pkt []byte) (kind playKind, n int, dur int64, s *sipSetup, shift time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		// What was kept before the start is the delay from now on; it is
		// to come down to the usual by skipping quiet frames.
		p.running = true
		p.setDelay(p.end - p.rd)
		p.est, p.estN = float64(p.delay), 0
		if excess := p.delay - p.ms(playMinMs); excess >= p.frame {
			p.adjust = -(excess / p.frame)
		}
	}
	p.tickAt = now
	if p.adjust > 0 {
		// Grow: a frame of silence, the read point stays.
		p.adjust--
		p.tickPos = p.rd - p.frame
		if !p.packets {
			clear(pcm[:p.frame])
		}
		return playSilence, 0, 0, p.setup, 0
	}
	if p.adjust < 0 {
		p.shrink()
	}
	p.tickPos = p.rd
	if p.packets {
		kind, n, dur = p.getPacket(pkt)
	} else {
		kind = kindOf(p.read(p.rd, pcm[:p.frame]))
	}
	p.rd += p.frame
	return kind, n, dur, p.setup, 0
}

func kindOf(audio bool) playKind {
	if audio {
		return playAudio
	}
	return playSilence
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
	for p.adjust < 0 && skipped < playMaxSkips && (p.quiet(p.rd) || p.shrinkWait >= force) {
		p.discard(p.rd + p.frame)
		p.adjust++
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

func (p *playout) getPacket(out []byte) (playKind, int, int64) {
	s := p.slot(p.rd)
	switch {
	case s.n > 0:
		n, dur := copy(out, s.buf[:s.n]), s.dur
		s.n, s.covered = 0, false
		return playPacket, n, dur
	case s.covered:
		s.covered = false
		return playCovered, 0, 0
	}
	return playSilence, 0, 0
}

// read copies the held audio from pos into out (zeros where there is
// none), clears it from the ring and reports whether there was any.
func (p *playout) read(pos int64, out []int16) bool {
	to := pos + int64(len(out))
	if !p.anyValid(pos, to) {
		clear(out)
		return false
	}
	ring := int64(len(p.pcm))
	i := pos % ring
	c := copy(out, p.pcm[i:])
	copy(out[c:], p.pcm)
	// Quanta never written hold zeros: the ring is cleared as it is read.
	p.clearRange(pos, to)
	return true
}

// discard drops the held audio before to and moves the read point there.
func (p *playout) discard(to int64) {
	if to <= p.rd {
		return
	}
	if p.packets {
		for pos := p.rd; pos < to; pos += p.frame {
			s := p.slot(pos)
			s.n, s.covered = 0, false
		}
	} else {
		p.clearRange(p.rd, to)
	}
	p.rd = to
}

// quiet reports whether the frame at pos holds nothing, or nothing loud.
func (p *playout) quiet(pos int64) bool {
	if p.packets {
		return p.slot(pos).n == 0
	}
	n := p.frame
	if !p.anyValid(pos, pos+n) {
		return true
	}
	var sum int64
	ring := int64(len(p.pcm))
	for k := pos; k < pos+n; k++ {
		v := int64(p.pcm[k%ring])
		sum += v * v
	}
	return sum < n*playQuietLevel
}

// The validity bits: one per quantum of the PCM ring.

func (p *playout) bit(pos int64) (word int, mask uint64) {
	b := pos / p.q % int64(len(p.valid)*64)
	return int(b / 64), 1 << (b % 64)
}

func (p *playout) setValid(from, to int64) {
	for k := from / p.q; k*p.q < to; k++ {
		w, m := p.bit(k * p.q)
		p.valid[w] |= m
	}
}

func (p *playout) allValid(from, to int64) bool {
	for k := from / p.q; k*p.q < to; k++ {
		if w, m := p.bit(k * p.q); p.valid[w]&m == 0 {
			return false
		}
	}
	return true
}

func (p *playout) anyValid(from, to int64) bool {
	for k := from / p.q; k*p.q < to; k++ {
		if w, m := p.bit(k * p.q); p.valid[w]&m != 0 {
			return true
		}
	}
	return false
}

// clearRange zeros the ring and its validity from from to to.
func (p *playout) clearRange(from, to int64) {
	if to-from >= int64(len(p.pcm)) {
		clear(p.pcm)
		clear(p.valid)
		return
	}
	ring := int64(len(p.pcm))
	i, j := from%ring, to%ring
	if i < j {
		clear(p.pcm[i:j])
	} else {
		clear(p.pcm[i:])
		clear(p.pcm[:j])
	}
	for k := from / p.q; k*p.q < to; k++ {
		if k*p.q >= from { // a quantum only partly cleared keeps its bit
			w, m := p.bit(k * p.q)
			p.valid[w] &^= m
		}
	}
}

// held is the number of units of audio held (tests).
func (p *playout) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.packets {
		n := 0
		for i := range p.slots {
			if p.slots[i].n > 0 {
				n++
			}
		}
		return n * int(p.frame)
	}
	n := 0
	for _, w := range p.valid {
		n += bits.OnesCount64(w)
	}
	return n * int(p.q)
}

// skip drops frames frames at the read point: the pacer skipped them.
func (p *playout) skip(frames int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.discard(p.rd + frames*p.frame)
}

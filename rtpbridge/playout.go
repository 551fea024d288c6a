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
// Delay. A packet's delay is how long after its arrival its first sample is
// played (the pacer's frame counts: a packet that arrives just before a
// tick that plays it at once waits 0). The buffer starts with a target of
// 20 ms, grows it by 10 ms whenever a packet comes late, up to 40 ms, and
// shrinks it back when two seconds of packets all came with 10 ms to spare;
// it steers the packets' mean delay to the target by inserting 10 ms of
// silence or skipping 10 ms of audio (a quiet stretch when it can find one)
// at the read point. In passthrough (whole Opus packets) the unit is a 20 ms
// frame instead of 10 ms.
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
// back down to the target by skipping quiet stretches.
//
// One mutex, taken once per packet by the SIP reader and once per frame by
// the pacer, guards it: no other goroutine ever takes it.

const (
	playMinMs      = 20
	playMaxMs      = 40
	playStepMs     = 10
	playWindow     = 25   // packets per measuring window (half a second at 20 ms)
	playSteadyWins = 4    // windows without a late packet before the target may shrink
	playCapacityMs = 1000 // most audio held
	playResyncMs   = 500
	playLateRun    = 3   // late packets in a row that restart the timeline
	playQuantumDiv = 400 // validity is kept per 2.5 ms
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
	step     int64     // units per adjustment
	mul      int64     // timeline units per RTP timestamp unit (2 for G.722)
	capacity int64     // most units held
	q        int64     // units per validity bit (PCM)

	pcm   []int16    // PCM ring, indexed by timeline position
	valid []uint64   // a bit per quantum of pcm
	slots []playSlot // passthrough ring, one slot per frame

	rd, end int64 // next unit to play; end of the audio held
	synced  bool
	lateRun int // late packets in a row
	ssrc    uint32
	lastTS  uint32 // newest timestamp seen, and its place on the extended timeline
	lastExt int64
	off     int64 // timeline position = extended timestamp · mul + off

	running bool  // the pacer has started
	tickAt  int64 // when the last frame was played (ns, the bridge's clock)
	tickPos int64 // where on the timeline that frame started

	target     int64 // delay aimed at, units
	adjust     int64 // pending: > 0 insert that much silence, < 0 skip that much audio
	shrinkWait int
	win        struct {
		n, lates int
		sum, min int64
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
		p.step = p.frame
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
		p.step = p.rate * playStepMs / 1000
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
	p.target = p.rate * playMinMs / 1000
	p.adjust, p.shrinkWait, p.steady = 0, 0, 0
	p.win.n, p.win.lates, p.win.sum, p.win.min = 0, 0, 0, 0
	p.c.playoutDelayMs.Store(uint64(playMinMs))
}

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
func (p *playout) place(h rtpHeader, n int64, now int64) (from int64, late bool) {
	if !p.synced || h.ssrc != p.ssrc {
		p.resync(h, now)
	}
	d := int64(int32(h.ts - p.lastTS))
	ext := p.lastExt + d
	if d > 0 {
		p.lastTS, p.lastExt = h.ts, ext
	}
	from = ext*p.mul + p.off
	if !p.running {
		return from, false
	}
	pp := p.playPoint(now)
	resync := p.rate * playResyncMs / 1000
	late = from < p.rd
	if late {
		p.lateRun++
	} else {
		p.lateRun = 0
	}
	switch {
	case from+n < p.rd-resync || from > max(p.end, pp+p.target)+resync || p.lateRun >= playLateRun:
		// Off the timeline: the PBX's timestamps jumped, or its stream
		// slipped later than the delay can grow.
		p.c.resets.Add(1)
		fallthrough
	case h.marker && p.end <= p.rd:
		p.resync(h, now)
		from = p.off
		late = false
	}
	p.measure(from-pp, late)
	return from, late
}

// resync starts the timeline afresh with the packet h: it is played after
// the target delay, and after whatever is still held.
func (p *playout) resync(h rtpHeader, now int64) {
	base := p.rd
	if p.running {
		base = p.playPoint(now) + p.target
	}
	base = max(base, p.end, p.rd)
	if u := p.frame; p.packets && base%u != 0 {
		base += u - base%u
	} else if !p.packets && base%p.q != 0 {
		base += p.q - base%p.q
	}
	p.synced, p.ssrc, p.lateRun = true, h.ssrc, 0
	p.lastTS, p.lastExt, p.off = h.ts, 0, base
}

// measure keeps the delay statistics and adapts the target to them.
func (p *playout) measure(delay int64, late bool) {
	w := &p.win
	if w.n == 0 || delay < w.min {
		w.min = delay
	}
	w.n++
	w.sum += delay
	maxT := p.rate * playMaxMs / 1000
	if late {
		w.lates++
		p.c.underruns.Add(1)
		if p.target+p.step <= maxT {
			p.setTarget(p.target + p.step)
			p.adjust = max(p.adjust, 0) + p.step
			p.restartWindow()
			p.steady = 0
			return
		}
	}
	if w.n < playWindow {
		return
	}
	mean := w.sum / int64(w.n)
	if w.lates == 0 {
		p.steady++
	} else {
		p.steady = 0
	}
	if p.steady >= playSteadyWins && w.min >= p.frame+p.step && p.target-p.step >= p.rate*playMinMs/1000 {
		p.setTarget(p.target - p.step)
		p.steady = 0
	}
	// Steer the mean delay to the target, a step at a time.
	switch excess := mean - p.target; {
	case excess >= p.step:
		p.adjust = -(excess / p.step * p.step)
	case excess <= -p.step && mean+p.step <= maxT:
		p.adjust = p.step
	default:
		p.adjust = 0
	}
	p.restartWindow()
}

func (p *playout) setTarget(t int64) {
	p.target = t
	p.c.playoutDelayMs.Store(uint64(t * 1000 / p.rate))
}

func (p *playout) restartWindow() { p.win.n, p.win.lates, p.win.sum, p.win.min = 0, 0, 0, 0 }

// room makes sure the buffer can hold up to to, dropping the oldest audio
// (counted as an overrun) if not.
func (p *playout) room(to int64) {
	if over := to - p.rd - p.capacity; over > 0 {
		if p.packets {
			over += (p.frame - over%p.frame) % p.frame
		}
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
	from, _ := p.place(h, n, now)
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
	from, _ := p.place(h, dur, now)
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
// (n bytes, lasting dur units). It returns the setup the audio belongs to.
func (p *playout) get(now int64, pcm []int16, pkt []byte) (kind playKind, n int, dur int64, s *sipSetup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		p.running = true
		p.setTarget(p.target)
	}
	p.tickAt = now
	if p.packets {
		kind, n, dur = p.getPacket(pkt)
	} else {
		kind = p.getPCM(pcm[:p.frame])
	}
	return kind, n, dur, p.setup
}

func (p *playout) getPCM(out []int16) playKind {
	switch {
	case p.adjust > 0:
		// Grow: a step of silence first, the frame's audio after it.
		s := p.step
		clear(out[:s])
		some := p.read(p.rd, out[s:])
		p.tickPos = p.rd - s
		p.rd += p.frame - s
		p.adjust -= s
		p.restartWindow()
		return kindOf(some)
	case p.adjust < 0:
		p.shrink()
	}
	some := p.read(p.rd, out)
	p.tickPos = p.rd
	p.rd += p.frame
	return kindOf(some)
}

func kindOf(audio bool) playKind {
	if audio {
		return playAudio
	}
	return playSilence
}

// shrink skips audio at the read point for a pending shrink: a step of it
// where that is quiet (or after waiting too long for quiet), and whole
// quiet frames while more than a frame is to go (a backlog).
func (p *playout) shrink() {
	skipped := 0
	for p.adjust <= -p.frame && skipped < playMaxSkips && p.quiet(p.rd, p.frame) {
		p.discard(p.rd + p.frame)
		p.adjust += p.frame
		skipped++
	}
	if p.adjust < 0 && (p.quiet(p.rd, p.step) || p.shrinkWait >= playForceAfter) {
		p.discard(p.rd + p.step)
		p.adjust += p.step
		skipped++
	}
	if skipped > 0 {
		p.shrinkWait = 0
		p.c.catchUps.Add(uint64(skipped))
		p.restartWindow()
	} else {
		p.shrinkWait++
	}
}

func (p *playout) getPacket(out []byte) (playKind, int, int64) {
	if p.adjust > 0 {
		// Grow: a frame of silence, the read point stays.
		p.tickPos = p.rd - p.frame
		p.adjust = max(p.adjust-p.frame, 0)
		p.restartWindow()
		return playSilence, 0, 0
	}
	if p.adjust < 0 {
		if s := p.slot(p.rd); s.n == 0 || p.shrinkWait >= playForceAfter {
			p.discard(p.rd + p.frame)
			p.adjust = min(p.adjust+p.frame, 0)
			p.shrinkWait = 0
			p.c.catchUps.Add(1)
			p.restartWindow()
		} else {
			p.shrinkWait++
		}
	}
	s := p.slot(p.rd)
	p.tickPos = p.rd
	p.rd += p.frame
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

// quiet reports whether the n units at pos hold nothing, or nothing loud.
func (p *playout) quiet(pos, n int64) bool {
	if p.packets {
		return p.slot(pos).n == 0
	}
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

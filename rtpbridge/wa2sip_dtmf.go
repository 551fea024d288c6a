package rtpbridge

import (
	"fmt"
	"time"
)

// Digits toward the PBX. WhatsApp sends RFC 4733 telephone-events on the
// payload type its offer gave telephone-event/8000 in place of audio (event
// timestamp on the audio's clock: 48 kHz for Opus, 8 kHz for G.711;
// duration in 8 kHz units). Each new event (told by its timestamp) is one digit: it is
// reported to OnDigit and, as the mode and the PBX's answer say, goes on
//
//   - as RFC 4733 events on the PBX's telephone-event payload type, in the
//     bridge's one SIP stream: start packet with the marker bit, an update
//     per update received, three end packets; stamped on the SIP stream's
//     clock at the point the event takes in it (its own time when it
//     follows the audio, else now), the audio after it moved behind it;
//   - or as a Q.23 tone pair in the audio, for as long as the event lasts;
//   - or nowhere (DTMFModeInfo: the gateway sends SIP INFO).
//
// Digits queued with SendDigitToSIP are played in the stream's next frames,
// one 20 ms frame after another, as events in place of the audio or as
// tones over it. Everything here runs on the WhatsApp reader goroutine, so
// a queued digit waits for WhatsApp's next audio packet (WhatsApp sends one
// every 20 ms while the call is up).

// dtmfMethod is how digits reach one side.
type dtmfMethod uint8

const (
	dtmfNone   dtmfMethod = iota // only reported through OnDigit
	dtmfEvents                   // RFC 4733 telephone-events
	dtmfTones                    // in-band tone pairs in the audio
)

const (
	dtmfUnitsPerMs = 8 // telephone-event/8000: duration units per millisecond
	// eventSlackMs is how long after an event's last update audio may
	// still belong to its time; audio later than that means the event's
	// end packets were lost.
	eventSlackMs = 60
	// digitPauseFrames is the silence between two queued digits, so that
	// the same digit twice is heard twice.
	digitPauseFrames = 3
)

// digitRequest is a digit queued by SendDigitToSIP or SendDigitToWhatsApp.
type digitRequest struct {
	code uint8
	dur  uint32 // 8 kHz units
}

// methodToSIP is how WhatsApp's digits go to the PBX under setup s.
func methodToSIP(mode DTMFMode, s *sipSetup) dtmfMethod {
	switch mode {
	case DTMFModeInfo:
		return dtmfNone
	case DTMFModeInband:
		if !s.codec.passthrough {
			return dtmfTones
		}
	}
	if s.dtmfPT != 0 {
		return dtmfEvents
	}
	return dtmfNone
}

// sendMethodToSIP is how a digit given to SendDigitToSIP goes to the PBX:
// as the mode says, else as events if the PBX takes them, else as tones.
func sendMethodToSIP(mode DTMFMode, s *sipSetup) dtmfMethod {
	if m := methodToSIP(mode, s); m != dtmfNone {
		return m
	}
	if s.dtmfPT != 0 {
		return dtmfEvents
	}
	if !s.codec.passthrough {
		return dtmfTones
	}
	return dtmfNone
}

// sipEvent is the digit being sent toward the PBX.
type sipEvent struct {
	active bool
	fromWA bool // relayed from WhatsApp (else queued by SendDigitToSIP)
	method dtmfMethod
	code   uint8
	volume uint8
	inTime bool   // placed at its own WhatsApp time, which the audio mapping follows
	waTS   uint32 // its WhatsApp timestamp
	ts     uint32 // its SIP timestamp
	dur    uint32 // 8 kHz units so far
	target uint32 // queued digits: the whole duration
	frames int    // tone frames played
	sent   int    // event packets sent
}

// toSIPDTMF is the WhatsApp reader's DTMF state.
type toSIPDTMF struct {
	mode      DTMFMode
	dtmfClock uint32 // the PBX's telephone-event clock
	onDigit   func(from string, digit rune)
	queue     chan digitRequest

	method dtmfMethod // for WhatsApp's events, under the current setup
	pt     uint8
	frame8 uint32 // one frame in 8 kHz units
	wa     eventTrack

	cur       sipEvent
	hold      bool   // audio may not go out before holdUntil
	holdUntil uint32 // the end of an event relayed at the current time
	pause     int    // frames to wait before the next queued digit
	tone      dtmfTone
	toneBuf   []int16
}

// dtmfStage names what happens to WhatsApp's telephone-events.
type dtmfStage string

func (s dtmfStage) String() string { return string(s) }

// stage is the chain's DTMF stage under setup s, nil when there is nothing
// to show.
func (t *toSIPDTMF) stage(s *sipSetup) fmt.Stringer {
	switch methodToSIP(t.mode, s) {
	case dtmfEvents:
		return dtmfStage(fmt.Sprintf("telephone-event → rfc4733/%d", s.dtmfPT))
	case dtmfTones:
		return dtmfStage("telephone-event → dtmf tones")
	}
	if t.mode == DTMFModeInfo {
		return dtmfStage("telephone-event → OnDigit (info)")
	}
	return nil
}

func (t *toSIPDTMF) adopt(s *sipSetup) {
	t.pt = s.dtmfPT
	t.method = methodToSIP(t.mode, s)
	t.frame8 = uint32(s.frame.d/time.Millisecond) * dtmfUnitsPerMs
	if n := s.frame.samples; n > len(t.toneBuf) {
		t.toneBuf = make([]int16, n)
	}
}

// telephoneEvent takes an RFC 4733 packet from WhatsApp. WhatsApp sends
// them in the audio packets' sequence space, so they move the expected
// sequence number on (they are not losses).
func (d *waToSIP) telephoneEvent(h rtpHeader, payload []byte, v seqVerdict, missing int) {
	d.consume(h, v, missing)
	ev, _ := parseEvent(payload) // its length was checked
	t := &d.dtmf
	if t.wa.isNew(h.ts, ev.code) && t.wa.open() {
		t.endWA(d) // the previous event's end packets were lost
	}
	switch t.wa.note(h.ts, ev) {
	case evBegin:
		t.beginWA(d, h.ts, ev)
		if ev.end {
			t.endWA(d)
		}
	case evUpdate:
		t.update(d, ev.dur)
	case evEnd:
		t.update(d, ev.dur)
		t.endWA(d)
	}
}

// beginWA starts relaying a new event from WhatsApp stamped waTS.
func (t *toSIPDTMF) beginWA(d *waToSIP, waTS uint32, ev eventPacket) {
	if r := codeDigit(ev.code); r != 0 {
		d.c.digits.Add(1)
		if t.onDigit != nil {
			t.onDigit("whatsapp", r)
		}
	}
	m := t.method
	if m == dtmfTones && ev.code > 15 {
		m = dtmfNone // no tone for flash and the like
	}
	if m == dtmfNone {
		return
	}
	t.finish(d)
	gap := int32(-1)
	if d.track.started {
		gap = d.track.tsGap(waTS)
	}
	inTime := gap >= 0 && gap <= d.maxJump
	var ts uint32
	if d.codec.passthrough {
		ts = d.out.ts
		if inTime && d.passSynced {
			ts = waTS + d.passOff
		}
	} else {
		if inTime {
			d.discontinuity(gap)
			d.track.nextTS = waTS
		} else {
			d.discontinuity(0)
		}
		ts = d.out.ts
	}
	t.cur = sipEvent{active: true, fromWA: true, method: m, code: ev.code, volume: ev.volume, inTime: inTime, waTS: waTS, ts: ts}
	d.c.digitsSent.Add(1)
	t.update(d, ev.dur)
}

// update moves the relayed event on to dur (8 kHz units).
func (t *toSIPDTMF) update(d *waToSIP, dur uint16) {
	c := &t.cur
	if !c.active || !c.fromWA {
		return
	}
	c.dur = max(c.dur, uint32(dur))
	switch c.method {
	case dtmfEvents:
		t.sendEvent(d, false)
	case dtmfTones:
		for uint32(c.frames+1)*t.frame8 <= c.dur {
			t.toneFrame(d)
		}
	}
}

// endWA ends WhatsApp's current event.
func (t *toSIPDTMF) endWA(d *waToSIP) {
	t.wa.close()
	if t.cur.active && t.cur.fromWA {
		t.end(d)
	}
}

// end finishes the digit being sent: three end packets, or the rest of the
// tone.
func (t *toSIPDTMF) end(d *waToSIP) {
	c := &t.cur
	switch c.method {
	case dtmfEvents:
		for range endRepeats {
			t.sendEvent(d, true)
		}
		t.hold, t.holdUntil = true, c.ts+uint32(uint64(c.dur)*uint64(d.codec.clock)/8000)
	case dtmfTones:
		for uint32(c.frames)*t.frame8 < c.dur {
			t.toneFrame(d)
		}
	}
	c.active = false
	t.pause = digitPauseFrames
}

// finish ends the digit in progress now (another begins, or the codec
// changes).
func (t *toSIPDTMF) finish(d *waToSIP) {
	c := &t.cur
	if !c.active {
		return
	}
	if c.fromWA {
		t.wa.close()
	} else if c.method == dtmfTones {
		c.dur = uint32(c.frames) * t.frame8
	}
	t.end(d)
}

// takesAudio reports whether an Opus packet falls within the time of the
// event being relayed (its audio is dropped: the event has that time). Audio
// well after the event's last update ends it: its end packets were lost.
func (t *toSIPDTMF) takesAudio(d *waToSIP, h rtpHeader, v seqVerdict, missing int) bool {
	c := &t.cur
	if !c.active || !c.fromWA {
		return false
	}
	end := c.waTS + c.dur*(d.wa.clock/8000) + d.wa.clock/1000*eventSlackMs
	if v != seqRestart && int32(h.ts-end) < 0 {
		d.consume(h, v, missing)
		return true
	}
	t.endWA(d)
	return false
}

// sendEvent sends one RFC 4733 packet of the current digit.
func (t *toSIPDTMF) sendEvent(d *waToSIP, end bool) {
	c := &t.cur
	dur := min(uint64(c.dur)*uint64(t.dtmfClock)/8000, maxEventDur)
	n := putEvent(d.out.payload(), eventPacket{code: c.code, end: end, volume: c.volume, dur: uint16(dur)})
	d.out.sendAt(t.pt, n, c.ts, c.sent == 0)
	c.sent++
}

// toneFrame sends the next frame of the current digit's tone.
func (t *toSIPDTMF) toneFrame(d *waToSIP) {
	fr := t.toneBuf[:d.setup.frame.samples]
	t.writeTone(d, fr)
	d.encodeSend(fr)
	if t.cur.fromWA && t.cur.inTime {
		d.track.nextTS += d.setup.frame.waTS
	}
}

// writeTone writes the current digit's next frame into fr: the tone for as
// much of the digit as is left, silence after.
func (t *toSIPDTMF) writeTone(d *waToSIP, fr []int16) {
	c := &t.cur
	if c.frames == 0 {
		t.tone.start(c.code, d.codec.pcmRate)
	}
	left := int64(c.dur) - int64(c.frames)*int64(t.frame8)
	n := int(min(max(left, 0)*int64(d.codec.pcmRate)/8000, int64(len(fr))))
	t.tone.fill(fr[:n])
	clear(fr[n:])
	c.frames++
}

// slot offers the stream's next frame (durWA WhatsApp clock units) to a
// queued digit: it goes out as an event packet in place of the frame
// (true), or as a tone written over fr (false: the caller sends fr). fr is
// nil in passthrough.
func (t *toSIPDTMF) slot(d *waToSIP, fr []int16, durWA uint32) bool {
	c := &t.cur
	if !c.active {
		if t.pause > 0 {
			t.pause--
			return false
		}
		if !t.next(d, fr != nil) {
			return false
		}
	}
	if c.fromWA {
		return false
	}
	switch c.method {
	case dtmfEvents:
		c.dur = min(c.dur+durWA*8000/d.wa.clock, c.target)
		last := c.dur >= c.target
		if last {
			for range endRepeats {
				t.sendEvent(d, true)
			}
			c.active = false
			t.pause = digitPauseFrames
		} else {
			t.sendEvent(d, false)
		}
		d.out.skip(uint32(uint64(durWA) * uint64(d.codec.clock) / uint64(d.wa.clock)))
		return true
	case dtmfTones:
		t.writeTone(d, fr)
		if uint32(c.frames)*t.frame8 >= c.dur {
			c.active = false
			t.pause = digitPauseFrames
		}
	}
	return false
}

// next starts the next queued digit, if there is one and a way to send it.
func (t *toSIPDTMF) next(d *waToSIP, pcm bool) bool {
	select {
	case r := <-t.queue:
		m := sendMethodToSIP(t.mode, d.setup)
		if m == dtmfNone || m == dtmfTones && !pcm {
			return false
		}
		t.cur = sipEvent{active: true, method: m, code: r.code, volume: dtmfVolume, target: r.dur, ts: d.out.ts}
		if m == dtmfTones {
			t.cur.dur = r.dur
		}
		d.c.digitsSent.Add(1)
		return true
	default:
		return false
	}
}

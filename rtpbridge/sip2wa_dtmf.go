package rtpbridge

import "fmt"

// Digits toward WhatsApp. They come from three places: RFC 4733 events from
// the PBX (on its telephone-event payload type, in any mode), tones found in
// the PBX's audio (DTMFModeInband), and SendDigitToWhatsApp (SIP INFO
// digits, handed in by the gateway). Each is reported once (OnDigit, for
// the first two) and queued for the pacer, which sends it as telephone-
// events on WhatsApp's telephone-event payload type in place of audio
// frames, one per 20 ms, in the one WhatsApp SSRC and sequence: the
// event's timestamp is where it starts on the audio clock (48 kHz for
// Opus, 8 kHz for G.711), its duration counts 8 kHz units (Meta negotiates
// telephone-event/8000; RFC 4733 §2.3.5 for the timestamp). A digit from the PBX starts when its first packet
// (or its tone) is seen and lasts until its end; the pacer then sends the
// end packet three times, in three frames, and Opus after. If WhatsApp's
// offer negotiated no telephone-event, the PBX's digits are only reported
// (OnDigit) and counted as unsent.

const (
	// maxOpenEvent bounds a digit whose end never comes (8 s, in 8 kHz
	// units).
	maxOpenEvent = 8000 * 8
	// defaultDigitMs is a digit's length when none is given.
	defaultDigitMs = 100
	minDigitMs     = 40
	maxDigitMs     = 5000
	digitQueueLen  = 32
)

// waDigit is a digit, or half of one, on its way to the pacer.
type waDigit struct {
	id         uint32 // pairs a digit's begin with its end
	code       uint8
	begin, end bool
	dur        uint32 // 8 kHz units, with end
}

// toWADTMF is the DTMF state of the SIP → WhatsApp direction: the SIP
// reader's side (events, detector) and the pacer's (the event generator).
type toWADTMF struct {
	mode      DTMFMode
	eventPT   uint8  // WhatsApp's telephone-event payload type, 0 if none
	dtmfClock uint32 // the PBX's telephone-event clock
	onDigit   func(from string, digit rune)
	queue     chan waDigit

	// The SIP reader's side.
	pbx    eventTrack
	pbxID  uint32
	lastID uint32
	det    *dtmfDetector
	detOn  bool
	detID  uint32 // the tone being reported, 0 if none
	detTS  uint32

	// The pacer's side.
	gen       waEventGen
	ahead     waDigit // one digit taken from the queue but not yet used
	haveAhead bool
}

// waEventGen is the telephone-event the pacer is sending.
type waEventGen struct {
	active  bool
	id      uint32
	code    uint8
	ts      uint32 // on WhatsApp's audio clock
	elapsed uint32 // 8 kHz units sent
	target  uint32 // 0 until the end is known
	ends    int    // end packets still to send
	sent    int
}

// detects reports whether PBX audio is searched for tones under setup s.
func (t *toWADTMF) detects(s *sipSetup) bool {
	return t.mode == DTMFModeInband && !s.codec.passthrough
}

// stage is the chain's stage for the PBX's events under setup s, nil if
// it negotiated none.
func (t *toWADTMF) stage(s *sipSetup) fmt.Stringer {
	switch {
	case s.dtmfPT == 0:
		return nil
	case t.eventPT == 0:
		return dtmfStage(fmt.Sprintf("rfc4733/%d → OnDigit (whatsapp has no telephone-event)", s.dtmfPT))
	}
	return dtmfStage(fmt.Sprintf("rfc4733/%d → telephone-event %d", s.dtmfPT, t.eventPT))
}

// detector is the chain's detector stage for setup s.
func (t *toWADTMF) detector(*sipSetup) fmt.Stringer { return dtmfStage("dtmf detect (goertzel)") }

// adopt takes up setup s on the SIP reader's side.
func (t *toWADTMF) adopt(s *sipSetup) {
	t.detOn = t.detects(s)
	if t.detOn && (t.det == nil || t.det.rate != s.codec.pcmRate) {
		t.det = newDTMFDetector(s.codec.pcmRate)
	}
}

// queueDigit hands a digit to the pacer; it is dropped if the queue is
// full (no goroutine ever waits on it), or if WhatsApp takes no events.
func (t *toWADTMF) queueDigit(x waDigit) bool {
	if t.eventPT == 0 {
		return false
	}
	select {
	case t.queue <- x:
		return true
	default:
		return false
	}
}

// found reports a digit seen on the SIP side and starts it toward
// WhatsApp; it returns the id its end will carry.
func (t *toWADTMF) found(d *sipToWhatsApp, code uint8) uint32 {
	if r := codeDigit(code); r != 0 {
		d.c.digits.Add(1)
		if t.eventPT == 0 {
			d.c.digitsUnsent.Add(1)
		}
		if t.onDigit != nil {
			t.onDigit("sip", r)
		}
	}
	t.lastID++
	if t.lastID == 0 {
		t.lastID = 1
	}
	t.queueDigit(waDigit{id: t.lastID, code: code, begin: true})
	return t.lastID
}

// event takes an RFC 4733 packet from the PBX.
func (t *toWADTMF) event(d *sipToWhatsApp, h rtpHeader, payload []byte) {
	ev, ok := parseEvent(payload)
	if !ok {
		d.c.malformed.Add(1)
		return
	}
	if t.pbx.isNew(h.ts, ev.code) && t.pbx.open() {
		t.endPBX() // its end packets were lost
	}
	switch t.pbx.note(h.ts, ev) {
	case evBegin:
		t.pbxID = t.found(d, ev.code)
		if ev.end {
			t.endPBX()
		}
	case evEnd:
		t.endPBX()
	}
}

// endPBX ends the PBX's current event toward WhatsApp.
func (t *toWADTMF) endPBX() {
	t.pbx.close()
	t.queueDigit(waDigit{id: t.pbxID, code: t.pbx.code, end: true, dur: uint32(uint64(t.pbx.dur) * 8000 / uint64(t.dtmfClock))})
}

// audio sees an audio packet from the PBX: one well after an open event's
// last update means the event's end packets were lost.
func (t *toWADTMF) audio(d *sipToWhatsApp, h rtpHeader) {
	if !t.pbx.open() {
		return
	}
	clock := uint64(d.setup.codec.clock)
	end := t.pbx.ts + uint32(uint64(t.pbx.dur)*clock/uint64(t.dtmfClock)+clock*eventSlackMs/1000)
	if int32(h.ts-end) >= 0 {
		t.endPBX()
	}
}

// restart forgets the old stream's digits (a new SSRC).
func (t *toWADTMF) restart(d *sipToWhatsApp) {
	if t.pbx.open() {
		t.endPBX()
	}
	t.pbx = eventTrack{}
	if t.detID != 0 {
		t.queueDigit(waDigit{id: t.detID, end: true})
		t.detID = 0
	}
	if t.det != nil {
		t.det.reset()
	}
}

// detect searches one packet's PCM for tones (DTMFModeInband).
func (t *toWADTMF) detect(d *sipToWhatsApp, h rtpHeader, pcm []int16) {
	if !t.detOn {
		return
	}
	for len(pcm) > 0 {
		n, what, code, dur := t.det.feed(pcm)
		pcm = pcm[n:]
		switch what {
		case detectBegin:
			t.detID = t.found(d, code)
		case detectEnd:
			if t.detID != 0 {
				t.queueDigit(waDigit{id: t.detID, code: code, end: true, dur: uint32(dur.Milliseconds()) * dtmfUnitsPerMs})
				t.detID = 0
			}
		}
	}
}

// take returns the next digit for the pacer.
func (t *toWADTMF) take() (waDigit, bool) {
	if t.haveAhead {
		t.haveAhead = false
		return t.ahead, true
	}
	select {
	case x := <-t.queue:
		return x, true
	default:
		return waDigit{}, false
	}
}

// peek looks at the next digit without taking it.
func (t *toWADTMF) peek() (waDigit, bool) {
	if !t.haveAhead {
		select {
		case t.ahead = <-t.queue:
			t.haveAhead = true
		default:
		}
	}
	return t.ahead, t.haveAhead
}

// slot sends this frame's telephone-event in place of the audio if a digit
// is playing or waiting (the pacer goroutine).
func (t *toWADTMF) slot(d *sipToWhatsApp) bool {
	g := &t.gen
	frame8 := d.waTS * 8000 / d.wa.clock
	if !g.active {
		x, ok := t.take()
		if !ok || !x.begin {
			return false // nothing, or the end of a digit already cut short
		}
		*g = waEventGen{active: true, id: x.id, code: x.code, ts: d.out.ts}
		if x.end {
			g.target = max(x.dur, 1)
		}
		d.c.digitsSent.Add(1)
	} else if g.target == 0 && g.ends == 0 {
		if x, ok := t.peek(); ok {
			switch {
			case x.end && x.id == g.id:
				g.target = max(x.dur, g.elapsed, 1)
				t.haveAhead = false
			case x.begin:
				g.target = max(g.elapsed, 1) // the next digit waits: this one ends now
			default:
				t.haveAhead = false // a stale end
			}
		}
	}
	if g.ends == 0 {
		g.elapsed += frame8
		if g.target != 0 && g.elapsed >= g.target || g.elapsed >= maxOpenEvent {
			g.ends = endRepeats
		}
	}
	end := g.ends > 0
	n := putEvent(d.out.payload(), eventPacket{code: g.code, end: end, volume: dtmfVolume, dur: uint16(min(g.elapsed, maxEventDur))})
	d.out.sendAt(t.eventPT, n, g.ts, g.sent == 0)
	d.out.skip(d.waTS)
	g.sent++
	if end {
		if g.ends--; g.ends == 0 {
			g.active = false
		}
	}
	return true
}

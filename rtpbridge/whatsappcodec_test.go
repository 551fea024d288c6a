package rtpbridge

import (
	"strings"
	"testing"
)

// opusWA is a WhatsApp leg of Meta's Opus (PT 111, telephone-event 126).
func opusWA(t testing.TB) *waCodec {
	t.Helper()
	w, err := newWACodec(Codec{}, metaOpusPT, metaDTMFPT)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// A WhatsApp leg's codec: Opus by default, G.711 on its static (or a
// dynamic) payload type with one telephone-event beside it, and nothing
// else; its silence frame is 20 ms of the law's zero.
func TestWhatsAppCodecChecks(t *testing.T) {
	for _, tc := range []struct {
		c        Codec
		opus, ev uint8
		err      string // "" when accepted
		silence  byte
	}{
		{c: Codec{}, opus: 111, ev: 126},
		{c: Codec{Name: "opus", PayloadType: 111}, ev: 126},
		{c: Codec{Name: "PCMU"}, ev: 126, silence: 0xFF},
		{c: Codec{Name: "pcma", PayloadType: 8, ClockRate: 8000}, ev: 126, silence: 0xD5},
		{c: Codec{Name: "PCMA", PayloadType: 100}, silence: 0xD5},
		{c: Codec{Name: "PCMU"}, opus: 111, err: "one audio codec"},
		{c: Codec{Name: "PCMU", PayloadType: 3}, err: "neither static"},
		{c: Codec{Name: "PCMU", PayloadType: 126}, ev: 126, err: "share"},
		{c: Codec{Name: "PCMU"}, ev: 13, err: "not dynamic"},
		{c: Codec{Name: "PCMU", ClockRate: 16000}, err: "8000 Hz"},
		{c: Codec{Name: "G722", PayloadType: 9}, err: "not opus, PCMU or PCMA"},
	} {
		w, err := newWACodec(tc.c, tc.opus, tc.ev)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v opus %d ev %d: error %v, want %q", tc.c, tc.opus, tc.ev, err, tc.err)
			}
			continue
		case err != nil:
			t.Errorf("%+v: %v", tc.c, err)
			continue
		}
		if tc.silence == 0 {
			if !w.isOpus() || w.clock != opusClock || w.pt != 111 {
				t.Errorf("%+v: %+v, want opus/48000 on 111", tc.c, w)
			}
			continue
		}
		if w.isOpus() || w.clock != 8000 || w.pt != tc.c.PayloadType || len(w.silence) != 160 {
			t.Errorf("%+v: %+v", tc.c, w)
		}
		for _, b := range w.silence {
			if b != tc.silence {
				t.Fatalf("%+v: silence byte %#x, want %#x", tc.c, b, tc.silence)
			}
		}
	}
}

// A G.711 WhatsApp leg is bridged to its own codec only: the PBX's other
// codecs are refused at New and at SetSIPCodec, which keeps the setup.
func TestG711WhatsAppTakesItsOwnCodecOnly(t *testing.T) {
	l := nullReader{closed: make(chan struct{})}
	base := Config{WhatsAppIn: l, WhatsAppOut: discard{}, SIPIn: l, SIPOut: discard{}, WhatsAppCodec: Codec{Name: "PCMU"}, WhatsAppDTMFPT: 126}
	for _, sip := range []Codec{{"PCMA", 8, 8000}, {"G722", 9, 8000}, opusSIP} {
		c := base
		c.SIPCodec = sip
		if b, err := New(c); err == nil {
			b.Close()
			t.Errorf("PCMU toward WhatsApp, %s toward the PBX: bridged", sip.Name)
		}
	}
	c := base
	c.SIPCodec = pcmu
	b, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.SetSIPCodec(Codec{"PCMA", 8, 8000}, 101); err == nil {
		t.Error("SetSIPCodec to PCMA on a PCMU WhatsApp leg: no error")
	}
	if err := b.SetSIPCodec(Codec{"PCMU", 0, 8000}, 101); err != nil {
		t.Errorf("SetSIPCodec to PCMU with another telephone-event: %v", err)
	}
	if got := b.String(); !strings.Contains(got, "whatsapp pcmu/8000") || !strings.Contains(got, "pcmu passthrough") {
		t.Errorf("chain %q", got)
	}
}

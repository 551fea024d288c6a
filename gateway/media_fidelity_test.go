package gateway_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagateway/wagateway/rtpbridge/audio"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// The caller presses digits; the agent's phone (baresip) reports exactly
// those digits, in order, once each.
func TestDTMFFromCallerReachesPhone(t *testing.T) {
	for _, mode := range []string{"rfc4733", "info"} {
		t.Run(mode, func(t *testing.T) {
			phone := startBaresip(t, 600)
			ctrl := phone.control(t)
			h := newHarness(t, harnessOptions{PBXAddr: phone.Addr, DTMF: mode})
			r := waitReport(t, h.call(t, wasim.CallOptions{Digits: "159#*0", Duration: 4 * time.Second}), 30*time.Second)
			if len(r.Violations) > 0 {
				t.Errorf("Meta rules broken: %v", r.Violations)
			}
			if got := ctrl.heardDigits(); got != "159#*0" {
				t.Errorf("baresip heard digits %q, want 159#*0", got)
			}
		})
	}
}

// The phone presses digits (RFC 4733, as a PBX's IVR prompt or an agent
// would); the caller hears exactly those, as PT 126 in its one SSRC.
func TestDTMFFromPhoneReachesCaller(t *testing.T) {
	phone := startBaresip(t, 600)
	ctrl := phone.control(t)
	h := newHarness(t, harnessOptions{PBXAddr: phone.Addr})
	c := h.call(t, wasim.CallOptions{Duration: 5 * time.Second})
	ctrl.waitEvent(t, "CALL_ESTABLISHED", 10*time.Second)
	time.Sleep(time.Second)
	for _, d := range []string{"2", "4", "6", "#"} {
		if err := ctrl.send("sndcode", d); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	r := waitReport(t, c, 30*time.Second)
	if r.DigitsReceived != "246#" {
		t.Errorf("the caller heard digits %q, want 246#", r.DigitsReceived)
	}
	if r.SSRCsReceived != 1 || len(r.Violations) > 0 {
		t.Errorf("%d SSRCs, violations %v", r.SSRCsReceived, r.Violations)
	}
}

// Every codec a PBX may pick carries the tone both ways: G.722 (Opus run at
// 16 kHz) and Opus passed through untouched.
func TestCodecPathsCarryTheTone(t *testing.T) {
	for _, codec := range []string{"G722", "opus"} {
		t.Run(codec, func(t *testing.T) {
			phone := startBaresipWith(t, baresipOptions{ToneHz: 600, Codecs: codec})
			h := newHarness(t, harnessOptions{PBXAddr: phone.Addr, Codecs: []string{codec}})
			r := waitReport(t, h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 3 * time.Second}), 30*time.Second)
			if len(r.Violations) > 0 {
				t.Errorf("Meta rules broken: %v", r.Violations)
			}
			if math.Abs(r.ReceivedFreqHz-600) > 20 || r.ReceivedPurity < 0.5 {
				t.Errorf("caller heard %.0f Hz (purity %.2f), want 600", r.ReceivedFreqHz, r.ReceivedPurity)
			}
			waitNoActiveCalls(t, h.gw)
			time.Sleep(300 * time.Millisecond)
			pcm, rate := phone.heard(t)
			if len(pcm) < rate {
				t.Fatalf("baresip recorded %d samples", len(pcm))
			}
			f, purity := audio.DominantFrequency(pcm[rate/2:], rate, 100, 3400, 10)
			if math.Abs(f-1000) > 20 || purity < 0.5 {
				t.Errorf("baresip heard %.0f Hz (purity %.2f) at %d Hz, want 1000", f, purity, rate)
			}
		})
	}
}

// 5 % of the caller's packets are lost at random, plus a burst of five: the
// phone still hears a continuous tone (FEC or concealment fills the gaps).
func TestLossIsConcealedTowardThePhone(t *testing.T) {
	phone := startBaresip(t, 600)
	h := newHarness(t, harnessOptions{PBXAddr: phone.Addr})
	r := waitReport(t, h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 4 * time.Second, DropPercent: 5, DropBurstAt: 80}), 30*time.Second)
	if r.PacketsDropped < 10 {
		t.Fatalf("only %d packets dropped: the loss was not applied", r.PacketsDropped)
	}
	waitNoActiveCalls(t, h.gw)
	time.Sleep(300 * time.Millisecond)
	pcm, rate := phone.heard(t)
	body := pcm[rate/2 : len(pcm)-rate/2]
	f, _ := audio.DominantFrequency(body, rate, 100, 3400, 10)
	if math.Abs(f-1000) > 20 {
		t.Errorf("baresip heard %.0f Hz, want 1000", f)
	}
	// No silent stretch longer than 20 ms in the middle of the call.
	win := rate / 100 // 10 ms
	silent, longest := 0, 0
	for i := 0; i+win <= len(body); i += win {
		if audio.RMS(body[i:i+win]) < -45 {
			silent++
			longest = max(longest, silent)
		} else {
			silent = 0
		}
	}
	if longest*10 > 20 {
		t.Errorf("the phone heard a %d ms gap", longest*10)
	}
}

// The PBX puts the caller on hold for 35 s (longer than WhatsApp's 20 s/30 s
// no-media hang-up) and resumes: the simulator, which enforces that
// hang-up, keeps the call, and the echoed tone flows again after resume.
func TestHoldAndResumeKeepTheCall(t *testing.T) {
	if testing.Short() {
		t.Skip("a 45 s call")
	}
	pbx := startSipp(t, "pbx_hold_resume.xml", 1, 90*time.Second)
	h := newHarness(t, harnessOptions{PBXAddr: pbx.Addr})
	r := waitReport(t, h.call(t, wasim.CallOptions{ToneHz: 1000, Duration: 42 * time.Second}), 70*time.Second)
	if r.Outcome != wasim.OutcomeCompletedByUser {
		t.Errorf("outcome %s (terminate code %d), want the caller to hang up after resume", r.Outcome, r.TerminateErrorCode)
	}
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if r.LongestSilenceGap > 100*time.Millisecond {
		t.Errorf("the gateway let WhatsApp's stream pause for %v during hold", r.LongestSilenceGap)
	}
	if math.Abs(r.ReceivedFreqHz-1000) > 20 {
		t.Errorf("after resume the caller heard %.0f Hz, want the echoed 1000 Hz", r.ReceivedFreqHz)
	}
	if err := pbx.wait(t, 10*time.Second); err != nil {
		t.Fatal(err) // recvonly answered to hold, sendrecv to resume, BYE received
	}
}

// In-band DTMF (a trunk with dtmf: inband): the caller's digits become tone
// pairs in the phone's audio, found again by the test's own detector; tone
// pairs the phone plays become digits the caller hears as PT 126 events.
func TestInbandDTMFBothWays(t *testing.T) {
	toPhone := "37"
	phoneWAV := dtmfToneWAV(t, "58", 8000)
	phone := startBaresipWith(t, baresipOptions{ToneHz: 600, WAV: phoneWAV})
	h := newHarness(t, harnessOptions{PBXAddr: phone.Addr, DTMF: "inband"})
	r := waitReport(t, h.call(t, wasim.CallOptions{Digits: toPhone, DigitsAfter: 1500 * time.Millisecond, Duration: 5 * time.Second}), 30*time.Second)
	if r.DigitsReceived != "58" {
		t.Errorf("the caller heard digits %q, want 58 (tones played by the phone)", r.DigitsReceived)
	}
	waitNoActiveCalls(t, h.gw)
	time.Sleep(300 * time.Millisecond)
	pcm, rate := phone.heard(t)
	if got := detectDTMF(pcm, rate); got != toPhone {
		t.Errorf("the phone's audio holds DTMF tones %q, want %q", got, toPhone)
	}
}

// DTMF tone pairs (ITU-T Q.23).
var (
	dtmfLow  = []float64{697, 770, 852, 941}
	dtmfHigh = []float64{1209, 1336, 1477, 1633}
	dtmfKeys = []string{"123A", "456B", "789C", "*0#D"}
)

// dtmfToneWAV writes 1 s of silence, then each digit as 150 ms of its tone
// pair and 150 ms of silence, then silence to 30 s.
func dtmfToneWAV(t *testing.T, digits string, rate int) string {
	t.Helper()
	pcm := make([]int16, rate*30)
	at := rate
	for _, d := range digits {
		lo, hi := -1, -1
		for i, row := range dtmfKeys {
			if j := strings.IndexRune(row, d); j >= 0 {
				lo, hi = i, j
			}
		}
		if lo < 0 {
			t.Fatalf("%q is not a DTMF key", d)
		}
		a := audio.NewTone(dtmfLow[lo], rate, 7000)
		b := audio.NewTone(dtmfHigh[hi], rate, 7000)
		n := rate * 150 / 1000
		x, y := make([]int16, n), make([]int16, n)
		a.Fill(x)
		b.Fill(y)
		for i := 0; i < n; i++ {
			pcm[at+i] = x[i] + y[i]
		}
		at += 2 * n
	}
	path := filepath.Join(t.TempDir(), "dtmf.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := audio.WriteWAV(f, pcm, rate); err != nil {
		t.Fatal(err)
	}
	return path
}

// detectDTMF finds tone pairs in 20 ms windows (the strongest row and column
// tone both well above every other DTMF frequency) and collapses runs.
func detectDTMF(pcm []int16, rate int) string {
	win := rate / 50
	var out []byte
	last, run := byte(0), 0
	for i := 0; i+win <= len(pcm); i += win {
		w := pcm[i : i+win]
		key := byte(0)
		if audio.RMS(w) > -40 {
			lo, loP, loNext := strongest(w, rate, dtmfLow)
			hi, hiP, hiNext := strongest(w, rate, dtmfHigh)
			if loP > 4*loNext && hiP > 4*hiNext && loP > 0.002 && hiP > 0.002 {
				key = dtmfKeys[lo][hi]
			}
		}
		if key == last {
			run++
		} else {
			last, run = key, 1
		}
		if key != 0 && run == 2 { // 40 ms of the same pair
			out = append(out, key)
		}
	}
	return string(out)
}

func strongest(w []int16, rate int, freqs []float64) (idx int, best, next float64) {
	for i, f := range freqs {
		p := audio.Goertzel(w, rate, f)
		switch {
		case p > best:
			next, best, idx = best, p, i
		case p > next:
			next = p
		}
	}
	return idx, best, next
}

// A PBX that answers without telephone-event, on a trunk in rfc4733 mode:
// the caller's digits reach it as SIP INFO (the default dtmf_fallback), in
// order (sipp's scenario checks each INFO), instead of being dropped.
func TestDTMFFallsBackToInfo(t *testing.T) {
	pbx := startSipp(t, "pbx_no_telephone_event.xml", 1, 40*time.Second)
	h := newOpsHarness(t, opsOptions{PBXAddr: pbx.Addr})
	c := h.call(t, wasim.CallOptions{Digits: "159", Duration: 4 * time.Second})
	r := waitReport(t, c, 30*time.Second)
	if len(r.Violations) > 0 {
		t.Errorf("Meta rules broken: %v", r.Violations)
	}
	if err := pbx.wait(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if rec := h.record(t, c.ID()); rec.DTMF != "info" || !rec.DTMFFallback {
		t.Errorf("record dtmf %q (fallback %v), want info by fallback", rec.DTMF, rec.DTMFFallback)
	}
}

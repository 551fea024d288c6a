package wasim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wagateway/wagateway/rtpbridge/g711"
)

// G.711 beside Opus. Meta offers PCMU and PCMA beside Opus when the
// business number's calling setting audio.additional_codecs lists them
// (Meta, Cloud API Calling, call settings: ["PCMA","PCMU"]). The simulator
// does the same: a caller's offer lists them after Opus 111, on their static
// numbers (RFC 3551 §6) with their rtpmaps, in the setting's order; when the
// business's answer picks one, the caller sends and hears that codec at 8
// kHz (one byte a sample, 160 a 20 ms frame) instead of Opus. Inferred: the
// order in the m-line (Meta's documents show no such offer).

// g711PT is a G.711 codec's static payload type.
func g711PT(name string) uint8 {
	if name == "PCMA" {
		return 8
	}
	return 0
}

// g711Named is the G.711 codec of a static payload type, "" for others.
func g711Named(pt uint8) string {
	switch pt {
	case 0:
		return "PCMU"
	case 8:
		return "PCMA"
	}
	return ""
}

// encodeG711 writes pcm (8 kHz) in law name into out (as long).
func encodeG711(name string, pcm []int16, out []byte) {
	if name == "PCMA" {
		g711.EncodeAlaw(pcm, out)
		return
	}
	g711.EncodeUlaw(pcm, out)
}

// decodeG711 writes in's samples into pcm (as long).
func decodeG711(name string, in []byte, pcm []int16) {
	if name == "PCMA" {
		g711.DecodeAlaw(in, pcm)
		return
	}
	g711.DecodeUlaw(in, pcm)
}

// SetAdditionalCodecs sets a number's calling audio.additional_codecs as
// the business's settings POST would (PCMA, PCMU; none clears it): its
// callers offer them beside Opus from then on.
func (s *Sim) SetAdditionalCodecs(pnid string, codecs ...string) error {
	list := make([]any, len(codecs))
	for i, c := range codecs {
		list[i] = strings.ToUpper(c)
	}
	audio := map[string]any{"additional_codecs": list}
	if e := checkAudio(audio); e != nil {
		return fmt.Errorf("wasim: additional codecs %v: %s", codecs, e.details)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.numbers[pnid]
	if ns == nil {
		return fmt.Errorf("wasim: unknown phone number id %q", pnid)
	}
	ns.calling["audio"] = audio
	return nil
}

// additionalCodecs is the G.711 codecs a number's callers offer beside Opus
// (its audio.additional_codecs).
func (s *Sim) additionalCodecs(pnid string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.numbers[pnid]
	if ns == nil {
		return nil
	}
	audio, _ := ns.calling["audio"].(map[string]any)
	list, _ := audio["additional_codecs"].([]any)
	var out []string
	for _, c := range list {
		if name, ok := c.(string); ok && (name == "PCMU" || name == "PCMA") {
			out = append(out, name)
		}
	}
	return out
}

// offerFormats is an offer's m-line formats and rtpmap lines for Opus 111,
// the G.711 codecs g711 and telephone-event 126.
func offerFormats(g711 []string) (formats string, rtpmaps []string) {
	f := []string{strconv.Itoa(opusPT)}
	rtpmaps = []string{"a=rtpmap:111 opus/48000/2", "a=fmtp:111 " + opusFmtp}
	for _, name := range g711 {
		pt := strconv.Itoa(int(g711PT(name)))
		f = append(f, pt)
		rtpmaps = append(rtpmaps, "a=rtpmap:"+pt+" "+name+"/8000")
	}
	f = append(f, strconv.Itoa(dtmfPT))
	rtpmaps = append(rtpmaps, "a=rtpmap:126 telephone-event/8000")
	return strings.Join(f, " "), rtpmaps
}

// answerAudio is the audio codec an answer picked: the first format of
// its audio m-line, G.711 by its static number (the only way the
// simulator's offers carry it), else Opus.
func answerAudio(sdp string) (name string, pt uint8, err error) {
	for _, l := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "m=audio ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 3 {
			return "", 0, errors.New("answer's m=audio has no format")
		}
		n, err := strconv.ParseUint(f[2], 10, 7)
		if err != nil {
			return "", 0, fmt.Errorf("answer's first format %q: %w", f[2], err)
		}
		if g := g711Named(uint8(n)); g != "" {
			return g, uint8(n), nil
		}
		return "opus", uint8(n), nil
	}
	return "", 0, errors.New("answer has no m=audio")
}

// offeredG711 is the G.711 codecs an offer lists (by their rtpmaps).
func offeredG711(sdp string) []string {
	var out []string
	for _, name := range []string{"PCMU", "PCMA"} {
		if strings.Contains(sdp, "a=rtpmap:"+strconv.Itoa(int(g711PT(name)))+" "+name+"/8000") {
			out = append(out, name)
		}
	}
	return out
}

// upsample2 writes pcm (8 kHz) at 16 kHz into out (twice as long), by
// linear interpolation: the received audio is analysed at 16 kHz
// (analysisRate) whatever the codec.
func upsample2(pcm, out []int16) {
	for i, v := range pcm {
		next := v
		if i+1 < len(pcm) {
			next = pcm[i+1]
		}
		out[2*i] = v
		out[2*i+1] = int16((int32(v) + int32(next)) / 2)
	}
}

package rtpbridge

import (
	"encoding/json"
	"testing"
)

func TestDTMFModeNames(t *testing.T) {
	var zero DTMFMode
	if zero != DTMFModeRFC4733 {
		t.Fatal("the zero mode is not rfc4733")
	}
	for _, m := range []DTMFMode{DTMFModeRFC4733, DTMFModeInfo, DTMFModeInband} {
		got, err := ParseDTMFMode(m.String())
		if err != nil || got != m {
			t.Fatalf("%v: parsed back as %v, %v", m, got, err)
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back DTMFMode
		if err := json.Unmarshal(js, &back); err != nil || back != m {
			t.Fatalf("%s: JSON back as %v, %v", js, back, err)
		}
	}
	if m, err := ParseDTMFMode("INBAND"); err != nil || m != DTMFModeInband {
		t.Fatalf("INBAND: %v, %v", m, err)
	}
	if m, err := ParseDTMFMode(""); err != nil || m != DTMFModeRFC4733 {
		t.Fatalf("empty: %v, %v", m, err)
	}
	if _, err := ParseDTMFMode("sip-info"); err == nil {
		t.Fatal("sip-info parsed")
	}
	if s := DTMFMode(9).String(); s != "DTMFMode(9)" {
		t.Fatalf("String of an unknown mode: %s", s)
	}
	if _, err := json.Marshal(DTMFMode(9)); err == nil {
		t.Fatal("an unknown mode marshalled")
	}
}

package sip

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// Any SIP INFO body and content type: readInfoDigit never panics, and
// either gives a digit (0-9 * # A-D) with a duration within
// (0, maxInfoDigitDuration] and no response, or a response (200, 400 or
// 415) and no digit.
func FuzzReadInfoDigit(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{contentDTMFRelay, "Signal=5\r\nDuration=160\r\n"},
		{contentDTMFRelay, "signal= *\nduration= 100\n"},
		{contentDTMFRelay, "Signal=16\r\nDuration=500\r\n"},
		{contentDTMFRelay, "Signal=!\r\n"},
		{contentDTMFRelay, "Signal=9\r\nDuration=999999999999999\r\n"},
		{contentDTMFRelay + "; charset=utf-8", "Signal=10\r\n"},
		{contentDTMF, "7\r\n"},
		{contentDTMF, " 11 "},
		{"text/plain", "Signal=5"},
		{"", ""},
		{"", "Signal=1"},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req := sip.NewRequest(sip.INFO, sip.Uri{Scheme: "sip", User: "gw", Host: "127.0.0.1", Port: 5060})
		if ct != "" && !strings.ContainsAny(ct, "\r\n") {
			req.AppendHeader(sip.NewHeader("Content-Type", ct))
		}
		req.SetBody(body)
		digit, d, res, err := readInfoDigit(req)
		if res != nil {
			if digit != 0 || d != 0 {
				t.Fatalf("response %d with digit %q, duration %v", res.StatusCode, digit, d)
			}
			switch res.StatusCode {
			case 200, 400, 415:
			default:
				t.Fatalf("response %d", res.StatusCode)
			}
			if res.StatusCode != 200 && err == nil {
				t.Fatalf("response %d without a reason", res.StatusCode)
			}
			return
		}
		if err != nil && !errors.Is(err, errHookFlash) {
			t.Fatalf("no response, err %v", err)
		}
		if r, ok := normDigit(digit); !ok || r != digit {
			t.Fatalf("digit %q", digit)
		}
		if d <= 0 || d > maxInfoDigitDuration {
			t.Fatalf("digit %q with duration %v (body %q)", digit, d, body)
		}
	})
}

// parseDTMFRelay alone: a digit's duration is 0 (the default) or within
// (0, maxInfoDigitDuration].
func FuzzParseDTMFRelay(f *testing.F) {
	for _, s := range []string{
		"Signal=5\r\nDuration=160\r\n", "Signal=16\r\n", "Signal=!\r\n", "Duration=160\r\n", "Signal=a\nDuration=60000",
		"Signal=9\r\nDuration=-5\r\n", "Signal=9\r\nDuration=999999\r\n", "=\n=\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		digit, d, err := parseDTMFRelay(body)
		if err != nil {
			if digit != 0 {
				t.Fatalf("error %v with digit %q", err, digit)
			}
			return
		}
		if r, ok := normDigit(digit); !ok || r != digit {
			t.Fatalf("digit %q", digit)
		}
		if d < 0 || d > maxInfoDigitDuration {
			t.Fatalf("duration %v from %q", d, body)
		}
	})
}

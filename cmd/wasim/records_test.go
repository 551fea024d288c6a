package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagateway/wagateway/gateway"
)

// The load report's gateway figures come from the gateway's call records:
// calls that ended before the run and calls without media are left out.
func TestReadGatewayRecords(t *testing.T) {
	start := time.Now()
	recs := []gateway.CallRecord{
		{CallID: "old", Times: gateway.RecordTimes{End: start.Add(-time.Minute)},
			Media: &gateway.RecordMedia{WhatsAppToSIP: gateway.RecordDirection{PacketsIn: 999}}},
		{CallID: "refused", Times: gateway.RecordTimes{End: start.Add(time.Second)}},
		{CallID: "a", Times: gateway.RecordTimes{End: start.Add(time.Second)}, Media: &gateway.RecordMedia{
			WhatsAppToSIP: gateway.RecordDirection{PacketsIn: 98, Lost: 2},
			SIPToWhatsApp: gateway.RecordDirection{PacketsIn: 100, Underruns: 3, PlayoutDelayMs: 26}}},
		{CallID: "b", Times: gateway.RecordTimes{End: start.Add(2 * time.Second)}, Media: &gateway.RecordMedia{
			WhatsAppToSIP: gateway.RecordDirection{PacketsIn: 100},
			SIPToWhatsApp: gateway.RecordDirection{PacketsIn: 100, SilenceFrames: 4, PlayoutDelayMs: 40}}},
	}
	path := filepath.Join(t.TempDir(), "calls.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(f)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	gm, perCall, err := readGatewayRecords(path, start)
	if err != nil {
		t.Fatal(err)
	}
	if gm.Calls != 2 || gm.WhatsAppToSIP.PacketsIn != 198 || gm.WhatsAppToSIP.Lost != 2 || gm.WhatsAppToSIP.LossPercent != 1 ||
		gm.SIPToWhatsApp.Underruns != 3 || gm.SIPToWhatsApp.SilenceFrames != 4 || gm.SIPToWhatsApp.MaxPlayoutMs != 40 {
		t.Errorf("gateway media %+v", gm)
	}
	if perCall["a"] != [2]uint64{2, 3} || len(perCall) != 2 {
		t.Errorf("per call %v", perCall)
	}
	if _, _, err := readGatewayRecords(path, start.Add(time.Hour)); err == nil {
		t.Error("no record in the window: no error")
	}
}

package wasim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// W11: a settings change made elsewhere, posted signed in Meta's shape
// and shown by GET settings.
func TestSendAccountSettingsUpdate(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	change := map[string]any{"status": "ENABLED", "call_icon_visibility": "DISABLE_ALL", "sip": map[string]any{"status": "DISABLED"}}
	if err := s.SendAccountSettingsUpdate(testPhoneID, change); err != nil {
		t.Fatal(err)
	}
	ev := hooks.expect(t, 5*time.Second, "settings_update")[0]
	pns := ev.value["phone_number_settings"].(map[string]any)
	if ev.field != "account_settings_update" || ev.id != testPhoneID || !reflect.DeepEqual(pns["calling"], norm(change)) || str(ev.entry, "id") != defaultWABAID {
		t.Errorf("account_settings_update: %s", ev.raw)
	}
	if c := getCalling(t, s, testPhoneID, ""); c["call_icon_visibility"] != "DISABLE_ALL" || c["status"] != "ENABLED" || c["callback_permission_status"] != "DISABLED" {
		t.Errorf("GET after the update: %v", c)
	}
	if err := s.SendAccountSettingsUpdate("999", change); err == nil {
		t.Error("an update for an unknown number")
	}
}

// W12: violations and restrictions, signed, in Meta's shape; an active
// restriction is listed by GET settings until it expires.
func TestSendAccountUpdate(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s.SetClock(clock.now)

	if err := s.SendAccountUpdate(testPhoneID, AccountViolation, "USER_INITIATED_CALLS_LOW_PICKUP_RATE", time.Time{}); err != nil {
		t.Fatal(err)
	}
	ev := hooks.expect(t, 5*time.Second, "account_update:ACCOUNT_VIOLATION")[0]
	vi := ev.value["violation_info"].(map[string]any)
	if ev.id != defaultDisplayNumber || vi["violation_type"] != "USER_INITIATED_CALLS_LOW_PICKUP_RATE" || str(vi, "remediation") == "" {
		t.Errorf("violation: %s", ev.raw)
	}
	if c := getCalling(t, s, testPhoneID, ""); c["restrictions"] != nil {
		t.Errorf("a violation restricts: %v", c["restrictions"])
	}

	until := clock.now().Add(48 * time.Hour)
	if err := s.SendAccountUpdate(testPhoneID, AccountRestriction, "RESTRICTED_BUSINESS_INITIATED_CALLING", until); err != nil {
		t.Fatal(err)
	}
	if err := s.SendAccountUpdate(testPhoneID, AccountRestriction, "RESTRICTED_USER_INITIATED_CALLING", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendAccountUpdate(testPhoneID, AccountRestriction, "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN", time.Time{}); err != nil {
		t.Fatal(err)
	}
	evs := hooks.expect(t, 5*time.Second, "account_update:ACCOUNT_RESTRICTION", "account_update:ACCOUNT_RESTRICTION", "account_update:ACCOUNT_RESTRICTION")
	wantExp := []float64{float64(until.Unix()), float64(clock.now().Add(7 * 24 * time.Hour).Unix()), 0}
	for i, ev := range evs {
		ri := ev.value["restriction_info"].([]any)[0].(map[string]any)
		if exp, _ := ri["expiration"].(float64); exp != wantExp[i] {
			t.Errorf("restriction %d: expiration %v, want %v: %s", i, ri["expiration"], wantExp[i], ev.raw)
		}
	}
	list := func() []any {
		c := getCalling(t, s, testPhoneID, "")
		r, _ := c["restrictions"].(map[string]any)
		l, _ := r["restrictions_list"].([]any)
		return l
	}
	got := list()
	if len(got) != 3 {
		t.Fatalf("restrictions_list: %v", got)
	}
	first := got[0].(map[string]any)
	if first["type"] != "RESTRICTED_BUSINESS_INITIATED_CALLING" || first["expiration"] != float64(until.Unix()) || !strings.Contains(str(first, "reason"), "Business initiated calling") {
		t.Errorf("restriction: %v", first)
	}
	if _, ok := got[2].(map[string]any)["expiration"]; ok {
		t.Errorf("the call button restriction has an expiration: %v", got[2])
	}
	clock.add(49 * time.Hour) // the business-initiated one lapses
	if got := list(); len(got) != 2 || got[0].(map[string]any)["type"] != "RESTRICTED_USER_INITIATED_CALLING" {
		t.Errorf("after 49 h: %v", got)
	}
	clock.add(6 * 24 * time.Hour)
	if got := list(); len(got) != 1 || got[0].(map[string]any)["type"] != "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN" {
		t.Errorf("after 7 days: %v", got)
	}

	for _, bad := range [][2]string{{"ACCOUNT_WARNING", "LOW_CALLING_QUALITY"}, {AccountViolation, "RESTRICTED_USER_INITIATED_CALLING"}, {AccountRestriction, "LOW_CALLING_QUALITY"}} {
		if err := s.SendAccountUpdate(testPhoneID, bad[0], bad[1], time.Time{}); err == nil {
			t.Errorf("%s %s taken", bad[0], bad[1])
		}
	}
	if err := s.SendAccountUpdate("999", AccountViolation, "LOW_CALLING_QUALITY", time.Time{}); err == nil {
		t.Error("an update for an unknown number")
	}
}

// W9: the voicemail arrives as an audio message whose id is the call's
// wacid; its media downloads with the access token and not without.
func TestSendVoicemail(t *testing.T) {
	hooks := newBizHooks(t)
	s := newBICSim(t, hooks, nil)
	setUser(t, s, User{WaID: "15551230001", BSUID: "US.1001", ProfileName: "Ada"})
	ogg := oggOpus(7 * time.Second)

	id, err := s.SendVoicemail(testPhoneID, "wacid.HBgLMTU1NTEyMzAwMDEVAgARGBI", "+1 555 123 0001", ogg)
	if err != nil {
		t.Fatal(err)
	}
	ev := hooks.expect(t, 5*time.Second, "voicemail")[0]
	a := ev.msg["audio"].(map[string]any)
	ct := ev.value["contacts"].([]any)[0].(map[string]any)
	sum := sha256.Sum256(ogg)
	if ev.id != "wacid.HBgLMTU1NTEyMzAwMDEVAgARGBI" || a["id"] != id || a["sha256"] != base64.StdEncoding.EncodeToString(sum[:]) ||
		ev.msg["from"] != "15551230001" || ev.msg["from_user_id"] != "US.1001" || ct["wa_id"] != "15551230001" || ct["user_id"] != "US.1001" ||
		ct["profile"].(map[string]any)["name"] != "Ada" {
		t.Errorf("voicemail webhook: %s", ev.raw)
	}
	meta, status, data := fetchMedia(t, s, id, testToken)
	if status != 200 || !bytes.Equal(data, ogg) || meta["mime_type"] != "audio/ogg" || meta["file_size"] != float64(len(ogg)) {
		t.Errorf("download: HTTP %d, %d bytes, %v", status, len(data), meta)
	}
	if _, status, data := fetchMedia(t, s, id, ""); status != http.StatusUnauthorized || bytes.Equal(data, ogg) {
		t.Errorf("download without the token: HTTP %d", status)
	}

	// Another number's voicemail carries that number's metadata; a voicemail
	// is not a voicemail announcement.
	if err := s.SetNumber("2000000002", NumberConfig{DisplayPhoneNumber: "15550000002"}); err != nil {
		t.Fatal(err)
	}
	id2, err := s.SendVoicemail("2000000002", "wacid.two", "15559998888", ogg)
	if err != nil {
		t.Fatal(err)
	}
	ev = hooks.expect(t, 5*time.Second, "voicemail")[0]
	md := ev.value["metadata"].(map[string]any)
	if md["phone_number_id"] != "2000000002" || md["display_phone_number"] != "15550000002" || str(ev.msg, "from_user_id") == "" {
		t.Errorf("second number's voicemail: %s", ev.raw)
	}
	code, body := settingsReq(t, s, http.MethodPost, "2000000002", "", map[string]any{"calling": map[string]any{"voicemail": map[string]any{
		"status": "ENABLED", "triggers": []any{"REJECT"}, "audio": map[string]any{"default": map[string]any{"announcement_media_id": id2}}}}})
	wantGraphError(t, "voicemail as announcement", code, body, 400, 100)

	for name, call := range map[string]func() error{
		"unknown number": func() error { _, err := s.SendVoicemail("999", "wacid.x", "15551230001", ogg); return err },
		"not a wacid":    func() error { _, err := s.SendVoicemail(testPhoneID, "wamid.x", "15551230001", ogg); return err },
		"not a number":   func() error { _, err := s.SendVoicemail(testPhoneID, "wacid.x", "ada", ogg); return err },
		"not OGG": func() error {
			_, err := s.SendVoicemail(testPhoneID, "wacid.x", "15551230001", []byte("RIFF"))
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: taken", name)
		}
	}
}

// A voicemail after a call the simulator placed names that call's user.
func TestSendVoicemailAfterCall(t *testing.T) {
	hooks := newHookServer(t)
	s := newTestSim(t, hooks, nil)
	call, err := s.PlaceCall(context.Background(), CallOptions{From: "15557654321", FromUserID: "US.42", ProfileName: "Grace"})
	if err != nil {
		t.Fatal(err)
	}
	hooks.next(t, "connect", call.ID(), 5*time.Second)
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	hooks.next(t, "terminate", call.ID(), 5*time.Second)
	if _, err := s.SendVoicemail(testPhoneID, call.ID(), "15557654321", oggOpus(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-hooks.events:
		if !ev.sigOK || !strings.Contains(string(ev.raw), `"user_id":"US.42"`) || !strings.Contains(string(ev.raw), `"name":"Grace"`) ||
			!strings.Contains(string(ev.raw), `"id":"`+call.ID()+`"`) || !strings.Contains(string(ev.raw), `"field":"messages"`) {
			t.Errorf("voicemail after the call: %s", ev.raw)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no voicemail webhook")
	}
}

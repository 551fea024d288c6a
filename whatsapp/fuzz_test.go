package whatsapp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// webhookSeeds are Meta's bodies from testdata and the edges fuzzing found.
func webhookSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/webhook-*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"entry":null}`,
		`{"entry":[{"changes":[{"value":{"statuses":[{"type":"call","status":"RINGING"}]}}]}]}`,
		`{"entry":[{"changes":[{"value":{"calls":[{"id":"wacid.D","event":"terminate","duration":9227000000}]}}]}]}`,
		`{"entry":[{"changes":[{"value":{"calls":[{"id":"wacid.D","event":"terminate","duration":"+Inf","timestamp":1e300,"start_time":"-1"}]}}]}]}`,
		`{"entry":[{"changes":[{"value":{"calls":[{"id":"wacid.E","event":"connect","errors":[{"code":1e30},{"code":"x"},{"code":1}]}],"errors":[{"code":1},{"title":"t"}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"calls":[{"id":"wacid.S","event":"connect","session":{"sdp_type":"offer","sdp":"v=0\r\n"}}],"contacts":[{"wa_id":"1","profile":{"name":"n"}}]}}]}]}`,
		// W8 shapes: call permission replies, odd and mixed.
		`{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"wamid.R","from":"1","context":{"id":"wamid.Q"},"interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":true,"expiration_timestamp":"1e300","response_source":"automatic"}}}]}}]}]}`,
		`{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"","interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"reject","is_permanent":"yes","expiration_timestamp":-5}}}]}}]}]}`,
		`{"entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"wamid.X","interactive":{"type":"CALL_PERMISSION_REPLY","call_permission_reply":null}},{"id":7},"x",null],"statuses":[{"id":"wamid.S","status":"sent"}],"errors":{"code":1}}}]}]}`,
		`{"entry":[{"changes":[{"field":"calls","value":{"messages":[{"id":"wamid.C"}]}},{"field":"messages","value":[]},{"field":"account_update","value":{"event":1}}]}]}`,
		`{"object":"page","entry":[{"messaging":[{"call_permission_reply":{"response":"approve"}}]}]}`,
		// W11, W12, W9 shapes: account events and voicemails, odd and mixed.
		`{"entry":[{"id":"0","time":"x","changes":[{"field":"account_settings_update","value":{"timestamp":1e300,"type":"[phone_number_settings]","phone_number_settings":{"phone_number_id":7,"calling":{"call_hours":{"weekly_operating_hours":[{"open_time":4e9}]},"sip":{"servers":[{"port":"5061","sip_user_password":"p","request_uri_user_params":{"a":[],"b":1}}]},"voicemail":{"audio":{"default":{"announcement_media_id":1e400}}}}}}}]}]}`,
		`{"entry":[{"time":{},"changes":[{"field":"account_settings_update","value":{"phone_number_settings":{"calling":null}}},{"field":"account_settings_update","value":"x"}]}]}`,
		`{"entry":[{"time":1641848059,"changes":[{"field":"account_update","value":{"phone_number":16505552771,"event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_USER_INITIATED_CALLING","expiration":-1},{"restriction_type":"RESTRICTED_BIZ_INITIATED_MESSAGING"},{}]}}]}]}`,
		`{"entry":[{"changes":[{"field":"account_update","value":{"event":"ACCOUNT_VIOLATION","violation_info":{"violation_type":"LOW_USER_INITIATED_CALLING_QUALITY"},"sip_user_password":"\u0000"}},{"field":"account_update","value":null}]}]}`,
		`{"entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"P"},"messages":[{"id":"wacid.V","type":"AUDIO","audio":{"id":""}},{"id":"wacid.W","audio":{"id":1}},{"id":"wacid.X","type":"audio","audio":null},{"id":"wamid.Y","type":"audio","audio":{"id":"m"}}]}}]}]}`,
	} {
		f.Add([]byte(s))
	}
}

// Any body: ParseWebhookAll never panics, and what it returns keeps its
// bounds: at most MaxWebhookEvents events, durations within
// [0, maxCallDuration], errors without repeats and at most two lists'
// worth.
func FuzzParseWebhook(f *testing.F) {
	webhookSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseWebhookEvents(body)
		calls, statuses := ev.Calls, ev.Statuses
		if err != nil {
			if calls != nil || statuses != nil || ev.PermissionReplies != nil || ev.AccountEvents != nil || ev.Voicemails != nil || ev.Other {
				t.Fatalf("error %v with %d calls, %d statuses, %d replies", err, len(calls), len(statuses), len(ev.PermissionReplies))
			}
			return
		}
		if n := len(calls) + len(statuses) + len(ev.PermissionReplies) + len(ev.AccountEvents) + len(ev.Voicemails); n > MaxWebhookEvents {
			t.Fatalf("%d events", n)
		}
		for _, ae := range ev.AccountEvents {
			if ae.key == "" || (ae.Field != fieldAccountSettingsUpdate && ae.Field != fieldAccountUpdate) {
				t.Fatalf("account event %+v", ae)
			}
			if ae.Raw != nil && (!json.Valid(ae.Raw) || len(ae.Raw) > 2*MaxAccountEventRaw+8) {
				t.Fatalf("raw of %d bytes: %.100s", len(ae.Raw), ae.Raw)
			}
			if c := ae.Calling; c != nil && c.Restrictions != nil && len(c.Restrictions.RestrictionsList) > maxSettingsRestrictions {
				t.Fatalf("%d restrictions", len(c.Restrictions.RestrictionsList))
			}
		}
		for _, vm := range ev.Voicemails {
			if !strings.HasPrefix(vm.CallID, "wacid.") {
				t.Fatalf("voicemail %+v", vm)
			}
		}
		oc, os, oerr := ParseWebhookAll(body)
		if oerr != nil || len(oc) != len(calls) || len(os) != len(statuses) {
			t.Fatalf("ParseWebhookAll disagrees: %d %d %v", len(oc), len(os), oerr)
		}
		checkErrs := func(errs []CallError) {
			if len(errs) > 2*maxWireErrors {
				t.Fatalf("%d errors on one event", len(errs))
			}
			seen := map[CallError]bool{}
			for _, e := range errs {
				if seen[e] {
					t.Fatalf("error %+v repeated", e)
				}
				seen[e] = true
			}
		}
		for _, c := range calls {
			if c.Duration < 0 || c.Duration > maxCallDuration {
				t.Fatalf("duration %v", c.Duration)
			}
			checkErrs(c.Errors)
		}
		for _, s := range statuses {
			checkErrs(s.Errors)
		}
	})
}

// Any signed body through the handler (parse, admission, dispatch): no
// panic, an answer from the expected set, and nothing dispatched without a
// call id (or reply without a message id).
func FuzzWebhookHandler(f *testing.F) {
	webhookSeeds(f)
	var blank atomic.Int64
	h := NewWebhookHandler(WebhookConfig{
		AppSecret:   testAppSecret,
		VerifyToken: testVerifyToken,
		DedupeTTL:   time.Minute,
		OnCall: func(ev CallEvent) {
			if blankID(ev.CallID) || ev.Event == "" {
				blank.Add(1)
			}
		},
		OnStatus: func(st StatusEvent) {
			if blankID(st.CallID) || st.Status == "" {
				blank.Add(1)
			}
		},
		OnPermissionReply: func(pr PermissionReply) {
			if blankID(pr.MessageID) {
				blank.Add(1)
			}
		},
		OnAccountEvent: func(ae AccountEvent) {
			if ae.key == "" || ae.Field == "" {
				blank.Add(1)
			}
		},
		OnVoicemail: func(vm Voicemail) {
			if blankID(vm.CallID) || blankID(vm.MediaID) {
				blank.Add(1)
			}
		},
	})
	// Dispatch runs on the handler's workers: once Close has delivered
	// everything, nothing may have been dispatched without an id.
	f.Cleanup(func() {
		_ = h.Close()
		if n := blank.Load(); n != 0 {
			f.Errorf("%d events dispatched without a call id or event", n)
		}
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sign(body, testAppSecret))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("answered %d: %s", w.Code, strings.TrimSpace(w.Body.String()))
		}
		if n := blank.Load(); n != 0 { // seen early when the workers were quick
			t.Fatalf("%d events dispatched without a call id or event", n)
		}
	})
}

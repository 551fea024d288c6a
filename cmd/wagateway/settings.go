package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp"
)

// settingsTimeout bounds one settings subcommand: every number's Graph
// requests with their retries (graph_timeout per attempt).
const settingsTimeout = 2 * time.Minute

// Exit codes of wagateway settings.
const (
	settingsOK       = 0
	settingsDrift    = 1 // diff: Meta's settings differ; apply: they still do after applying
	settingsUsage    = 2 // bad usage or config: nothing was sent
	settingsMetaFail = 3 // Meta refused or did not answer
)

// settingsNow is the clock of the local checks (past holidays) and of the
// state file; tests set it (nil: time.Now).
var settingsNow func() time.Time

const settingsUsageText = `usage:
  wagateway settings show CONFIG [-number PHONE_NUMBER_ID] [-json] [-sip-credentials]
  wagateway settings diff CONFIG [-number PHONE_NUMBER_ID]
  wagateway settings apply CONFIG [-number PHONE_NUMBER_ID]

show prints Meta's calling settings of every number of the config (or one),
the SIP password masked; -sip-credentials asks Meta for it and prints it.
diff compares the numbers' calling: sections with Meta's settings, field by
field; apply sends the numbers that differ (the voicemail announcement first),
then reads them back. Only whatsapp.access_token is resolved.
Exit: 0 ok (diff: no drift), 1 drift (apply: drift left after applying),
2 usage or config error (nothing sent), 3 Meta or network error.
`

// settings runs wagateway settings show|diff|apply.
func settings(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, settingsUsageText)
		return settingsUsage
	}
	switch args[0] {
	case "show", "diff", "apply":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, settingsUsageText)
		return settingsOK
	default:
		fmt.Fprintf(stderr, "wagateway settings: unknown command %q\n%s", args[0], settingsUsageText)
		return settingsUsage
	}
	cmd := args[0]
	fs := flag.NewFlagSet("wagateway settings "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, settingsUsageText) }
	number := fs.String("number", "", "only this business number (`PHONE_NUMBER_ID`)")
	var asJSON, sipCreds *bool
	if cmd == "show" {
		asJSON = fs.Bool("json", false, "print Meta's settings as JSON")
		sipCreds = fs.Bool("sip-credentials", false, "ask Meta for the SIP password and print it")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return settingsUsage
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "wagateway settings %s: want CONFIG, got %d argument(s)\n%s", cmd, len(pos), settingsUsageText)
		return settingsUsage
	}
	cfg, err := gateway.LoadConfig(pos[0])
	if err != nil {
		printConfigError(stderr, err)
		return settingsUsage
	}
	numbers, err := cfg.SettingsNumbers(*number, cmd != "show")
	if err != nil {
		printConfigError(stderr, err)
		return settingsUsage
	}
	client, err := gateway.NewSettingsClient(cfg, gateway.SettingsOptions{Now: settingsNow})
	if err != nil {
		printConfigError(stderr, err)
		return settingsUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), settingsTimeout)
	defer cancel()
	if cmd == "show" {
		return settingsShow(ctx, client, numbers, *asJSON, *sipCreds, stdout, stderr)
	}
	// Meta's rules, the clock's and the files' included, hold before
	// anything is read or sent.
	if err := client.Check(); err != nil {
		printConfigError(stderr, err)
		return settingsUsage
	}
	return settingsDiffApply(ctx, client, cmd == "apply", numbers, stdout, stderr)
}

func settingsShow(ctx context.Context, client *gateway.SettingsClient, numbers []string, asJSON, sipCreds bool, stdout, stderr io.Writer) int {
	if sipCreds {
		fmt.Fprintln(stderr, "warning: -sip-credentials: Meta's SIP passwords are printed below; keep this output private")
	}
	code := settingsOK
	all := map[string]whatsapp.CallingSettings{}
	for _, pnid := range numbers {
		s, err := client.Show(ctx, pnid, sipCreds)
		if err != nil {
			code = settingsFailure(stderr, "show", pnid, err)
			continue
		}
		if asJSON {
			all[pnid] = s
			continue
		}
		fmt.Fprintf(stdout, "%s\n", pnid)
		for _, l := range gateway.FormatCallingSettings(s) {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		_ = enc.Encode(all)
	}
	return code
}

// settingsDiffApply compares every number first: a problem found locally in
// any stops everything before a change is sent.
func settingsDiffApply(ctx context.Context, client *gateway.SettingsClient, apply bool, numbers []string, stdout, stderr io.Writer) int {
	cmd := map[bool]string{false: "diff", true: "apply"}[apply]
	code := settingsOK
	var plans []*gateway.SettingsPlan
	for _, pnid := range numbers {
		p, err := client.Plan(ctx, pnid)
		var ce *gateway.ConfigError
		switch {
		case errors.As(err, &ce):
			printConfigError(stderr, err)
			return settingsUsage
		case err != nil:
			code = settingsFailure(stderr, cmd, pnid, err)
			continue
		}
		plans = append(plans, p)
	}
	for _, p := range plans {
		if !p.Drift() {
			fmt.Fprintf(stdout, "%s: in step with the config file\n", p.PhoneNumberID)
			continue
		}
		fmt.Fprintf(stdout, "%s: %d change(s)\n", p.PhoneNumberID, len(p.Changes))
		for _, l := range p.Changes {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
		if !apply {
			if code == settingsOK {
				code = settingsDrift
			}
			continue
		}
		res, err := client.Apply(ctx, p)
		if res.MediaID != "" {
			fmt.Fprintf(stdout, "  voicemail announcement uploaded: media %s\n", res.MediaID)
		}
		if res.StateError != nil {
			fmt.Fprintf(stderr, "warning: %s: the upload is not recorded (the next diff shows it again): %v\n", p.PhoneNumberID, res.StateError)
		}
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "  not applied (the error is on stderr)\n")
			code = settingsFailure(stderr, cmd, p.PhoneNumberID, err)
		case len(res.Remaining) > 0:
			fmt.Fprintf(stdout, "  applied, but Meta's settings read back still differ:\n")
			for _, l := range res.Remaining {
				fmt.Fprintf(stdout, "    %s\n", l)
			}
			if code == settingsOK {
				code = settingsDrift
			}
		default:
			fmt.Fprintf(stdout, "  applied; read back, Meta's settings match the config file\n")
		}
	}
	return code
}

// settingsFailure prints a failed Graph request, Meta's code and message
// first, and returns exit code 3.
func settingsFailure(stderr io.Writer, cmd, pnid string, err error) int {
	me, ok := gateway.AsMetaError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v: %w", settingsTimeout, err)
		}
		fmt.Fprintf(stderr, "wagateway settings %s: %s: %v\n", cmd, pnid, err)
		return settingsMetaFail
	}
	fmt.Fprintf(stderr, "wagateway settings %s: %s: Meta error %d (HTTP %d): %s", cmd, pnid, me.Code, me.HTTPStatus, me.Message)
	if me.Details != "" && me.Details != me.Message {
		fmt.Fprintf(stderr, " (%s)", me.Details)
	}
	if me.FBTraceID != "" {
		fmt.Fprintf(stderr, " fbtrace_id=%s", me.FBTraceID)
	}
	fmt.Fprintln(stderr)
	return settingsMetaFail
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/wagateway/wagateway/gateway"
)

// permissionTimeout bounds one permission subcommand: the Graph request
// with its retries (graph_timeout per attempt).
const permissionTimeout = 60 * time.Second

const permissionUsage = `usage:
  wagateway permission status CONFIG PHONE_NUMBER_ID USER
  wagateway permission request CONFIG PHONE_NUMBER_ID USER [-message TEXT] [-template NAME [-language CODE]]

USER is an E.164 number (with or without +) or a BSUID. Without -message and
-template, request sends what the first outbound route of the number has
(permission_message, and permission_template outside the 24 h window). The
access token comes from the config's whatsapp.access_token reference; no other
secret is needed. Exit 0 ok, 1 Meta or network error (Meta's code printed),
2 usage or config error.
`

// permission reads (status) or requests (request) a user's call permission
// with the config's whatsapp section, as the admin API does in the daemon.
func permission(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, permissionUsage)
		return 2
	}
	switch args[0] {
	case "status":
		return permissionStatus(args[1:], stdout, stderr)
	case "request":
		return permissionRequest(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, permissionUsage)
		return 0
	}
	fmt.Fprintf(stderr, "wagateway permission: unknown command %q\n%s", args[0], permissionUsage)
	return 2
}

// parseInterspersed parses fs's flags wherever they stand among the
// positional arguments, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// permissionSetup loads the config and the client and checks the target;
// ok false means it printed why (exit 2).
func permissionSetup(cmd string, pos []string, stderr io.Writer) (*gateway.Config, *gateway.PermissionClient, gateway.PermissionTarget, bool) {
	if len(pos) != 3 {
		fmt.Fprintf(stderr, "wagateway permission %s: want CONFIG PHONE_NUMBER_ID USER, got %d argument(s)\n%s", cmd, len(pos), permissionUsage)
		return nil, nil, gateway.PermissionTarget{}, false
	}
	target, err := gateway.ParsePermissionTarget(pos[1], pos[2])
	if err != nil {
		fmt.Fprintf(stderr, "wagateway permission %s: %v\n", cmd, err)
		return nil, nil, gateway.PermissionTarget{}, false
	}
	cfg, err := gateway.LoadConfig(pos[0])
	if err != nil {
		printConfigError(stderr, err)
		return nil, nil, gateway.PermissionTarget{}, false
	}
	client, err := gateway.NewPermissionClient(cfg)
	if err != nil {
		printConfigError(stderr, err)
		return nil, nil, gateway.PermissionTarget{}, false
	}
	return cfg, client, target, true
}

func permissionStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wagateway permission status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, permissionUsage) }
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	_, client, target, ok := permissionSetup("status", pos, stderr)
	if !ok {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), permissionTimeout)
	defer cancel()
	st, err := client.Status(ctx, target)
	if err != nil {
		return graphFailure(stderr, "status", err)
	}
	printPermission(stdout, st, time.Now())
	return 0
}

func printPermission(w io.Writer, st gateway.PermissionState, now time.Time) {
	yes := map[bool]string{true: "yes", false: "no"}
	fmt.Fprintf(w, "phone_number_id  %s\n", st.PhoneNumberID)
	fmt.Fprintf(w, "user             %s\n", st.User)
	fmt.Fprintf(w, "status           %s\n", st.Status)
	if !st.Expires.IsZero() {
		fmt.Fprintf(w, "expires          %s (%s)\n", st.Expires.UTC().Format(time.RFC3339), relative(st.Expires, now))
	}
	fmt.Fprintf(w, "can call         %s\n", yes[st.CanCall])
	fmt.Fprintf(w, "can request      %s\n", yes[st.CanRequest])
	for _, a := range st.Actions {
		fmt.Fprintf(w, "action %s: %s\n", a.Name, map[bool]string{true: "allowed", false: "not allowed"}[a.CanPerform])
		for _, l := range a.Limits {
			fmt.Fprintf(w, "  %d of %d per %s used", l.CurrentUsage, l.MaxAllowed, l.TimePeriod)
			if !l.LimitExpiration.IsZero() {
				fmt.Fprintf(w, ", until %s (%s)", l.LimitExpiration.UTC().Format(time.RFC3339), relative(l.LimitExpiration, now))
			}
			fmt.Fprintln(w)
		}
	}
}

// relative says how far t is from now, to the minute.
func relative(t, now time.Time) string {
	d := t.Sub(now).Round(time.Minute)
	if d == 0 {
		return "now"
	}
	a := d.Abs()
	var s string
	if days := a / (24 * time.Hour); days > 0 {
		s = fmt.Sprintf("%dd", days)
		a -= days * 24 * time.Hour
	}
	if h := a / time.Hour; h > 0 {
		s += fmt.Sprintf("%dh", h)
		a -= h * time.Hour
	}
	if m := a / time.Minute; m > 0 {
		s += fmt.Sprintf("%dm", m)
	}
	if d < 0 {
		return s + " ago"
	}
	return "in " + s
}

func permissionRequest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wagateway permission request", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, permissionUsage) }
	message := fs.String("message", "", "the free-form request's `text` (inside the 24 h customer service window)")
	template := fs.String("template", "", "an approved template with a call_permission_request component (`name`)")
	language := fs.String("language", "", "the template's language `code` (default en_US)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *language != "" && *template == "" {
		fmt.Fprintln(stderr, "wagateway permission request: -language goes with -template")
		return 2
	}
	cfg, client, target, ok := permissionSetup("request", pos, stderr)
	if !ok {
		return 2
	}
	req, err := gateway.PermissionRequestFor(cfg, target.PhoneNumberID, gateway.PermissionRequestBody{
		Message: *message, Template: gateway.PermissionTemplateConfig{Name: *template, Language: *language}})
	if err != nil {
		fmt.Fprintf(stderr, "wagateway permission request: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), permissionTimeout)
	defer cancel()
	sent, err := client.Request(ctx, target, req)
	if err != nil {
		return graphFailure(stderr, "request", err)
	}
	what := "interactive message"
	if sent == "template" {
		what = fmt.Sprintf("template %s (%s)", req.Template.Name, req.Template.Language)
	}
	fmt.Fprintf(stdout, "call permission request sent to %s from %s: %s\n", target.User(), target.PhoneNumberID, what)
	fmt.Fprintln(stdout, "the user's reply comes as a webhook: the gateway logs it, and the admin API lists it")
	return 0
}

// graphFailure prints a failed Graph request, Meta's code and message
// first, and returns exit code 1.
func graphFailure(stderr io.Writer, cmd string, err error) int {
	me, ok := gateway.AsMetaError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v: %w", permissionTimeout, err)
		}
		fmt.Fprintf(stderr, "wagateway permission %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintf(stderr, "wagateway permission %s: Meta error %d (HTTP %d): %s", cmd, me.Code, me.HTTPStatus, me.Message)
	if me.Details != "" && me.Details != me.Message {
		fmt.Fprintf(stderr, " (%s)", me.Details)
	}
	if me.FBTraceID != "" {
		fmt.Fprintf(stderr, " fbtrace_id=%s", me.FBTraceID)
	}
	fmt.Fprintln(stderr)
	return 1
}

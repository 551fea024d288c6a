// Command wasim plays Meta's side of a WhatsApp Cloud API call against the
// gateway: it posts a signed connect webhook with an SDP offer, serves the
// Graph calls endpoint the gateway answers on, runs the WhatsApp media leg
// (ICE-lite, DTLS, Opus) sending a tone or a WAV file, and reports what came
// back and which of Meta's rules the gateway broke. "wasim bic" plays the
// other direction: a simulated user the gateway calls.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

// Exit codes.
const (
	exitOK      = 0 // bridged, audio came back, no violations
	exitFailed  = 1 // the call ran but did not pass
	exitUsage   = 2 // bad flags or missing secrets
	exitRuntime = 3 // the simulator could not start or place the call
)

const usageText = `wasim: a WhatsApp Cloud API calling simulator (plays Meta for the gateway)

Usage:
  wasim call [flags]     one call (below)
  wasim bic [flags]      one business-initiated call: waits for the gateway to
                         call a simulated user (wasim bic -h); "user" is an alias
  wasim load [flags]     many calls at once: capacity and quality (wasim load -h)
  wasim echo [flags]     a SIP endpoint that answers and echoes RTP (wasim echo -h)
  wasim demo [-v] [-seconds N]
                         the gateway, this simulator and the echo on loopback: one
                         call, audio checked both ways (no Meta account, no PBX)

Places one user-initiated call: posts a signed "connect" webhook carrying an
SDP offer to -webhook, serves the Graph API at -graph-listen
(POST /{version}/{phone_number_id}/calls: pre_accept, accept, reject,
terminate), sends a tone or WAV over an ICE-lite DTLS-SRTP Opus leg, and
prints a report. Point the gateway's Graph base URL at http://<graph-listen>.

Secrets come from environment variables named by flags and are never printed:
  WASIM_APP_SECRET     signs the webhooks (X-Hub-Signature-256), the app secret
  WASIM_ACCESS_TOKEN   the bearer token the gateway must send to the Graph API

Exit status: 0 when the call was accepted, audio came back and no Meta rule
was broken (with -bad-signature: when the gateway refused the webhook with a
4xx; with -terminate-first: when it left the stale connect alone); 1 when the
call ran but did not pass; 2 on usage errors; 3 when the simulator could not
start.

Example:
  WASIM_APP_SECRET=... WASIM_ACCESS_TOKEN=... wasim call \
    -webhook http://127.0.0.1:8080/webhook -graph-listen 127.0.0.1:8090 \
    -phone-number-id 1000000001 -from 15551234567 -name "Ada" -tone 1000 -duration 5s

Flags:
`

type options struct {
	webhook, graphListen, mediaIP           string
	secretEnv, tokenEnv, verifyEnv          string
	phoneID, displayPhone, wabaID           string
	from, userID, name, cta, deeplink, wav  string
	tone, dropPercent, minLevel, expectHz   float64
	duration, acceptTimeout, noMediaTimeout time.Duration
	timeout                                 time.Duration
	frameMs, dropBurstAt                    int
	dupConnect, terminateFirst, badSig      bool
	webhookCopies                           int
	webhookShuffle                          bool
	jsonOut, verbose                        bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil))
}

// run is the whole command; interrupt, when not nil, replaces the process's
// SIGINT/SIGTERM (for tests).
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, interrupt <-chan os.Signal) int {
	stderr = &lockedWriter{w: stderr} // the logger writes from the simulator's goroutines too
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fs, _ := newFlagSet(stderr)
		fs.Usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	switch args[0] {
	case "load":
		return runLoad(args[1:], getenv, stdout, stderr, interrupt)
	case "echo":
		return runEcho(args[1:], stdout, stderr, interrupt)
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "bic", "user":
		return runBIC(args[1:], getenv, stdout, stderr, interrupt)
	}
	if args[0] != "call" {
		fmt.Fprintf(stderr, "wasim: unknown command %q (want \"call\", \"bic\", \"demo\", \"load\" or \"echo\")\n\n", args[0])
		fs, _ := newFlagSet(stderr)
		fs.Usage()
		return exitUsage
	}
	fs, o := newFlagSet(stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wasim: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	cfg, err := o.config(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "wasim: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.verbose)
	defer func() { _ = log.Sync() }()
	cfg.Logger = log

	sim, err := wasim.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	defer sim.Close()
	if err := sim.Start(context.Background()); err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stderr, "wasim: graph api at %s (phone number id %s), webhook %s\n", sim.GraphURL(), cfg.PhoneNumberID, cfg.WebhookURL)

	callOpts := wasim.CallOptions{
		From: o.from, FromUserID: o.userID, ProfileName: o.name,
		CTAPayload: o.cta, DeeplinkPayload: o.deeplink,
		ToneHz: o.tone, WAVFile: o.wav, Duration: o.duration, FrameMs: o.frameMs,
		DropPercent: o.dropPercent, DropBurstAt: o.dropBurstAt,
		SendDuplicateConnect: o.dupConnect, SendTerminateFirst: o.terminateFirst,
	}
	if o.badSig {
		callOpts.WebhookSecret = "wasim-deliberately-wrong-secret"
	}
	call, err := sim.PlaceCall(context.Background(), callOpts)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stderr, "wasim: calling, id %s\n", call.ID())

	if interrupt == nil {
		sig := make(chan os.Signal, 2)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		interrupt = sig
	}
	limit := o.timeout
	if limit <= 0 {
		limit = cfg.AcceptTimeout + o.duration + cfg.NoMediaTimeout + 30*time.Second
		if o.duration == 0 {
			limit += 10 * time.Minute
		}
	}
	return finishCall(call, limit, interrupt, o, "wasim", stdout, stderr, func(r *wasim.Report) []string { return judge(r, o) })
}

// finishCall waits for the call's end (the user hangs up on an interrupt
// or after limit), prints its report (JSON with -json), judges it and
// returns the exit code. prefix names the command in messages.
func finishCall(call *wasim.Call, limit time.Duration, interrupt <-chan os.Signal, o *options, prefix string,
	stdout, stderr io.Writer, judged func(*wasim.Report) []string) int {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	select {
	case <-call.Done():
	case <-interrupt:
		fmt.Fprintln(stderr, prefix+": interrupted: the user hangs up")
		_ = call.Hangup()
	case <-deadline.C:
		fmt.Fprintf(stderr, "%s: no end after %s: the user hangs up\n", prefix, limit)
		_ = call.Hangup()
	}
	rep, err := call.Wait(context.Background())
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitRuntime
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprint(stdout, rep.String())
	}
	if reasons := judged(rep); len(reasons) > 0 {
		for _, r := range reasons {
			fmt.Fprintf(stderr, "FAIL: %s\n", r)
		}
		return exitFailed
	}
	fmt.Fprintln(stderr, "PASS")
	return exitOK
}

func newFlagSet(stderr io.Writer) (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("wasim call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	o.commonFlags(fs)
	fs.StringVar(&o.from, "from", "15551234567", "caller phone `number` (wa_id); empty sends a BSUID-only caller")
	fs.StringVar(&o.userID, "user-id", "", "caller BSUID (from_user_id); made up when empty")
	fs.StringVar(&o.name, "name", "WhatsApp User", "caller profile `name`")
	fs.StringVar(&o.cta, "cta", "", "cta_payload to send (≤ 512 chars)")
	fs.StringVar(&o.deeplink, "deeplink", "", "deeplink_payload to send (≤ 512 chars)")
	fs.Float64Var(&o.tone, "tone", 1000, "tone the caller sends, `Hz`")
	fs.StringVar(&o.wav, "wav", "", "16-bit PCM WAV `file` the caller sends instead of the tone (looped)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long the caller talks once media is up, then hangs up (0: wait for the business)")
	fs.IntVar(&o.frameMs, "frame-ms", 20, "Opus frame length the caller sends: 10, 20, 40 or 60")
	fs.Float64Var(&o.dropPercent, "drop-percent", 0, "drop this `percent` of caller packets at random")
	fs.IntVar(&o.dropBurstAt, "drop-burst-at", 0, "drop 5 caller packets in a row from this packet `number`")
	fs.BoolVar(&o.dupConnect, "duplicate-connect", false, "deliver the connect webhook twice")
	fs.BoolVar(&o.terminateFirst, "terminate-first", false, "deliver terminate before connect (the gateway must not answer)")
	fs.BoolVar(&o.badSig, "bad-signature", false, "sign webhooks with a wrong secret (the gateway must refuse them)")
	fs.DurationVar(&o.acceptTimeout, "accept-timeout", 60*time.Second, "no accept by then: Meta terminates (not answered)")
	o.judgeFlags(fs)
	return fs, o
}

// commonFlags are the simulator's flags every single-call command takes.
func (o *options) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.webhook, "webhook", "", "the gateway's webhook `URL` (required)")
	fs.StringVar(&o.graphListen, "graph-listen", "127.0.0.1:8090", "`address` the simulated Graph API listens on")
	fs.StringVar(&o.secretEnv, "app-secret-env", "WASIM_APP_SECRET", "environment `variable` holding the app secret that signs webhooks")
	fs.StringVar(&o.tokenEnv, "token-env", "WASIM_ACCESS_TOKEN", "environment `variable` holding the access token the gateway must present")
	fs.StringVar(&o.verifyEnv, "verify-token-env", "", "environment `variable` holding the webhook verify token; when set, do Meta's GET handshake first")
	fs.StringVar(&o.phoneID, "phone-number-id", "1000000001", "business phone number `id`")
	fs.StringVar(&o.displayPhone, "display-phone", "15550000001", "business display phone `number` (metadata and calls[].to)")
	fs.StringVar(&o.wabaID, "waba-id", "1000000000000001", "WhatsApp Business Account `id` (entry[].id)")
	fs.StringVar(&o.mediaIP, "media-ip", "127.0.0.1", "the only `IP` the media leg offers as host candidate")
	webhookCopyFlags(fs, &o.webhookCopies, &o.webhookShuffle)
}

// webhookCopyFlags are -webhook-copies and -webhook-shuffle (Config.WebhookCopies, WebhookShuffle).
func webhookCopyFlags(fs *flag.FlagSet, copies *int, shuffle *bool) {
	fs.IntVar(copies, "webhook-copies", 1, "deliver each webhook this many `times`, as Meta may (a webhook is delivered when any copy is answered 200)")
	fs.BoolVar(shuffle, "webhook-shuffle", false, "post a webhook's copies concurrently, each after a random 0-50 ms delay, so copies and webhooks sent close together arrive in mixed order")
}

// judgeFlags are the flags that time and judge a single call.
func (o *options) judgeFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.noMediaTimeout, "no-media-timeout", 20*time.Second, "after accept, no media from the gateway for that long: terminate with 138021")
	fs.DurationVar(&o.timeout, "timeout", 0, "hang up after this long in any case (default: derived from the other timeouts)")
	fs.Float64Var(&o.minLevel, "min-level", -50, "received audio below this `dBFS` counts as no audio")
	fs.Float64Var(&o.expectHz, "expect-hz", 0, "when > 0, the received audio's dominant frequency must be within 20 Hz of this")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	fs.BoolVar(&o.verbose, "v", false, "debug logs on stderr")
}

func (o *options) config(getenv func(string) string) (wasim.Config, error) {
	var errs []error
	if o.webhook == "" {
		errs = append(errs, errors.New("-webhook is required"))
	}
	secret := getenv(o.secretEnv)
	if o.secretEnv == "" || secret == "" {
		errs = append(errs, fmt.Errorf("environment variable %q (named by -app-secret-env) is empty", o.secretEnv))
	}
	token := getenv(o.tokenEnv)
	if o.tokenEnv == "" || token == "" {
		errs = append(errs, fmt.Errorf("environment variable %q (named by -token-env) is empty", o.tokenEnv))
	}
	var verify string
	if o.verifyEnv != "" {
		if verify = getenv(o.verifyEnv); verify == "" {
			errs = append(errs, fmt.Errorf("environment variable %q (named by -verify-token-env) is empty", o.verifyEnv))
		}
	}
	if o.webhookCopies < 1 {
		errs = append(errs, errors.New("-webhook-copies must be at least 1"))
	}
	if o.acceptTimeout <= 0 || o.noMediaTimeout <= 0 || o.duration < 0 {
		errs = append(errs, errors.New("-accept-timeout and -no-media-timeout must be positive, -duration not negative"))
	}
	return wasim.Config{
		GraphListen:        o.graphListen,
		WebhookURL:         o.webhook,
		AppSecret:          secret,
		AccessToken:        token,
		PhoneNumberID:      o.phoneID,
		DisplayPhoneNumber: o.displayPhone,
		WABAID:             o.wabaID,
		VerifyToken:        verify,
		MediaIP:            o.mediaIP,
		AcceptTimeout:      o.acceptTimeout,
		NoMediaTimeout:     o.noMediaTimeout,
		WebhookCopies:      o.webhookCopies,
		WebhookShuffle:     o.webhookShuffle,
	}, errors.Join(errs...)
}

// judge lists why the call does not pass. Normally it must have been
// accepted, ended normally, carried audio back and broken no rule. With
// -bad-signature the gateway must refuse the webhook with a 4xx; with
// -terminate-first it must leave the stale connect alone.
func judge(r *wasim.Report, o *options) []string {
	var why []string
	if n := len(r.Violations); n > 0 {
		why = append(why, fmt.Sprintf("%d Meta rule(s) broken", n))
	}
	switch {
	case o.badSig:
		refused := false
		for _, f := range r.WebhookFailures {
			refused = refused || strings.Contains(f, "answered HTTP 4")
		}
		if r.Outcome != wasim.OutcomeWebhookRejected || !refused {
			why = append(why, fmt.Sprintf("the badly signed connect webhook was not refused with a 4xx (outcome %s)", r.Outcome))
		}
		return why
	case o.terminateFirst:
		if len(r.ActionsReceived) > 0 {
			why = append(why, fmt.Sprintf("the gateway acted on a call already terminated: %s", strings.Join(r.ActionsReceived, ", ")))
		}
		if len(r.WebhookFailures) > 0 {
			why = append(why, "webhooks were not accepted")
		}
		return why
	}
	if !r.Answered() {
		why = append(why, fmt.Sprintf("the call was never accepted (outcome %s)", r.Outcome))
	}
	switch r.Outcome {
	case wasim.OutcomeCompletedByUser, wasim.OutcomeTerminatedByBusiness:
	default:
		why = append(why, "outcome "+r.Outcome)
	}
	if r.PacketsReceived == 0 || r.ReceivedLevelDBFS < o.minLevel {
		why = append(why, fmt.Sprintf("no audio came back (%d packets, %.1f dBFS)", r.PacketsReceived, r.ReceivedLevelDBFS))
	}
	if o.expectHz > 0 && math.Abs(r.ReceivedFreqHz-o.expectHz) > 20 {
		why = append(why, fmt.Sprintf("received %.0f Hz, expected %.0f Hz", r.ReceivedFreqHz, o.expectHz))
	}
	return why
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newLogger(w io.Writer, verbose bool) *zap.Logger {
	level := zapcore.WarnLevel
	if verbose {
		level = zapcore.DebugLevel
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = "" // the report carries the times
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wagateway/wagateway/whatsapp/wasim"
)

const bicUsage = `Usage:
  wasim bic [flags]      (alias: wasim user)

Plays Meta for one business-initiated call: one simulated WhatsApp user,
given by the flags below, whom the gateway calls. Point the gateway's Graph
base URL at http://<graph-listen>; the simulator serves
  GET  /{version}/{phone_number_id}/call_permissions   the user's permission
  POST /{version}/{phone_number_id}/messages           permission requests,
       answered per -reply by a signed call_permission_reply webhook
  POST /{version}/{phone_number_id}/calls              connect, terminate
with Meta's limits and error codes, answers the gateway's offer as Meta does
(ICE-lite, DTLS, Opus), posts RINGING, ACCEPTED or REJECTED and terminate,
and has the user answer, talk (a tone) and hang up as the flags say. It waits
-wait for the gateway to place the call, then prints the same report as
"wasim call".

Secrets come from the environment variables named by -app-secret-env and
-token-env, as for "wasim call".

Exit status: 0 when the call went as the user's -answer says (accept: answered,
audio came back; reject: declined; none: not answered) with no Meta rule
broken and every webhook taken; 1 otherwise, or when no call came within
-wait; 2 on usage errors; 3 when the simulator could not start.

Example:
  WASIM_APP_SECRET=... WASIM_ACCESS_TOKEN=... wasim bic \
    -webhook http://127.0.0.1:8080/webhook -graph-listen 127.0.0.1:8090 \
    -to 15551234567 -permission none -reply accept -answer accept -answer-after 3s -talk-for 5s

Flags:
`

// bicOptions are the simulated user's flags.
type bicOptions struct {
	to, userID, name, permission, reply, answer string
	dtlsRole, order, wav, digits                string
	replyAfter, answerAfter, ringingAfter       time.Duration
	talkFor, digitsAfter, ringTimeout, wait     time.Duration
	tone                                        float64
}

func newBICFlagSet(stderr io.Writer) (*flag.FlagSet, *options, *bicOptions) {
	o := &options{acceptTimeout: 60 * time.Second} // for config(); BIC has no accept
	b := &bicOptions{}
	fs := flag.NewFlagSet("wasim bic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, bicUsage)
		fs.PrintDefaults()
	}
	o.commonFlags(fs)
	o.judgeFlags(fs)
	fs.StringVar(&b.to, "to", "15551234567", "the user's phone `number` (wa_id) the gateway calls; empty: reached by -user-id only")
	fs.StringVar(&b.userID, "user-id", "", "the user's BSUID (recipient, to_user_id); made up when empty")
	fs.StringVar(&b.name, "name", "WhatsApp User", "the user's profile `name`")
	fs.StringVar(&b.permission, "permission", wasim.PermissionTemporary, "the call permission the user has given: none, temporary (7 days) or permanent")
	fs.StringVar(&b.reply, "reply", wasim.ReplyAccept, "the user's reply to a permission request: accept, accept_permanent, reject or none")
	fs.DurationVar(&b.replyAfter, "reply-after", time.Second, "how long the user takes to reply to a permission request")
	fs.StringVar(&b.answer, "answer", wasim.AnswerAccept, "what the user does when called: accept, reject or none (lets it ring)")
	fs.DurationVar(&b.ringingAfter, "ringing-after", 300*time.Millisecond, "RINGING this long after connect")
	fs.DurationVar(&b.answerAfter, "answer-after", 2*time.Second, "the user answers (or rejects) this long after connect")
	fs.DurationVar(&b.ringTimeout, "ring-timeout", 60*time.Second, "unanswered this long after connect: Meta terminates (not answered)")
	fs.DurationVar(&b.talkFor, "talk-for", 5*time.Second, "how long the user talks once media is up, then hangs up (0: wait for the gateway)")
	fs.Float64Var(&b.tone, "tone", 1000, "tone the user sends, `Hz`")
	fs.StringVar(&b.wav, "wav", "", "16-bit PCM WAV `file` the user sends instead of the tone (looped)")
	fs.StringVar(&b.digits, "digits", "", "DTMF `digits` the user presses (RFC 4733)")
	fs.DurationVar(&b.digitsAfter, "digits-after", time.Second, "when the user presses them, after starting to talk")
	fs.StringVar(&b.dtlsRole, "dtls-role", wasim.DTLSActive, "the a=setup of Meta's answer: active (Meta is the DTLS client) or passive")
	fs.StringVar(&b.order, "webhook-order", wasim.OrderNormal, "Meta's webhook order: normal, accepted_after_media, accepted_before_connect or terminate_before_connect")
	fs.DurationVar(&b.wait, "wait", 5*time.Minute, "how long to wait for the gateway to place the call")
	return fs, o, b
}

func (b *bicOptions) user() wasim.User {
	return wasim.User{
		WaID: b.to, BSUID: b.userID, ProfileName: b.name,
		Permission: b.permission, ReplyToRequest: b.reply, ReplyAfter: b.replyAfter,
		Answer: b.answer, AnswerAfter: b.answerAfter, RingingAfter: b.ringingAfter, TalkFor: b.talkFor,
		ToneHz: b.tone, WAVFile: b.wav, Digits: b.digits, DigitsAfter: b.digitsAfter,
		DTLSRole: b.dtlsRole, WebhookOrder: b.order,
	}
}

// runBIC is "wasim bic": one simulated user waits for the gateway's call.
func runBIC(args []string, getenv func(string) string, stdout, stderr io.Writer, interrupt <-chan os.Signal) int {
	fs, o, b := newBICFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wasim bic: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	cfg, err := o.config(getenv)
	if b.to == "" && b.userID == "" {
		err = errors.Join(err, errors.New("-to or -user-id is required"))
	}
	if b.wait <= 0 || b.ringTimeout <= 0 {
		err = errors.Join(err, errors.New("-wait and -ring-timeout must be positive"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "wasim bic: %v\n", err)
		return exitUsage
	}
	log := newLogger(stderr, o.verbose)
	defer func() { _ = log.Sync() }()
	cfg.Logger = log
	cfg.RingTimeout = b.ringTimeout

	sim, err := wasim.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	defer sim.Close()
	user := b.user()
	if err := sim.SetUser(user); err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	if err := sim.Start(context.Background()); err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitRuntime
	}
	who := b.to
	if who == "" {
		who = b.userID
	}
	fmt.Fprintf(stderr, "wasim bic: graph api at %s (phone number id %s), webhook %s\n", sim.GraphURL(), cfg.PhoneNumberID, cfg.WebhookURL)
	fmt.Fprintf(stderr, "wasim bic: waiting up to %s for a call to %s (permission %s, answer %s)\n", b.wait, who, b.permission, b.answer)

	if interrupt == nil {
		sig := make(chan os.Signal, 2)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		interrupt = sig
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.wait)
	defer cancel()
	type placed struct {
		c   *wasim.Call
		err error
	}
	got := make(chan placed, 1)
	go func() {
		c, err := sim.BICCall(ctx, who)
		got <- placed{c, err}
	}()
	var call *wasim.Call
	select {
	case p := <-got:
		call, err = p.c, p.err
	case <-interrupt:
		cancel()
		<-got
		err = errors.New("interrupted")
	}
	if err != nil {
		fmt.Fprintf(stderr, "wasim bic: no call to %s: %v\n", who, err)
		if st, ok := sim.UserState(who); ok {
			fmt.Fprintf(stderr, "wasim bic: the gateway made %d permission check(s) and %d request(s); permission %s\n",
				st.PermissionChecks, st.PermissionRequests, st.Permission)
		}
		for _, v := range sim.Violations() {
			fmt.Fprintf(stderr, "  violation: %s\n", v)
		}
		return exitFailed
	}
	fmt.Fprintf(stderr, "wasim bic: the gateway calls, id %s\n", call.ID())

	limit := o.timeout
	if limit <= 0 {
		limit = b.ringTimeout + b.talkFor + cfg.NoMediaTimeout + 30*time.Second
		if b.talkFor == 0 {
			limit += 10 * time.Minute
		}
	}
	return finishCall(call, limit, interrupt, o, "wasim bic", stdout, stderr, func(r *wasim.Report) []string { return judgeBIC(r, o, b) })
}

// judgeBIC lists why a business-initiated call does not pass: it must have
// gone as the user's answer says, with every webhook taken and no Meta rule
// broken; an answered call must carry audio back.
func judgeBIC(r *wasim.Report, o *options, b *bicOptions) []string {
	var why []string
	if n := len(r.Violations); n > 0 {
		why = append(why, fmt.Sprintf("%d Meta rule(s) broken", n))
	}
	if n := len(r.WebhookFailures); n > 0 {
		why = append(why, fmt.Sprintf("%d webhook(s) not taken", n))
	}
	outcome := func(ok ...string) {
		for _, s := range ok {
			if r.Outcome == s {
				return
			}
		}
		why = append(why, fmt.Sprintf("outcome %s, want %v", r.Outcome, ok))
	}
	switch {
	case b.answer == wasim.AnswerReject || b.order == wasim.OrderTerminateBeforeConnect:
		outcome(wasim.OutcomeRejectedByUser)
		return why
	case b.answer == wasim.AnswerNone:
		// the gateway may give up before Meta's ring timeout
		outcome(wasim.OutcomeNotAnswered, wasim.OutcomeTerminatedByBusiness)
		return why
	}
	if !r.Answered() {
		why = append(why, fmt.Sprintf("the user never answered (outcome %s)", r.Outcome))
	}
	outcome(wasim.OutcomeCompletedByUser, wasim.OutcomeTerminatedByBusiness)
	if heard := r.PacketsReceived - r.PacketsBeforeAnswer; heard == 0 || r.ReceivedLevelDBFS < o.minLevel {
		why = append(why, fmt.Sprintf("no audio reached the user (%d packets after the answer, %.1f dBFS)", heard, r.ReceivedLevelDBFS))
	}
	if o.expectHz > 0 && math.Abs(r.ReceivedFreqHz-o.expectHz) > 20 {
		why = append(why, fmt.Sprintf("received %.0f Hz, expected %.0f Hz", r.ReceivedFreqHz, o.expectHz))
	}
	return why
}

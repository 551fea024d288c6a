package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wagateway/wagateway/gateway"
	"github.com/wagateway/wagateway/whatsapp/wasim"
)

const loadUsage = `Usage:
  wasim load [flags]

Places -calls simulated WhatsApp calls through a gateway at -rate calls a
second, holds them all up together for -hold, hangs them up, and reports:
calls attempted/bridged/failed (by reason)/dropped, setup latency, loss and
lateness toward WhatsApp per packet, the round trip WhatsApp → PBX echo →
WhatsApp by latency markers and the latency load added to it, the gateway's
own per-call media counters (from its log), and the CPU and memory of the
gateway, the PBX echo and the generator itself (from /proc).

Each call is a real Cloud API call to the gateway (signed webhooks, Graph
rules enforced, ICE-lite + DTLS-SRTP + Opus on its own UDP socket); its
audio is encoded once for the run and nothing is decoded except around the
latency markers, so the generator stays cheap.

Either let it start everything (recommended for figures):
  wasim load -gateway-bin /tmp/wagateway -pbx echo|sipp -codec pcmu|pcma|opus ...
(add -whatsapp-codec g711 for calls that run G.711 end to end: the callers
offer PCMA and PCMU beside Opus, as Meta does for a number whose
audio.additional_codecs lists them, and the trunk passes G.711 through)
which writes a gateway config to a temporary directory (all on 127.0.0.1,
secrets in the gateway's environment only), starts the gateway and the PBX
echo ("wasim echo" as a process of its own, or "sipp -rtp_echo"), and reads
the gateway's call records afterwards; or point it at a running gateway:
  wasim load -webhook http://127.0.0.1:8080/webhook -graph-listen 127.0.0.1:8090 ...
whose whatsapp.graph_base_url must be http://<graph-listen> and whose
secrets are the -app-secret-env / -token-env values; its pid is found from
the webhook port (or -gateway-pid), its call records read if
-gateway-records names its call_records.file.

Exit status: 0 when every call was bridged, none dropped, no Meta rule was
broken and loss stayed within -max-loss (and the added latency within
-max-added-p99 when set); 1 otherwise; 2 on usage errors; 3 when something
could not start.

Flags:
`

type loadFlags struct {
	calls                        int
	rate, hangupRate, tone       float64
	hold, markerEvery, setupWait time.Duration
	lateMs                       float64
	gatewayBin, pbx, codec       string
	whatsappCodec, addCodecs     string
	gatewayProfile               string
	gatewayProfiles              string
	webhook, graphListen         string
	gatewayPID                   int
	gatewayLog, gatewayRecords   string
	workDir                      string
	secretEnv, tokenEnv, phoneID string
	floorUS, maxLoss, maxAddedMs float64
	jsonOut                      string
	timeout                      time.Duration
	opusComplexity               int
	verbose                      bool
	cpuProfile                   string
	perCall                      bool
	webhookCopies                int
	webhookShuffle               bool
}

func newLoadFlagSet(stderr io.Writer) (*flag.FlagSet, *loadFlags) {
	o := &loadFlags{}
	fs := flag.NewFlagSet("wasim load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, loadUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.calls, "calls", 20, "calls to place and hold up together")
	fs.Float64Var(&o.rate, "rate", 10, "calls placed per `second`")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "how long all calls stay up together once bridged")
	fs.Float64Var(&o.hangupRate, "hangup-rate", 0, "calls hung up per second at the end (default: -rate)")
	fs.Float64Var(&o.tone, "tone", 1000, "the callers' tone, `Hz` (300-2000)")
	fs.DurationVar(&o.markerEvery, "marker-every", 2*time.Second, "latency marker period per call (whole seconds; negative: none)")
	fs.Float64Var(&o.lateMs, "late-ms", 20, "a packet toward WhatsApp this many `ms` behind its schedule counts late")
	fs.DurationVar(&o.setupWait, "setup-timeout", 30*time.Second, "a call not bridged by then has failed")
	fs.StringVar(&o.gatewayBin, "gateway-bin", "", "wagateway `binary` to start with a generated loopback config")
	fs.StringVar(&o.pbx, "pbx", "echo", "with -gateway-bin: the PBX to start, \"echo\" (wasim echo) or \"sipp\" (sipp -rtp_echo), or a host:port to use")
	fs.StringVar(&o.codec, "codec", "pcmu", "with -gateway-bin: the trunk's codec: pcmu, pcma, g722 (transcoded) or opus (passed through)")
	fs.IntVar(&o.opusComplexity, "opus-complexity", -1, "with -gateway-bin: media.opus_complexity (default: the gateway's)")
	fs.StringVar(&o.whatsappCodec, "whatsapp-codec", "opus", "with -gateway-bin: the trunk's whatsapp_codec: opus, or g711 (G.711 passed through when the callers offer the trunk's codec)")
	fs.StringVar(&o.addCodecs, "additional-codecs", "", "the simulated number's audio.additional_codecs: `list` of PCMA, PCMU the callers offer beside Opus (default: PCMA,PCMU with -whatsapp-codec g711, else none)")
	fs.StringVar(&o.webhook, "webhook", "", "a running gateway's webhook `URL` (instead of -gateway-bin)")
	fs.StringVar(&o.graphListen, "graph-listen", "127.0.0.1:0", "`address` of the simulated Graph API (fixed when the gateway is already running)")
	fs.IntVar(&o.gatewayPID, "gateway-pid", 0, "the running gateway's `pid` (default: whoever listens on the webhook port)")
	fs.StringVar(&o.gatewayProfile, "gateway-cpuprofile", "", "with -gateway-bin: have the gateway write its CPU profile over the run to this `file`")
	fs.StringVar(&o.gatewayProfiles, "gateway-profiles", "", "with -gateway-bin: have the gateway record its allocations, contended mutexes and blocking, and write them at exit to allocs.prof, mutex.prof and block.prof in this `dir`")
	fs.StringVar(&o.gatewayLog, "gateway-log", "", "with -gateway-bin: where to keep the gateway's JSON log `file`")
	fs.StringVar(&o.gatewayRecords, "gateway-records", "", "a running gateway's call_records.file: its media counters are read from it")
	fs.StringVar(&o.workDir, "work-dir", "", "where the config, scenario and logs go (default: a temporary directory, removed)")
	fs.StringVar(&o.secretEnv, "app-secret-env", "WASIM_APP_SECRET", "with -webhook: environment `variable` holding the app secret")
	fs.StringVar(&o.tokenEnv, "token-env", "WASIM_ACCESS_TOKEN", "with -webhook: environment `variable` holding the access token")
	fs.StringVar(&o.phoneID, "phone-number-id", "1000000001", "business phone number `id`")
	fs.Float64Var(&o.floorUS, "floor-us", 0, "libopus floor of a transcoded call, `µs` per 20 ms (decode + encode, from go test -bench BareLibopus ./rtpbridge/)")
	fs.Float64Var(&o.maxLoss, "max-loss", 0.1, "most `percent` of packets lost in any direction for a pass")
	fs.Float64Var(&o.maxAddedMs, "max-added-p99", 0, "when > 0: most p99 added one-way latency, `ms`, for a pass")
	fs.StringVar(&o.jsonOut, "json", "", "write the report as JSON to this `file` (\"-\": to stdout, instead of the table)")
	fs.DurationVar(&o.timeout, "timeout", 0, "end the run after this long in any case (default: derived from the others)")
	fs.BoolVar(&o.verbose, "v", false, "debug logs on stderr")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile over the run to this `file`")
	fs.BoolVar(&o.perCall, "per-call", false, "add every call's own figures to the JSON report")
	webhookCopyFlags(fs, &o.webhookCopies, &o.webhookShuffle)
	return fs, o
}

func runLoad(args []string, getenv func(string) string, stdout, stderr io.Writer, interrupt <-chan os.Signal) int {
	fs, o := newLoadFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wasim load: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if (o.gatewayBin == "") == (o.webhook == "") {
		fmt.Fprintln(stderr, "wasim load: give -gateway-bin (start one) or -webhook (use a running one)")
		return exitUsage
	}
	switch o.codec {
	case "pcmu", "pcma", "g722", "opus":
	default:
		fmt.Fprintf(stderr, "wasim load: -codec %q: want pcmu, pcma, g722 or opus\n", o.codec)
		return exitUsage
	}
	if o.whatsappCodec != "opus" && o.whatsappCodec != "g711" {
		fmt.Fprintf(stderr, "wasim load: -whatsapp-codec %q: want opus or g711\n", o.whatsappCodec)
		return exitUsage
	}
	addCodecs := additionalCodecs(o)
	if o.calls < 1 || o.rate <= 0 || o.hold < 0 {
		fmt.Fprintln(stderr, "wasim load: -calls and -rate must be positive, -hold not negative")
		return exitUsage
	}
	if o.webhookCopies < 1 {
		fmt.Fprintln(stderr, "wasim load: -webhook-copies must be at least 1")
		return exitUsage
	}
	limit := o.timeout
	if limit <= 0 {
		hr := o.hangupRate
		if hr <= 0 {
			hr = o.rate
		}
		limit = time.Duration(float64(o.calls)/o.rate*float64(time.Second)) + o.setupWait + o.hold +
			time.Duration(float64(o.calls)/hr*float64(time.Second)) + 90*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if interrupt == nil {
		sig := make(chan os.Signal, 2)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		interrupt = sig
	}
	go func() {
		select {
		case <-interrupt:
			fmt.Fprintln(stderr, "wasim load: interrupted: hanging up")
			cancel()
		case <-ctx.Done():
		}
	}()

	log := newLogger(stderr, o.verbose)
	defer func() { _ = log.Sync() }()
	dir := o.workDir
	if dir == "" {
		d, err := os.MkdirTemp("", "wasim-load-")
		if err != nil {
			fmt.Fprintf(stderr, "wasim load: %v\n", err)
			return exitRuntime
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "wasim load: %v\n", err)
		return exitRuntime
	}

	var secret, token, webhook string
	var watch []wasim.WatchedProcess
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	graphListen := o.graphListen
	var gw *child
	if o.gatewayBin != "" {
		secret, token = randomHex(16), randomHex(16)
		pbxAddr, pbxChild, err := startPBX(ctx, o, dir, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "wasim load: pbx: %v\n", err)
			return exitRuntime
		}
		if pbxChild != nil {
			stops = append(stops, pbxChild.stop)
			watch = append(watch, wasim.WatchedProcess{Name: "pbx (" + o.pbx + ")", PID: pbxChild.pid()})
		}
		// The Graph API must be bound before the gateway's config names it.
		if graphListen == "127.0.0.1:0" {
			p, err := wasim.FreeLoopbackPort("tcp")
			if err != nil {
				fmt.Fprintf(stderr, "wasim load: %v\n", err)
				return exitRuntime
			}
			graphListen = "127.0.0.1:" + strconv.Itoa(p)
		}
		var werr error
		gw, webhook, werr = startGateway(ctx, o, dir, pbxAddr, "http://"+graphListen, secret, token, stderr)
		if werr != nil {
			fmt.Fprintf(stderr, "wasim load: gateway: %v\n", werr)
			return exitRuntime
		}
		stops = append(stops, gw.stop)
		watch = append([]wasim.WatchedProcess{{Name: "gateway", PID: gw.pid()}}, watch...)
	} else {
		webhook = o.webhook
		secret, token = getenv(o.secretEnv), getenv(o.tokenEnv)
		if secret == "" || token == "" {
			fmt.Fprintf(stderr, "wasim load: environment variables %q and %q must hold the app secret and the access token\n", o.secretEnv, o.tokenEnv)
			return exitUsage
		}
		pid := o.gatewayPID
		if pid == 0 {
			if u, err := url.Parse(webhook); err == nil {
				if p, err := strconv.Atoi(u.Port()); err == nil {
					pid, _ = wasim.PIDListeningOn(p)
				}
			}
		}
		if pid != 0 {
			watch = append(watch, wasim.WatchedProcess{Name: "gateway", PID: pid})
		} else {
			fmt.Fprintln(stderr, "wasim load: the gateway's process was not found: its CPU and memory are not measured (give -gateway-pid)")
		}
	}
	watch = append(watch, wasim.WatchedProcess{Name: "generator (wasim)", PID: os.Getpid()})

	sim, err := wasim.New(wasim.Config{
		GraphListen: graphListen, WebhookURL: webhook, AppSecret: secret, AccessToken: token,
		PhoneNumberID: o.phoneID, MediaIP: "127.0.0.1", AcceptTimeout: o.setupWait + 30*time.Second, Logger: log.Named("wasim"),
		WebhookCopies: o.webhookCopies, WebhookShuffle: o.webhookShuffle,
	})
	if err != nil {
		fmt.Fprintf(stderr, "wasim load: %v\n", err)
		return exitUsage
	}
	if err := sim.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "wasim load: %v\n", err)
		return exitRuntime
	}
	defer sim.Close()
	if err := sim.SetAdditionalCodecs(o.phoneID, addCodecs...); len(addCodecs) > 0 && err != nil {
		fmt.Fprintf(stderr, "wasim load: -additional-codecs: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "wasim load: graph api at %s, webhook %s\n", sim.GraphURL(), webhook)

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "wasim load: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "wasim load: %v\n", err)
			return exitRuntime
		}
	}
	rep, err := sim.RunLoad(ctx, wasim.LoadOptions{
		Calls: o.calls, Rate: o.rate, Hold: o.hold, HangupRate: o.hangupRate, ToneHz: o.tone,
		MarkerEvery: o.markerEvery, LateAfter: time.Duration(o.lateMs * float64(time.Millisecond)),
		SetupTimeout: o.setupWait, Watch: watch, Progress: stderr, PerCall: o.perCall,
	})
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		fmt.Fprintf(stderr, "wasim load: %v\n", err)
		return exitRuntime
	}
	rep.SetFloor(o.floorUS)

	// The gateway's own counters, from the record it writes as each call
	// ends.
	records := o.gatewayRecords
	if gw != nil {
		gw.stop() // every call has ended: it exits at once, its records complete
		records = gw.records
	} else if records != "" {
		time.Sleep(2 * time.Second) // the last calls' BYEs
	}
	if records != "" {
		gm, perCall, err := readGatewayRecords(records, rep.StartedAt)
		if err != nil {
			fmt.Fprintf(stderr, "wasim load: gateway call records: %v\n", err)
		} else {
			rep.Gateway = gm
			for i := range rep.PerCall {
				if st, ok := perCall[rep.PerCall[i].CallID]; ok {
					rep.PerCall[i].GatewayLostFromCaller = st[0]
					rep.PerCall[i].GatewayUnderruns = st[1]
				}
			}
		}
	}
	if o.codec != "" && o.gatewayBin != "" {
		rep.Notes = append(rep.Notes, "trunk codec "+o.codec+", whatsapp_codec "+o.whatsappCodec+", pbx "+o.pbx)
	}
	if len(addCodecs) > 0 {
		rep.Notes = append(rep.Notes, "callers offer "+strings.Join(addCodecs, ", ")+" beside Opus (audio.additional_codecs)")
	}

	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		b = append(b, '\n')
		if o.jsonOut == "-" {
			_, _ = stdout.Write(b)
		} else if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "wasim load: %v\n", err)
		}
	}
	if o.jsonOut != "-" {
		fmt.Fprint(stdout, rep.String())
	}
	if why := judgeLoad(rep, o); len(why) > 0 {
		for _, w := range why {
			fmt.Fprintf(stderr, "FAIL: %s\n", w)
		}
		return exitFailed
	}
	fmt.Fprintln(stderr, "PASS")
	return exitOK
}

// judgeLoad lists why a run does not pass.
func judgeLoad(r *wasim.LoadReport, o *loadFlags) []string {
	var why []string
	if r.Failed > 0 || r.Bridged != r.Calls {
		why = append(why, fmt.Sprintf("%d of %d calls bridged, %d failed %v", r.Bridged, r.Calls, r.Failed, r.FailedBy))
	}
	if r.Dropped > 0 {
		why = append(why, fmt.Sprintf("%d calls dropped %v", r.Dropped, r.DroppedBy))
	}
	if r.CallsWithViolations > 0 {
		why = append(why, fmt.Sprintf("%d calls broke Meta's rules", r.CallsWithViolations))
	}
	if r.ToWhatsApp.LossPercent > o.maxLoss {
		why = append(why, fmt.Sprintf("%.3f %% lost toward WhatsApp", r.ToWhatsApp.LossPercent))
	}
	if g := r.Gateway; g != nil {
		if l := g.WhatsAppToSIP.LossPercent; l > o.maxLoss {
			why = append(why, fmt.Sprintf("%.3f %% of the callers' packets lost before the gateway", l))
		}
		if l := g.SIPToWhatsApp.LossPercent; l > o.maxLoss {
			why = append(why, fmt.Sprintf("%.3f %% of the PBX's packets lost before the gateway", l))
		}
	}
	if o.maxAddedMs > 0 && r.RoundTrip.AddedOneWayMs.P99 > o.maxAddedMs {
		why = append(why, fmt.Sprintf("p99 added one-way latency %.2f ms > %.2f ms", r.RoundTrip.AddedOneWayMs.P99, o.maxAddedMs))
	}
	return why
}

// child is a process the run started.
type child struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	records string // the gateway's call_records.file
	stopped bool
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM, waits up to 20 s, then kills.
func (c *child) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func startChild(name string, cmd *exec.Cmd, logPath string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// startPBX starts the echo the gateway's trunk points at, or takes the
// address given.
func startPBX(ctx context.Context, o *loadFlags, dir string, stderr io.Writer) (string, *child, error) {
	switch o.pbx {
	case "echo":
		self, err := os.Executable()
		if err != nil {
			return "", nil, err
		}
		port, err := wasim.FreeLoopbackPort("udp")
		if err != nil {
			return "", nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(self, "echo", "-listen", addr, "-rtp-min", "30000", "-rtp-max", "39999")
		pr, pw, err := os.Pipe()
		if err != nil {
			return "", nil, err
		}
		cmd.Stdout = pw
		c, err := startChild("echo", cmd, filepath.Join(dir, "echo.log"))
		pw.Close()
		if err != nil {
			pr.Close()
			return "", nil, err
		}
		ready := make(chan bool, 1)
		go func() {
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			ok := false
			for sc.Scan() {
				if strings.Contains(sc.Text(), "listening on") && !ok {
					ok = true
					ready <- true
				}
			}
			if !ok {
				ready <- false
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				c.stop()
				return "", nil, fmt.Errorf("wasim echo did not start (see %s)", c.logPath)
			}
		case <-time.After(10 * time.Second):
			c.stop()
			return "", nil, errors.New("wasim echo not ready after 10 s")
		case <-ctx.Done():
			c.stop()
			return "", nil, ctx.Err()
		}
		fmt.Fprintf(stderr, "wasim load: pbx: wasim echo on %s (pid %d)\n", addr, c.pid())
		return addr, c, nil
	case "sipp":
		bin, err := exec.LookPath("sipp")
		if err != nil {
			return "", nil, errors.New("sipp is not installed (Debian: sip-tester)")
		}
		port, err := wasim.FreeLoopbackPort("udp")
		if err != nil {
			return "", nil, err
		}
		mport, err := wasim.FreeLoopbackPort("udp")
		if err != nil {
			return "", nil, err
		}
		scen := filepath.Join(dir, "pbx_answer_echo.xml")
		if err := os.WriteFile(scen, []byte(sippScenario(o.codec)), 0o644); err != nil {
			return "", nil, err
		}
		cmd := exec.Command(bin, "-sf", scen, "-i", "127.0.0.1", "-p", strconv.Itoa(port),
			"-mi", "127.0.0.1", "-mp", strconv.Itoa(mport), "-rtp_echo",
			"-m", strconv.Itoa(o.calls), "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "sipp-errors.log"))
		cmd.Dir = dir
		c, err := startChild("sipp", cmd, filepath.Join(dir, "sipp.log"))
		if err != nil {
			return "", nil, err
		}
		time.Sleep(300 * time.Millisecond) // let it bind
		select {
		case <-c.done:
			return "", nil, fmt.Errorf("sipp exited at once (see %s)", c.logPath)
		default:
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		fmt.Fprintf(stderr, "wasim load: pbx: sipp -rtp_echo on %s (pid %d)\n", addr, c.pid())
		return addr, c, nil
	}
	if _, _, err := net.SplitHostPort(o.pbx); err != nil {
		return "", nil, fmt.Errorf("-pbx %q is not echo, sipp or host:port", o.pbx)
	}
	return o.pbx, nil, nil
}

// sippScenario answers every call with the codec asked (RTP echoed by
// -rtp_echo) and waits for the gateway's BYE.
func sippScenario(codec string) string {
	pt, rtpmap := "0", "a=rtpmap:0 PCMU/8000"
	switch codec {
	case "pcma":
		pt, rtpmap = "8", "a=rtpmap:8 PCMA/8000"
	case "g722":
		pt, rtpmap = "9", "a=rtpmap:9 G722/8000"
	case "opus":
		pt, rtpmap = "111", "a=rtpmap:111 opus/48000/2\na=fmtp:111 useinbandfec=1"
	}
	return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- wasim load: the PBX answers every call (RTP echoed by sipp -rtp_echo) and waits for the BYE. -->
<scenario name="wasim load pbx">
  <recv request="INVITE" rrs="true"/>
  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]wasim[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]>
  </send>
  <send retrans="500">
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]wasim[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=pbx 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP ` + pt + ` 101
` + rtpmap + `
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE" timeout="3600000"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
  </send>
</scenario>
`
}

// startGateway writes a loopback config, starts the gateway with its
// secrets in its environment only, and waits for /healthz.
func startGateway(ctx context.Context, o *loadFlags, dir, pbxAddr, graphURL, secret, token string, stderr io.Writer) (*child, string, error) {
	httpPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		return nil, "", err
	}
	udpPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		return nil, "", err
	}
	sipPort, err := wasim.FreeLoopbackPort("udp")
	if err != nil {
		return nil, "", err
	}
	metricsPort, err := wasim.FreeLoopbackPort("tcp")
	if err != nil {
		return nil, "", err
	}
	cfgPath := filepath.Join(dir, "gateway.yaml")
	recordsPath := filepath.Join(dir, "calls.jsonl")
	env := append(os.Environ(), "WA_ACCESS_TOKEN="+token, "WA_APP_SECRET="+secret, "WA_VERIFY_TOKEN="+randomHex(16))
	optional := []string{"options_ping", "metrics"}
	var cfgErr error
	for {
		cfg := gatewayConfig(o, httpPort, udpPort, sipPort, metricsPort, pbxAddr, graphURL, recordsPath, optional)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, "", err
		}
		check := exec.CommandContext(ctx, o.gatewayBin, "check-config", cfgPath)
		check.Env = env
		out, err := check.CombinedOutput()
		if err == nil {
			break
		}
		cfgErr = fmt.Errorf("check-config: %s", strings.TrimSpace(string(out)))
		// An older gateway may not know an optional field: drop it.
		dropped := false
		for i, f := range optional {
			if strings.Contains(string(out), f) {
				optional = append(optional[:i], optional[i+1:]...)
				dropped = true
				break
			}
		}
		if !dropped {
			return nil, "", cfgErr
		}
	}
	logPath := o.gatewayLog
	if logPath == "" {
		logPath = filepath.Join(dir, "gateway.log")
	}
	args := []string{"-config", cfgPath}
	if o.gatewayProfile != "" {
		args = append(args, "-cpuprofile", o.gatewayProfile)
	}
	if d := o.gatewayProfiles; d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, "", fmt.Errorf("gateway profiles: %w", err)
		}
		args = append(args, "-memprofile", filepath.Join(d, "allocs.prof"),
			"-mutexprofile", filepath.Join(d, "mutex.prof"), "-blockprofile", filepath.Join(d, "block.prof"))
	}
	cmd := exec.Command(o.gatewayBin, args...)
	cmd.Env = env
	c, err := startChild("gateway", cmd, logPath)
	if err != nil {
		return nil, "", err
	}
	c.records = recordsPath
	// /healthz is on the metrics listener; a gateway that predates
	// metrics.listen serves it on the webhook listener.
	health := "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/healthz"
	if slices.Contains(optional, "metrics") {
		health = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/healthz"
	}
	deadline := time.Now().Add(15 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-c.done:
			return nil, "", fmt.Errorf("the gateway exited (see %s)", logPath)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.stop()
			return nil, "", fmt.Errorf("the gateway is not healthy after 15 s (see %s)", logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(stderr, "wasim load: gateway %s (pid %d), config %s, log %s\n", o.gatewayBin, c.pid(), cfgPath, logPath)
	return c, "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/webhook", nil
}

// gatewayConfig is the load run's gateway config: everything on 127.0.0.1,
// one trunk to the PBX with the codec asked, logs in JSON at info, a call
// record per call (the media counters), secrets named, never written.
func gatewayConfig(o *loadFlags, httpPort, udpPort, sipPort, metricsPort int, pbxAddr, graphURL, records string, optional []string) string {
	codec := map[string]string{"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}[o.codec]
	var b strings.Builder
	fmt.Fprintf(&b, `# written by wasim load
log: {level: info, format: json}
http: {listen: "127.0.0.1:%d", webhook_path: /webhook}
whatsapp:
  graph_base_url: %q
  graph_timeout: 10s
  access_token: {env: WA_ACCESS_TOKEN}
  app_secret: {env: WA_APP_SECRET}
  verify_token: {env: WA_VERIFY_TOKEN}
webrtc: {udp_port: %d, listen_ips: ["127.0.0.1"]}
sip: {listen: "127.0.0.1:%d", rtp_address: 127.0.0.1, rtp_port_min: 20000, rtp_port_max: 29999}
call_records: {file: %q}
`, httpPort, graphURL, udpPort, sipPort, records)
	if o.opusComplexity >= 0 {
		fmt.Fprintf(&b, "media: {opus_complexity: %d}\n", o.opusComplexity)
	}
	if slices.Contains(optional, "metrics") {
		fmt.Fprintf(&b, "metrics: {listen: \"127.0.0.1:%d\"}\n", metricsPort)
	}
	fmt.Fprintf(&b, "trunks:\n  - name: pbx\n    address: %q\n    codecs: [%s]\n", pbxAddr, codec)
	if o.whatsappCodec == "g711" { // only then: an older gateway does not know the field
		b.WriteString("    whatsapp_codec: g711\n")
	}
	for _, f := range optional {
		if f == "options_ping" {
			b.WriteString("    options_ping: false\n") // sipp's scenario takes INVITEs only
		}
	}
	fmt.Fprintf(&b, `numbers:
  - phone_number_id: %q
    routes:
      - {name: pbx, trunk: pbx, destination: "sip:agents@%s", answer_timeout: 30s}
`, o.phoneID, pbxAddr)
	return b.String()
}

// readGatewayRecords sums the media of the gateway's call records (one JSON
// object a line, call_records.file) of calls that ended after since; per
// call id, it also returns the callers' packets lost before the gateway and
// the PBX's packets that came too late to play.
func readGatewayRecords(path string, since time.Time) (*wasim.GatewayMedia, map[string][2]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	gm := &wasim.GatewayMedia{}
	perCall := map[string][2]uint64{}
	add := func(g *wasim.GatewayDirection, d gateway.RecordDirection) {
		g.PacketsIn += d.PacketsIn
		g.PacketsOut += d.PacketsOut
		g.Lost += d.Lost
		g.Late += d.Late
		g.Concealed += d.Concealed
		g.FECRecovered += d.FECRecovered
		g.Underruns += d.Underruns
		g.SilenceFrames += d.SilenceFrames
		g.PacerResyncs += d.PacerResyncs
		g.Overruns += d.Overruns
		g.WriteErrors += d.WriteErrors
		g.MaxPlayoutMs = max(g.MaxPlayoutMs, d.PlayoutDelayMs)
		if d.Lost > 0 {
			g.CallsWithLoss++
		}
		if d.Late+d.Underruns > 0 {
			g.CallsWithLates++
		}
		if exp := d.PacketsIn + d.Lost; exp > 0 {
			g.MaxLossPercent = max(g.MaxLossPercent, math.Round(1e5*float64(d.Lost)/float64(exp))/1e3)
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		var rec gateway.CallRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Media == nil || rec.Times.End.Before(since) {
			continue
		}
		gm.Calls++
		add(&gm.WhatsAppToSIP, rec.Media.WhatsAppToSIP)
		add(&gm.SIPToWhatsApp, rec.Media.SIPToWhatsApp)
		perCall[rec.CallID] = [2]uint64{rec.Media.WhatsAppToSIP.Lost, rec.Media.SIPToWhatsApp.Underruns}
	}
	for _, g := range []*wasim.GatewayDirection{&gm.WhatsAppToSIP, &gm.SIPToWhatsApp} {
		if exp := g.PacketsIn + g.Lost; exp > 0 {
			g.LossPercent = math.Round(1e5*float64(g.Lost)/float64(exp)) / 1e3
		}
	}
	if gm.Calls == 0 {
		return nil, nil, fmt.Errorf("no call record with media in %s since %s", path, since.Format(time.RFC3339))
	}
	return gm, perCall, sc.Err()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// additionalCodecs is the simulated number's audio.additional_codecs:
// -additional-codecs ("none" for none), else PCMA, PCMU with
// -whatsapp-codec g711 (Meta's documented example), else none.
func additionalCodecs(o *loadFlags) []string {
	switch v := strings.TrimSpace(o.addCodecs); {
	case v == "" && o.whatsappCodec == "g711":
		return []string{"PCMA", "PCMU"}
	case v == "", strings.EqualFold(v, "none"):
		return nil
	default:
		var out []string
		for _, c := range strings.Split(v, ",") {
			out = append(out, strings.ToUpper(strings.TrimSpace(c)))
		}
		return out
	}
}

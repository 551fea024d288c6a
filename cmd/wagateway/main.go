// Command wagateway bridges WhatsApp Business calls (Cloud API calling) to a
// SIP PBX.
//
//	wagateway -config gateway.yaml      run the gateway
//	wagateway check-config FILE         validate a config and list every problem
//	wagateway healthcheck [CONFIG | URL]  probe /healthz (the container HEALTHCHECK)
//	wagateway version                   print the version and commit (also --version)
//	wagateway permission status|request CONFIG PHONE_NUMBER_ID USER
//	                                    read or request a WhatsApp user's call permission
//	wagateway settings show|diff|apply CONFIG [-number PHONE_NUMBER_ID]
//	                                    the numbers' calling settings at Meta against the config
//
// Signals: SIGTERM drains (new calls rejected, active calls go on until they
// end or drain_timeout passes, then are ended on both sides; a second SIGTERM
// ends them at once); SIGINT stops at once (calls ended on both sides);
// SIGHUP reloads routes and trunks from the config file and reopens the
// call record file.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/gateway"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "healthcheck":
			return healthcheck(args[1:], stdout, stderr)
		case "permission":
			return permission(args[1:], stdout, stderr)
		case "settings":
			return settings(args[1:], stdout, stderr)
		case "version", "-version", "--version":
			return printVersion(stdout)
		case "help", "-h", "-help", "--help":
			usage(stdout)
			return 0
		}
	}
	fs := flag.NewFlagSet("wagateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	path := fs.String("config", "gateway.yaml", "config file")
	var prof profiles
	fs.StringVar(&prof.cpu, "cpuprofile", "", "write a CPU profile of the whole run to this `file` (go tool pprof)")
	fs.StringVar(&prof.allocs, "memprofile", "", "at exit, write the allocations since start to this `file`")
	fs.StringVar(&prof.mutex, "mutexprofile", "", "record contended mutexes; at exit, write them to this `file`")
	fs.StringVar(&prof.block, "blockprofile", "", "record blocking (channels, selects, locks); at exit, write it to this `file`")
	fs.StringVar(&prof.heap, "heapprofile", "", "at each SIGUSR1, write the heap in use to `file`.1, file.2, ...")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	stopProfiles, err := prof.start()
	if err != nil {
		fmt.Fprintln(stderr, "wagateway:", err)
		return 1
	}
	defer func() {
		if err := stopProfiles(); err != nil {
			fmt.Fprintln(stderr, "wagateway:", err)
		}
	}()
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wagateway: unknown command %q\n", fs.Arg(0))
		usage(stderr)
		return 2
	}
	return serve(*path, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `wagateway bridges WhatsApp Business calls to a SIP PBX.

Usage:
  wagateway [-config gateway.yaml] [-cpuprofile F] [-memprofile F] [-mutexprofile F] [-blockprofile F]
            [-heapprofile F]         run the gateway (the profiles: the whole run's, for
                                     go tool pprof; the heap in use at each SIGUSR1)
  wagateway check-config FILE        validate a config file (fields, secrets, files it names)
                                     and list every problem
  wagateway healthcheck [CONFIG | URL]
                                     GET /healthz on the metrics listener CONFIG names
                                     (metrics.listen, https when it has a certificate), or
                                     URL (http:// or https://; default
                                     http://127.0.0.1:9090/healthz); exit 0 on 200 (the
                                     container HEALTHCHECK: the image has no curl)
  wagateway version                  the version, commit and Go release (also --version)
  wagateway permission status CONFIG PHONE_NUMBER_ID USER
                                     a WhatsApp user's call permission as Meta has it
                                     (status, expiry, can call, can request, the limits)
  wagateway permission request CONFIG PHONE_NUMBER_ID USER [-message TEXT] [-template NAME [-language CODE]]
                                     send a call permission request (default: what the
                                     number's first outbound route has); USER is an E.164
                                     number or a BSUID; the access token comes from the
                                     config's secret reference; exit 1 on Meta's refusal
                                     (its code printed), 2 on bad usage or config
  wagateway settings show|diff|apply CONFIG [-number PHONE_NUMBER_ID]
                                     the numbers' calling settings (numbers[].calling): show
                                     prints Meta's (SIP password masked; show -sip-credentials
                                     prints it), diff compares them with the file, apply sends
                                     the numbers that differ and reads them back; exit 0 ok,
                                     1 drift, 2 usage or config (nothing sent), 3 Meta or network

Signals: SIGTERM drains (new calls rejected, active calls continue up to drain_timeout),
SIGINT stops at once, SIGHUP reloads routes and trunks.

The demo (one simulated call through the gateway, no Meta account or PBX) is
"wasim demo": the simulator is test tooling and is not linked into this binary.
`)
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: wagateway check-config FILE")
		return 2
	}
	cfg, err := gateway.LoadConfig(args[0])
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	_, serr := cfg.ResolveSecrets()
	ferr := cfg.CheckFiles()
	cerr := cfg.CheckCalling(time.Now())
	if serr != nil || ferr != nil || cerr != nil {
		var all []string
		for _, err := range []error{serr, ferr, cerr} {
			var ce *gateway.ConfigError
			if errors.As(err, &ce) {
				all = append(all, ce.Problems...)
			} else if err != nil {
				all = append(all, err.Error())
			}
		}
		printConfigError(stderr, &gateway.ConfigError{Problems: all})
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok (%d trunks, %d numbers)\n", args[0], len(cfg.Trunks), len(cfg.Numbers))
	fmt.Fprintf(stdout, "  drain_timeout %v; trunk OPTIONS every %v (down after %d unanswered)\n",
		cfg.DrainTimeout, cfg.Health.OptionsInterval, cfg.Health.DownAfter)
	if cfg.CallRecords.File != "" || cfg.CallRecords.URL != "" {
		fmt.Fprintf(stdout, "  call records: file %q, url set: %v\n", cfg.CallRecords.File, cfg.CallRecords.URL != "")
	}
	if n := len(cfg.Outbound.Routes); n > 0 {
		fmt.Fprintf(stdout, "  outbound (agents dial WhatsApp users): %d route(s)", n)
		if cfg.Outbound.ForwardWebhooksURL != "" {
			fmt.Fprint(stdout, "; webhooks it does not consume forwarded")
		}
		fmt.Fprintln(stdout)
	}
	if managed, _ := cfg.SettingsNumbers("", true); len(managed) > 0 {
		fmt.Fprintf(stdout, "  calling settings managed for %d number(s) (wagateway settings diff|apply)\n", len(managed))
	}
	if cfg.Admin.Listen != "" {
		fmt.Fprintf(stdout, "  admin API on %s (token required)\n", cfg.Admin.Listen)
	}
	tlsNote := ""
	if cfg.MetricsTLS() {
		tlsNote = " (TLS)"
	}
	fmt.Fprintf(stdout, "  /metrics, /healthz, /readyz on %s%s; the webhook listener %s serves %s", cfg.Metrics.Listen, tlsNote, cfg.HTTP.Listen, cfg.HTTP.WebhookPath)
	if cfg.HTTP.HealthPath != "" {
		fmt.Fprintf(stdout, " and %s (200/503, no detail)", cfg.HTTP.HealthPath)
	}
	fmt.Fprintln(stdout)
	return 0
}

func printConfigError(w io.Writer, err error) {
	var ce *gateway.ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintf(w, "config has %d problem(s):\n", len(ce.Problems))
		for _, p := range ce.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		for _, warning := range ce.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warning)
		}
		return
	}
	fmt.Fprintln(w, err)
}

// defaultGCPercent is the collector's target unless GOGC is set: the
// gateway allocates when calls start and end, not per packet, so collecting
// often costs next to no CPU and keeps a call's memory nearer what it holds
// (100 passthrough calls: 224 KiB of RSS a call at GOGC=100, 191 at 50;
// with smaller playout slots 181 at 50, 167 at 25; CPU within the noise:
// docs/performance.md).
const defaultGCPercent = 25

func serve(path string, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return serveSignals(path, stderr, sigs, nil)
}

// closeTimeout bounds the final Close: BYE and Graph terminate of calls
// still up, the last call record POSTs.
const closeTimeout = 30 * time.Second

// serveSignals runs the gateway until SIGTERM (drain) or SIGINT (stop at
// once); SIGHUP reloads. started, if set, gets the running gateway (tests).
func serveSignals(path string, stderr io.Writer, sigs <-chan os.Signal, started func(*gateway.Gateway)) int {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	secrets, err := cfg.ResolveSecrets()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	log, err := gateway.NewLogger(cfg.Log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer log.Sync()
	gw, err := gateway.New(cfg, secrets, log)
	if err != nil {
		log.Error("gateway", zap.Error(err))
		return 1
	}
	ver, rev, goVersion := buildInfo()
	gw.RegisterBuildInfo(ver, rev, goVersion)
	log.Info("wagateway starting", zap.String("version", ver), zap.String("commit", rev), zap.String("go_version", goVersion))
	if err := gw.Start(context.Background()); err != nil {
		log.Error("gateway start", zap.Error(err))
		return 1
	}
	if started != nil {
		started(gw)
	}
	reload := func() {
		if err := gw.ReloadFile(path); err != nil {
			log.Error("SIGHUP: reload refused; routes and trunks unchanged", zap.Error(err))
		}
	}
	for {
		sig := <-sigs
		switch sig {
		case syscall.SIGHUP:
			log.Info("SIGHUP: reloading routes and trunks", zap.String("config", path))
			reload()
			continue
		case syscall.SIGTERM:
			drain(gw, log, sigs, reload)
		default: // SIGINT
			log.Info("stopping: ending active calls", zap.Int("active", gw.ActiveCalls()))
		}
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		err := gw.Close(cctx)
		cancel()
		if err != nil {
			log.Error("stop", zap.Error(err))
			return 1
		}
		log.Info("stopped")
		return 0
	}
}

// drain runs Gateway.Drain; another SIGTERM or a SIGINT cuts it short
// (the calls left are then ended on both sides), SIGHUP still reloads.
func drain(gw *gateway.Gateway, log *zap.Logger, sigs <-chan os.Signal, reload func()) {
	log.Info("SIGTERM: draining", zap.Int("active", gw.ActiveCalls()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- gw.Drain(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				log.Warn("drain", zap.Error(err))
			}
			return
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload()
				continue
			}
			log.Warn("second signal while draining: ending the remaining calls now", zap.Stringer("signal", sig))
			cancel()
		}
	}
}

// defaultHealthURL is /healthz on the default metrics listener.
const defaultHealthURL = "http://" + gateway.DefaultMetricsListen + "/healthz"

// healthcheck probes the gateway's /healthz (or any URL) for the container
// HEALTHCHECK, so the image needs no curl. Given a config file (positional,
// or after -config), it finds /healthz on the metrics listener that config
// names; when that listener has TLS, its certificate is not verified (the
// certificate names the host, not the address probed, and the probe sends
// nothing but GET /healthz). An argument starting with http:// or https://
// is the URL itself.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	url := defaultHealthURL
	client := &http.Client{Timeout: 3 * time.Second}
	cfgPath := ""
	switch {
	case len(args) == 2 && (args[0] == "-config" || args[0] == "--config"):
		cfgPath = args[1]
	case len(args) == 1 && (strings.HasPrefix(args[0], "http://") || strings.HasPrefix(args[0], "https://")):
		url = args[0]
	case len(args) == 1 && !strings.HasPrefix(args[0], "-"):
		cfgPath = args[0]
	case len(args) != 0:
		fmt.Fprintln(stderr, "usage: wagateway healthcheck [CONFIG | URL]")
		return 2
	}
	if cfgPath != "" {
		cfg, err := gateway.LoadConfig(cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: %v\n", err)
			return 1
		}
		url = "http://" + dialable(cfg.Metrics.Listen) + "/healthz"
		if cfg.MetricsTLS() {
			url = "https://" + dialable(cfg.Metrics.Listen) + "/healthz"
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // liveness probe, see above
		}
	}
	res, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s answered %d\n", url, res.StatusCode)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// dialable turns a listen address into one to connect to: every interface
// (an empty host, 0.0.0.0, ::) is reached on 127.0.0.1.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

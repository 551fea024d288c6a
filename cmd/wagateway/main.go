// Command wagateway bridges WhatsApp Business calls (Cloud API calling) to a
// SIP PBX.
//
//	wagateway -config gateway.yaml      run the gateway
//	wagateway demo                      one call through the real SIP/RTP path on loopback
//	wagateway check-config FILE         validate a config and list every problem
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
		case "demo":
			return runDemo(args[1:], stdout, stderr)
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			usage(stdout)
			return 0
		}
	}
	fs := flag.NewFlagSet("wagateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	path := fs.String("config", "gateway.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
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
  wagateway [-config gateway.yaml]   run the gateway
  wagateway demo [-v] [-seconds N]   place one simulated WhatsApp call through the gateway
                                     to a built-in SIP echo endpoint on loopback and check
                                     the audio that comes back (no Meta account or PBX needed)
  wagateway check-config FILE        validate a config file and list every problem
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
	if _, err := cfg.ResolveSecrets(); err != nil {
		printConfigError(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d trunks, %d numbers)\n", args[0], len(cfg.Trunks), len(cfg.Numbers))
	return 0
}

func printConfigError(w io.Writer, err error) {
	var ce *gateway.ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintf(w, "config has %d problem(s):\n", len(ce.Problems))
		for _, p := range ce.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func serve(path string, stderr io.Writer) int {
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := gw.Start(ctx); err != nil {
		log.Error("gateway start", zap.Error(err))
		return 1
	}
	<-ctx.Done()
	log.Info("stopping: ending active calls", zap.Int("active", gw.ActiveCalls()))
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Close(cctx); err != nil {
		log.Error("stop", zap.Error(err))
		return 1
	}
	return 0
}

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

	"github.com/wagateway/wagateway/sip"
)

const echoUsage = `Usage:
  wasim echo [flags]

Runs the built-in SIP echo endpoint (the one "wagateway demo" uses) as a
process of its own: it answers every INVITE (180, then 200 with the first
codec it supports of the offer: PCMU, PCMA, G722, opus) and sends every RTP
packet back to where it came from. A load run uses it as the PBX, in a
process apart so that its CPU is measured apart.

It prints "wasim echo: listening on HOST:PORT" once ready, and runs until
SIGINT or SIGTERM.

Flags:
`

func runEcho(args []string, stdout, stderr io.Writer, interrupt <-chan os.Signal) int {
	fs := flag.NewFlagSet("wasim echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, echoUsage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:5070", "SIP `address` to listen on (UDP)")
	rtpMin := fs.Int("rtp-min", 30000, "lowest RTP `port` (even ports from the range)")
	rtpMax := fs.Int("rtp-max", 39999, "highest RTP `port`")
	answerDelay := fs.Duration("answer-delay", 0, "ringing time between 180 and 200")
	verbose := fs.Bool("v", false, "debug logs on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wasim echo: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	log := newLogger(stderr, *verbose)
	defer func() { _ = log.Sync() }()
	echo, err := sip.NewEchoServer(sip.EchoConfig{
		ListenAddr: *listen, RTPPortMin: *rtpMin, RTPPortMax: *rtpMax, AnswerDelay: *answerDelay, Logger: log.Named("echo"),
	})
	if err != nil {
		fmt.Fprintf(stderr, "wasim echo: %v\n", err)
		return exitUsage
	}
	if err := echo.Start(context.Background()); err != nil {
		fmt.Fprintf(stderr, "wasim echo: %v\n", err)
		return exitRuntime
	}
	defer echo.Close()
	fmt.Fprintf(stdout, "wasim echo: listening on %s\n", echo.Addr())
	if interrupt == nil {
		sig := make(chan os.Signal, 2)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		interrupt = sig
	}
	<-interrupt
	done := make(chan struct{})
	go func() { echo.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		fmt.Fprintln(stderr, "wasim echo: calls still ending after 5 s; leaving")
	}
	return exitOK
}

// Command demo runs Tributary's whole job on this machine, with nothing set
// up beforehand: a throwaway Postgres (started here, removed at the end),
// then the three binaries as separate processes from one example config
// (examples/curbside.yaml): source-pg hosting the embedded NATS server on a
// loopback port, `query-engine run` and `reactor` connected to it. It
// writes a scripted story of row changes and streams the reactor's log
// reaction (the result diffs) to the terminal as they happen, and prints
// the URL of the live page (the sse reaction).
//
// By default it then checks what it showed and exits: every query's
// results, folded from the log lines and from the results stream, equal
// the same query in SQL on the final tables; every result seq came once and
// in order; the live page's event stream starts with the final snapshot;
// each binary exits 0 on SIGTERM. With -keep it stays up until Ctrl-C.
// Either way it checks that no process and no directory of its own is left.
//
// scripts/demo.sh installs what is missing, builds the binaries and runs it;
// see README.md and docs/operations.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory holding source-pg, query-engine and reactor (scripts/build.sh)")
	flag.StringVar(&o.config, "config", "examples/curbside.yaml", "the example config the binaries run")
	flag.BoolVar(&o.keep, "keep", false, "after the story, stay up (live page and all) until Ctrl-C")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: scripts/demo.sh [--keep]\n\nRuns Tributary's whole job on this machine and checks it (see README.md).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "demo: interrupted")
		} else {
			fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		}
		os.Exit(1)
	}
	say("everything stopped; no process or directory left")
}

func say(format string, args ...any) { fmt.Printf("demo      | "+format+"\n", args...) }

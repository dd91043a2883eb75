// Command reactor runs the reactions of a Tributary config: it consumes
// query results from JetStream and delivers them, acknowledging each result
// only after its effect succeeded. Its dlq subcommands list, show, re-drive
// and purge a reaction's dead letters.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/reaction"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/lifecycle"
)

// cli is the command line. The service is the default command, so
// `reactor --config FILE` runs it as before.
type cli struct {
	Run runCmd `cmd:"" default:"withargs" help:"Run the config's reactions (the default command)."`
	DLQ dlqCmd `cmd:"" name:"dlq" help:"List, show, re-drive or purge a reaction's dead letters."`
}

// runCmd is the service.
type runCmd struct {
	app.Globals
}

// errExit carries an exit code out of kong's Run.
type errExit int

func (e errExit) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func (c *runCmd) Run() error {
	app.ApplyGCDefault()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b := app.Binary{Kind: "reactor", Build: build}
	if code := b.Run(ctx, c.Globals); code != app.ExitOK {
		return errExit(code)
	}
	return nil
}

func main() {
	var c cli
	ctx := kong.Parse(&c, kong.Name("reactor"), kong.Description("Deliver continuous query results to their reactions."),
		kong.UsageOnError(), kong.Vars{"metricsAddr": "127.0.0.1:9466"})
	if err := ctx.Run(); err != nil {
		var code errExit
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		fmt.Fprintln(os.Stderr, "reactor:", err)
		if errors.Is(err, errConfig) {
			os.Exit(app.ExitConfig)
		}
		os.Exit(app.ExitFailed)
	}
}

// target is a reaction's effect side, built from its config.
type target struct {
	react reaction.Reaction
	close func() // nil: nothing to close
	sse   *reaction.SSE
}

// newTarget builds reaction r's target. The caller calls close, if set,
// after the reaction's last React.
func newTarget(r config.Reaction, conn *bus.Conn, log *slog.Logger, reg prometheus.Registerer, stdout io.Writer) (target, error) {
	log = log.With("component", "reaction", "id", r.ID)
	switch spec := r.Spec.(type) {
	case *config.LogReaction:
		l, err := reaction.NewLogFromConfig(r.ID, spec, stdout)
		if err != nil {
			return target{}, err
		}
		return target{react: l, close: func() {
			if err := l.Close(); err != nil {
				log.Error("closing the log reaction's file failed", "err", err)
			}
		}}, nil
	case *config.HTTPReaction:
		h, err := reaction.NewHTTP(r.ID, spec, reaction.HTTPOptions{Logger: log, Registerer: reg})
		if err != nil {
			return target{}, err
		}
		return target{react: h, close: h.Close}, nil
	case *config.PostgresReaction:
		p, err := reaction.NewPostgres(r.ID, spec, reaction.PostgresOptions{Logger: log, Registerer: reg})
		if err != nil {
			return target{}, err
		}
		return target{react: p, close: p.Close}, nil
	case *config.NATSReaction:
		n, err := reaction.NewNATS(r.ID, spec, conn, reaction.NATSOptions{Logger: log})
		if err != nil {
			return target{}, err
		}
		return target{react: n}, nil
	case *config.SSEReaction:
		s, err := reaction.NewSSE(r.ID, spec, r.Queries, reaction.SSEOptions{Logger: log, Registerer: reg})
		if err != nil {
			return target{}, err
		}
		return target{react: s, sse: s}, nil
	}
	return target{}, fmt.Errorf("reaction %s: kind %q is not known to this reactor", r.ID, r.Kind)
}

func build(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
	var comps []*lifecycle.Component
	for _, r := range rt.Config.Reactions {
		t, err := newTarget(r, rt.Bus, rt.Log, rt.Registry, os.Stdout)
		if err != nil {
			return nil, err
		}
		comp, err := rt.NewComponent("reaction", r.ID)
		if err != nil {
			return nil, err
		}
		// The target's step comes before the consumer's: its undo runs
		// after the consumer drained.
		switch {
		case t.sse != nil:
			comp.AddStep("reaction target", sseStep(rt, t.sse))
		case t.close != nil:
			comp.AddStep("reaction target", closeStep(t.close))
		}
		guarded, err := reaction.GuardGaps(r.ID, t.react, reaction.GapOptions{
			Policy: r.OnGap, Degrade: comp.Degrade, Registerer: rt.Registry,
			DeadLettered: reaction.DeadLetteredIn(rt.Bus, rt.Topology, r.ID),
			Logger:       rt.Log.With("component", "reaction", "id", r.ID)})
		if err != nil {
			return nil, err
		}
		opts := reaction.ConsumerOptions(rt.Topology, r.ID, r.Queries, retryConfig(r.Spec))
		opts.Logger = rt.Log.With("component", "reaction", "id", r.ID)
		opts.Registerer = rt.Registry
		comp.AddStep("results consumer", reaction.ConsumeStep(rt.Bus, comp, opts, guarded))
		comps = append(comps, comp)
	}
	return comps, nil
}

// closeStep undoes to close: steps are undone in reverse, so close runs
// after the consumer step's drain.
func closeStep(close func()) func(context.Context) (lifecycle.Undo, error) {
	return func(context.Context) (lifecycle.Undo, error) {
		return func(context.Context) error { close(); return nil }, nil
	}
}

// sseStep rebuilds the sse reaction's result sets from the results history,
// then serves them; undo stops the server.
func sseStep(rt *app.Runtime, s *reaction.SSE) func(context.Context) (lifecycle.Undo, error) {
	return func(ctx context.Context) (lifecycle.Undo, error) {
		subject := func(q string) string { return rt.Topology.ResultSubject(bus.Token(q)) }
		if err := s.Bootstrap(ctx, rt.Bus, rt.Topology.Results.Name, subject); err != nil {
			return nil, err
		}
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
		return s.Stop, nil
	}
}

// retryConfig is the retry config of the reaction kinds that have one; the
// zero value (the topology's defaults) for the others.
func retryConfig(spec config.ReactionSpec) config.RetryConfig {
	switch s := spec.(type) {
	case *config.HTTPReaction:
		return s.Retry
	case *config.PostgresReaction:
		return s.Retry
	}
	return config.RetryConfig{}
}

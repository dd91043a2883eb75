package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/tributary/tributary/internal/app"
	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/queryservice"
	"github.com/tributary/tributary/internal/scenario"
	"github.com/tributary/tributary/pkg/lifecycle"
)

// cli is the command line.
type cli struct {
	Run   runCmd   `cmd:"" help:"Run the config's continuous queries on the bus: consume their changes, publish their results."`
	Test  testCmd  `cmd:"" help:"Evaluate scenario files offline; exit 1 when a step's diff differs."`
	Check checkCmd `cmd:"" help:"Validate a config file and compile every query in it; exit 2 when anything is wrong."`
}

// runCmd is the service. Several processes may run one config: each query
// runs in exactly one of them (its lease), the others stand by for it.
type runCmd struct {
	app.Globals
}

// errExit carries the service's exit code out of kong's Run.
type errExit int

func (e errExit) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func (c *runCmd) Run() error {
	app.ApplyGCDefault()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b := app.Binary{Kind: "query-engine", Build: build, Isolated: true, Validate: validate}
	if code := b.Run(ctx, c.Globals); code != app.ExitOK {
		return errExit(code)
	}
	return nil
}

// validate is what run adds to the file's validation: every source a
// query names is declared. With --check every query must also compile;
// without, a query that does not compile goes to Error when the service
// starts, and the others run.
func validate(cfg *config.Config, check bool) error {
	problems, warnings := queryservice.Check(cfg)
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "query-engine: warning:", w)
	}
	if check {
		return problems
	}
	return queryservice.CheckSources(cfg)
}

// build creates one lifecycle component per query (kind "query", id the
// query's id). A query whose text does not compile (after a config change
// that skipped check) gets a component whose start fails with the message:
// it goes to Error and the others run.
func build(ctx context.Context, rt *app.Runtime) ([]*lifecycle.Component, error) {
	if len(rt.Config.Queries) == 0 {
		return nil, fmt.Errorf("the config has no queries")
	}
	var comps []*lifecycle.Component
	for _, cq := range rt.Config.Queries {
		comp, err := rt.NewComponent("query", cq.ID)
		if err != nil {
			return nil, err
		}
		q, err := queryservice.New(queryservice.Config{
			Spec:        queryservice.Spec(cq),
			Sources:     queryservice.SourceIDs(cq),
			Bus:         rt.Bus,
			Topology:    rt.Topology,
			Component:   comp,
			Logger:      rt.Log,
			Registerer:  rt.Registry,
			StopTimeout: rt.StopTimeout / 2, // the rest is for the lease, state and connection
		})
		if err != nil {
			failed := err
			comp.AddStep("compile", func(context.Context) (lifecycle.Undo, error) { return nil, failed })
		} else {
			comp.AddStep("query", q.Step)
		}
		comps = append(comps, comp)
	}
	return comps, nil
}

type checkCmd struct {
	Config string `help:"Config file (YAML)." type:"path" short:"c" required:""`
}

// errInvalid makes the process exit 2 after the problems were printed.
var errInvalid = errors.New("invalid config")

// Run validates the file, then compiles every query with its joins and
// parameters, reporting every problem (with line and column for query
// text) before exiting.
func (c *checkCmd) Run() error {
	cfg, err := config.Load(c.Config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "query-engine: invalid config:\n%v\n", err)
		return errInvalid
	}
	problems, warnings := queryservice.Check(cfg)
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "query-engine: warning:", w)
	}
	if problems != nil {
		fmt.Fprintf(os.Stderr, "query-engine: %v\n", problems)
		return errInvalid
	}
	fmt.Printf("query-engine: config %s is valid; %d queries compile\n", c.Config, len(cfg.Queries))
	return nil
}

type testCmd struct {
	Files []string `arg:"" name:"file" help:"Scenario YAML files."`
}

// errFailed makes the process exit 1 after the report was printed.
var errFailed = errors.New("scenario failures")

func (c *testCmd) Run() error {
	if !scenario.RunFiles(os.Stdout, c.Files) {
		return errFailed
	}
	return nil
}

func main() {
	var c cli
	ctx := kong.Parse(&c, kong.Name("query-engine"), kong.Description("Tributary continuous query engine."), kong.UsageOnError(),
		kong.Vars{"metricsAddr": "127.0.0.1:9465"})
	if err := ctx.Run(); err != nil {
		var code errExit
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		if errors.Is(err, errInvalid) {
			os.Exit(2)
		}
		if !errors.Is(err, errFailed) {
			fmt.Fprintln(os.Stderr, "query-engine:", err)
		}
		os.Exit(1)
	}
}

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/internal/scenario"
)

// cli is the command line. The service subcommand (run) is added beside
// test.
type cli struct {
	Test  testCmd  `cmd:"" help:"Evaluate scenario files offline; exit 1 when a step's diff differs."`
	Check checkCmd `cmd:"" help:"Validate a config file and compile every query in it; exit 2 when anything is wrong."`
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
	bad := 0
	for _, q := range cfg.Queries {
		if _, err := engine.New(querySpec(q)); err != nil {
			fmt.Fprintf(os.Stderr, "query-engine: %v\n", err)
			bad++
		}
	}
	if bad > 0 {
		return errInvalid
	}
	fmt.Printf("query-engine: config %s is valid; %d queries compile\n", c.Config, len(cfg.Queries))
	return nil
}

// querySpec converts a configured query into the engine's spec.
func querySpec(q config.Query) engine.QuerySpec {
	spec := engine.QuerySpec{ID: q.ID, Query: q.Query, Parameters: q.Parameters}
	for _, j := range q.Joins {
		join := engine.Join{ID: j.ID}
		for _, k := range j.Keys {
			join.Keys = append(join.Keys, engine.JoinKey{Label: k.Label, Property: k.Property})
		}
		spec.Joins = append(spec.Joins, join)
	}
	return spec
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
	ctx := kong.Parse(&c, kong.Name("query-engine"), kong.Description("Tributary continuous query engine."), kong.UsageOnError())
	if err := ctx.Run(); err != nil {
		if errors.Is(err, errInvalid) {
			os.Exit(2)
		}
		if !errors.Is(err, errFailed) {
			fmt.Fprintln(os.Stderr, "query-engine:", err)
		}
		os.Exit(1)
	}
}

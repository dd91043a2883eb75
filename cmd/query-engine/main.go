package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tributary/tributary/internal/scenario"
)

// cli is the command line. The service subcommand (run) is added beside
// test.
type cli struct {
	Test testCmd `cmd:"" help:"Evaluate scenario files offline; exit 1 when a step's diff differs."`
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
		if !errors.Is(err, errFailed) {
			fmt.Fprintln(os.Stderr, "query-engine:", err)
		}
		os.Exit(1)
	}
}

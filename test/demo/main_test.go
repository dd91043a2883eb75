package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// repoRoot is the module's root directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// built holds the three binaries built once from this tree for every test
// here (without -race: they run as separate processes).
var built struct {
	once sync.Once
	dir  string
	err  error
}

func binaries(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "tributary-demo-bin-"); built.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", built.dir+string(os.PathSeparator), "./cmd/source-pg", "./cmd/query-engine", "./cmd/reactor")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New("building the binaries: " + err.Error() + "\n" + string(out))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

// TestDemo runs the README's demo, so that it cannot rot: the binaries
// built from this tree, a throwaway Postgres, the example config, and
// every check the demo makes (results equal SQL, seqs once and in order,
// the live page's snapshot, clean stops, nothing left behind).
func TestDemo(t *testing.T) {
	bin := binaries(t)
	err := run(context.Background(), options{bin: bin, config: filepath.Join(repoRoot(), "examples", "curbside.yaml")})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExamplesCheck runs every binary's check on every config in
// examples/, so that none of them rots: each must be valid to source-pg,
// query-engine (every query compiles) and reactor.
func TestExamplesCheck(t *testing.T) {
	bin := binaries(t)
	files, err := filepath.Glob(filepath.Join(repoRoot(), "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("examples/ holds %d configs, want curbside, cluster and production at least: %v", len(files), files)
	}
	for _, f := range files {
		for _, args := range [][]string{
			{"source-pg", "--config", f, "--check"},
			{"query-engine", "check", "--config", f},
			{"reactor", "--config", f, "--check"},
		} {
			cmd := exec.Command(filepath.Join(bin, args[0]), args[1:]...)
			// The examples' ${VAR}s all have defaults: check them as a
			// reader would run them, without the demo's environment.
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", args[0], filepath.Base(f), err, out)
			}
		}
	}
}

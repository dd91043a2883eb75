package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestDemo runs the README's demo, so that it cannot rot: the binary built
// from this tree, a throwaway Postgres, and every check the demo makes.
func TestDemo(t *testing.T) {
	bin := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./cmd/source-pg")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building source-pg: %v\n%s", err, out)
	}
	if err := run(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
}

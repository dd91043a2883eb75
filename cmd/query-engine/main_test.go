package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the tests run the real command: the test binary re-executes
// itself with QUERY_ENGINE_MAIN=1 and the command line under test.
func TestMain(m *testing.M) {
	if os.Getenv("QUERY_ENGINE_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "QUERY_ENGINE_MAIN=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("run %v: %v", args, err)
	return "", -1
}

func TestTestCommand(t *testing.T) {
	out, code := runCLI(t, "test", "../../test/scenarios/filter.yaml", "../../test/scenarios/joins.yaml")
	if code != 0 || !strings.Contains(out, "ok   ../../test/scenarios/filter.yaml") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	out, code = runCLI(t, "test", "../../test/scenarios/filter.yaml", "../../internal/scenario/testdata/wrong.yaml")
	if code != 1 || !strings.Contains(out, "FAIL ../../internal/scenario/testdata/wrong.yaml") || !strings.Contains(out, "expected:") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	out, code = runCLI(t, "test", "no-such-file.yaml")
	if code != 1 || !strings.Contains(out, "no-such-file.yaml") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	if _, code = runCLI(t, "frobnicate"); code == 0 {
		t.Fatal("unknown subcommand exited 0")
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.yaml"
	if err := os.WriteFile(good, []byte(`sources:
  - {kind: external, id: shop}
queries:
  - id: ready
    sources: [{sourceId: shop}]
    joins:
      - id: ASSIGNED_TO
        keys: [{label: orders, property: driver_id}, {label: drivers, property: id}]
    query: MATCH (o:orders)-[:ASSIGNED_TO]->(d:drivers) WHERE o.status = $s RETURN o.id AS id
    parameters: {s: ready}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runCLI(t, "check", "--config", good); code != 0 || !strings.Contains(out, "1 queries compile") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	bad := dir + "/bad.yaml"
	if err := os.WriteFile(bad, []byte(`queries:
  - id: broken
    sources: [{sourceId: shop}]
    query: |
      MATCH (o:orders)
      WHERE o.total >
      RETURN o.id
  - id: unknown-fn
    sources: [{sourceId: shop}]
    query: MATCH (o:orders) RETURN frobnicate(o.id) AS x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, "check", "--config", bad)
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{`query "broken": line 3, column 1`, `query "unknown-fn": line 1, column 25`, "frobnicate",
		`query "broken" reads source "shop", which sources does not declare`} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
}

// A mistyped sourceId is caught both when the file declares sources (the
// config's own validation) and when it declares none (query-engine's).
func TestCheckCatchesMistypedSourceID(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{
		"declared": "sources:\n  - {kind: external, id: sensors}\nqueries:\n  - {id: q, sources: [{sourceId: sensor}], query: 'MATCH (r:rooms) RETURN r.name AS n'}\n",
		"none":     "queries:\n  - {id: q, sources: [{sourceId: sensor}], query: 'MATCH (r:rooms) RETURN r.name AS n'}\n",
	} {
		p := dir + "/" + name + ".yaml"
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"check", "--config", p}, {"run", "--check", "--config", p}} {
			out, code := runCLI(t, args...)
			if code != 2 || !strings.Contains(out, `"sensor"`) {
				t.Errorf("%s %v: exit %d, want 2 naming the id:\n%s", name, args, code, out)
			}
		}
	}
}

package scenario

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLibrary runs every scenario of the project's library.
func TestLibrary(t *testing.T) {
	files, err := filepath.Glob("../../test/scenarios/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d scenario files, want the whole library", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := s.Run()
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				var b bytes.Buffer
				rep.Format(&b)
				t.Fatal(b.String())
			}
		})
	}
}

// TestWrongScenarioFails proves the runner can fail: the deliberately wrong
// scenario reports exactly its wrong steps with both diffs.
func TestWrongScenarioFails(t *testing.T) {
	s, err := Load("testdata/wrong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Run()
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Failures) != 2 || rep.Failures[0].Step != 1 || rep.Failures[1].Step != 3 {
		t.Fatalf("failures = %+v, want steps 1 and 3", rep.Failures)
	}
	var b bytes.Buffer
	rep.Format(&b)
	out := b.String()
	for _, want := range []string{"FAIL testdata/wrong.yaml", "step 1 (line 6)", `{"added":{"name":"b"}}`, `{"added":{"name":"a"}}`, "step 3", `{"deleted":{"name":"c"}}`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var all bytes.Buffer
	if RunFiles(&all, []string{"testdata/wrong.yaml"}) {
		t.Fatal("RunFiles reported success for a wrong scenario")
	}
}

func TestBadFiles(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "query: MATCH (n) RETURN n\nquerry: x\nsteps: []\n", "field querry not found"},
		{"no query", "steps:\n  - change: {}\n", "query: missing"},
		{"no steps", "query: MATCH (n) RETURN n\n", "steps: missing"},
		{"bad envelope", "query: MATCH (n) RETURN n\nsteps:\n  - change: {op: upsert, source: s, element: {type: node, id: x}}\n    expect: []\n", `x.yaml:3: steps[1]: change 1: invalid change envelope: op: "upsert" is not one of`},
		{"bad expect", "query: MATCH (n) RETURN n\nsteps:\n  - change: {op: insert, source: s, element: {type: node, id: x}}\n    expect: [{inserted: {}}]\n", `unknown key "inserted"`},
		{"both change and batch", "query: MATCH (n) RETURN n\nsteps:\n  - change: {op: insert, source: s, element: {type: node, id: x}}\n    batch: [{op: insert}]\n", "either change or batch"},
		{"empty", "", "empty file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(c.yaml))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "x.yaml") {
				t.Fatalf("err = %v, want ErrInvalid naming x.yaml and containing %q", err, c.want)
			}
		})
	}
	s, err := Parse("q.yaml", []byte("query: MATCH (n RETURN n\nsteps:\n  - change: {op: insert, source: s, element: {type: node, id: x}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(); err == nil || !strings.Contains(err.Error(), "line 1, column") {
		t.Fatalf("query error = %v, want line and column", err)
	}
}

func TestEqual(t *testing.T) {
	if !Equal(map[string]any{"a": 105, "b": nil}, map[string]any{"a": 105.0}) {
		t.Error("105 must equal 105.0 and a missing key an explicit null")
	}
	if Equal([]any{1, 2}, []any{2, 1}) || Equal("1", 1) || Equal(map[string]any{"a": 1}, map[string]any{"a": 1, "b": 2}) {
		t.Error("unequal values compared equal")
	}
}

// FuzzParse: arbitrary YAML never panics the loader; an error always wraps
// ErrInvalid.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"../../test/scenarios/filter.yaml", "../../test/scenarios/optional-count.yaml", "testdata/wrong.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if s.Spec.Query == "" {
			t.Fatal("parsed a scenario without a query")
		}
	})
}

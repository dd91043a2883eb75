package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"sort"
	"strings"

	"github.com/tributary/tributary/internal/engine"
)

// Failure is one step whose actual diff differs from the expected one (or
// the initial result, Step 0).
type Failure struct {
	Step     int
	Line     int
	Expected []Diff
	Actual   []Diff
	// Err is the error the change returned (or did not return), if that is
	// the difference.
	Err string
}

// Report is the outcome of running one scenario.
type Report struct {
	File     string
	Name     string
	Steps    int
	Failures []Failure
}

// OK reports whether every step held.
func (r *Report) OK() bool { return len(r.Failures) == 0 }

// Run evaluates the scenario: it compiles the query, checks the initial
// result when given, applies each step and compares its diff with the
// expected one as a multiset (105 equals 105.0). A query that does not
// compile is an error wrapping ErrInvalid; differences are Failures.
func (s *Scenario) Run() (*Report, error) {
	q, err := engine.New(s.Spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: query: %w", ErrInvalid, s.File, err)
	}
	rep := &Report{File: s.File, Name: s.Name, Steps: len(s.Steps)}
	if s.Initial != nil {
		var exp, act []Diff
		for _, r := range s.Initial {
			exp = append(exp, Diff{Added: r})
		}
		for _, r := range q.Initial() {
			act = append(act, Diff{Added: r})
		}
		if !sameMultiset(exp, act) {
			rep.Failures = append(rep.Failures, Failure{Step: 0, Expected: exp, Actual: act})
		}
	}
	for i, st := range s.Steps {
		d, err := q.ApplyBatch(st.Changes)
		f := Failure{Step: i + 1, Line: st.Line, Expected: st.Expect}
		switch {
		case err != nil && st.Error == "":
			f.Err = "unexpected error: " + err.Error()
			rep.Failures = append(rep.Failures, f)
			continue
		case err != nil:
			if !strings.Contains(err.Error(), st.Error) {
				f.Err = fmt.Sprintf("error %q does not contain %q", err.Error(), st.Error)
				rep.Failures = append(rep.Failures, f)
			}
			continue
		case st.Error != "":
			f.Err = fmt.Sprintf("expected an error containing %q, got none", st.Error)
			f.Actual = flatten(d)
			rep.Failures = append(rep.Failures, f)
			continue
		}
		act := flatten(d)
		if !sameMultiset(st.Expect, act) {
			f.Actual = act
			rep.Failures = append(rep.Failures, f)
		}
	}
	return rep, nil
}

func flatten(d engine.Diff) []Diff {
	var out []Diff
	for _, r := range d.Added {
		out = append(out, Diff{Added: r})
	}
	for i := range d.Updated {
		u := d.Updated[i]
		out = append(out, Diff{Updated: &u})
	}
	for _, r := range d.Deleted {
		out = append(out, Diff{Deleted: r})
	}
	return out
}

// sameMultiset compares two diff lists ignoring order, counting repeats.
func sameMultiset(exp, act []Diff) bool {
	if len(exp) != len(act) {
		return false
	}
	used := make([]bool, len(act))
outer:
	for _, e := range exp {
		for j, a := range act {
			if !used[j] && diffEqual(e, a) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

func diffEqual(a, b Diff) bool {
	switch {
	case a.Added != nil:
		return b.Added != nil && Equal(map[string]any(a.Added), map[string]any(b.Added))
	case a.Deleted != nil:
		return b.Deleted != nil && Equal(map[string]any(a.Deleted), map[string]any(b.Deleted))
	case a.Updated != nil:
		return b.Updated != nil && Equal(map[string]any(a.Updated.Before), map[string]any(b.Updated.Before)) &&
			Equal(map[string]any(a.Updated.After), map[string]any(b.Updated.After))
	}
	return b.Added == nil && b.Deleted == nil && b.Updated == nil
}

// Equal compares two result values as scenarios do: numbers by numeric
// value across integer and float types (105 equals 105.0), lists in order,
// maps by keys; a missing map key equals an explicit null.
func Equal(a, b any) bool {
	if na, ok := number(a); ok {
		nb, ok := number(b)
		return ok && na.Cmp(nb) == 0
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return false
		}
		for k, xv := range x {
			if !Equal(xv, y[k]) {
				return false
			}
		}
		for k, yv := range y {
			if _, ok := x[k]; !ok && yv != nil {
				return false
			}
		}
		return true
	}
	return false
}

func number(v any) (*big.Float, bool) {
	switch x := v.(type) {
	case int:
		return new(big.Float).SetInt64(int64(x)), true
	case int64:
		return new(big.Float).SetInt64(x), true
	case uint64:
		return new(big.Float).SetUint64(x), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		return new(big.Float).SetFloat64(x), true
	case json.Number:
		f, _, err := big.ParseFloat(string(x), 10, 256, big.ToNearestEven)
		return f, err == nil
	}
	return nil, false
}

// Format renders a report for humans: one block per failing step with the
// expected and the actual diff.
func (r *Report) Format(w io.Writer) {
	if r.OK() {
		fmt.Fprintf(w, "ok   %s (%d steps)\n", r.File, r.Steps)
		return
	}
	fmt.Fprintf(w, "FAIL %s (%d of %d steps failed)\n", r.File, len(r.Failures), r.Steps)
	for _, f := range r.Failures {
		if f.Step == 0 {
			fmt.Fprintf(w, "  initial result:\n")
		} else {
			fmt.Fprintf(w, "  step %d (line %d):\n", f.Step, f.Line)
		}
		if f.Err != "" {
			fmt.Fprintf(w, "    %s\n", f.Err)
		}
		fmt.Fprintf(w, "    expected:\n%s", renderDiffs(f.Expected))
		fmt.Fprintf(w, "    actual:\n%s", renderDiffs(f.Actual))
	}
}

func renderDiffs(ds []Diff) string {
	if len(ds) == 0 {
		return "      (nothing)\n"
	}
	lines := make([]string, 0, len(ds))
	for _, d := range ds {
		b, err := json.Marshal(d)
		if err != nil {
			b = []byte(fmt.Sprintf("%v", d))
		}
		lines = append(lines, "      - "+string(b)+"\n")
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

// RunFiles loads and runs every file, writes a report per file to w and
// returns whether all passed. Files that cannot be loaded or run are
// reported and count as failures.
func RunFiles(w io.Writer, paths []string) bool {
	ok := true
	for _, p := range paths {
		s, err := Load(p)
		if err != nil {
			fmt.Fprintf(w, "ERROR %v\n", err)
			ok = false
			continue
		}
		rep, err := s.Run()
		if err != nil {
			fmt.Fprintf(w, "ERROR %v\n", err)
			ok = false
			continue
		}
		rep.Format(w)
		ok = ok && rep.OK()
	}
	return ok
}

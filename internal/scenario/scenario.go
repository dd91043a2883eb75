package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/tributary/tributary/internal/engine"
	"github.com/tributary/tributary/pkg/change"
)

// ErrInvalid is wrapped by every error about a scenario file that cannot be
// run (YAML, unknown keys, malformed steps, invalid envelopes, a query that
// does not compile). The message names the file and, where known, the line.
var ErrInvalid = errors.New("invalid scenario")

// Scenario is one loaded scenario file.
type Scenario struct {
	// File is the path (or name) the scenario was loaded from.
	File string
	// Name is the optional `name`, else the file name.
	Name string
	Spec engine.QuerySpec
	// Initial is the expected result before any change; nil when the file
	// has no `initial` key (then it is not checked).
	Initial []change.Row
	Steps   []Step
}

// Step is one change (a single envelope, or a `batch` of envelopes applied
// as one transaction) and the complete list of diffs it must produce.
type Step struct {
	// Line is the step's line in the file.
	Line    int
	Changes []*change.Envelope
	Expect  []Diff
	// Error, when set, is a substring of the error the change must fail
	// with (then Expect must be empty).
	Error string
}

// Diff is one expected or actual diff entry: exactly one of Added, Updated,
// Deleted is set.
type Diff struct {
	Added   change.Row        `yaml:"added,omitempty" json:"added,omitempty"`
	Updated *change.RowUpdate `yaml:"updated,omitempty" json:"updated,omitempty"`
	Deleted change.Row        `yaml:"deleted,omitempty" json:"deleted,omitempty"`
}

type fileYAML struct {
	Name        string         `yaml:"name"`
	Description string         `yaml:"description"`
	Query       string         `yaml:"query"`
	Joins       []engine.Join  `yaml:"joins"`
	Parameters  map[string]any `yaml:"parameters"`
	Initial     yaml.Node      `yaml:"initial"`
	Steps       []stepYAML     `yaml:"steps"`
}

type stepYAML struct {
	Change yaml.Node   `yaml:"change"`
	Batch  []yaml.Node `yaml:"batch"`
	Expect yaml.Node   `yaml:"expect"`
	Error  string      `yaml:"error"`
}

// Load reads and parses a scenario file.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	return Parse(path, data)
}

// Parse parses scenario YAML; file names the source in errors.
func Parse(file string, data []byte) (*Scenario, error) {
	bad := func(line int, format string, args ...any) error {
		where := file
		if line > 0 {
			where = fmt.Sprintf("%s:%d", file, line)
		}
		return fmt.Errorf("%w: %s: %s", ErrInvalid, where, fmt.Sprintf(format, args...))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f fileYAML
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, bad(0, "empty file")
		}
		return nil, bad(0, "%v", err)
	}
	if f.Query == "" {
		return nil, bad(0, "query: missing")
	}
	s := &Scenario{File: file, Name: f.Name, Spec: engine.QuerySpec{ID: f.Name, Query: f.Query, Joins: f.Joins, Parameters: f.Parameters}}
	if s.Name == "" {
		s.Name = file
	}
	if s.Spec.ID == "" {
		s.Spec.ID = "scenario"
	}
	if f.Initial.Kind != 0 {
		var rows []map[string]any
		if err := f.Initial.Decode(&rows); err != nil {
			return nil, bad(f.Initial.Line, "initial: want a list of rows: %v", err)
		}
		s.Initial = make([]change.Row, len(rows))
		for i, r := range rows {
			if r == nil {
				r = map[string]any{}
			}
			s.Initial[i] = r
		}
	}
	if len(f.Steps) == 0 {
		return nil, bad(0, "steps: missing or empty")
	}
	for i, st := range f.Steps {
		hasChange := st.Change.Kind != 0
		line := 0
		if hasChange {
			line = st.Change.Line
		} else if len(st.Batch) > 0 {
			line = st.Batch[0].Line
		}
		step := Step{Line: line, Error: st.Error}
		var nodes []*yaml.Node
		for j := range st.Batch {
			nodes = append(nodes, &st.Batch[j])
		}
		switch {
		case hasChange && len(st.Batch) > 0:
			return nil, bad(line, "steps[%d]: give either change or batch, not both", i+1)
		case hasChange:
			nodes = []*yaml.Node{&st.Change}
		case len(st.Batch) == 0:
			return nil, bad(line, "steps[%d]: change missing", i+1)
		}
		for j, n := range nodes {
			env, err := decodeEnvelope(n)
			if err != nil {
				return nil, bad(n.Line, "steps[%d]: change %d: %v", i+1, j+1, err)
			}
			step.Changes = append(step.Changes, env)
		}
		if st.Expect.Kind != 0 {
			exp, err := decodeExpect(&st.Expect)
			if err != nil {
				return nil, bad(st.Expect.Line, "steps[%d].expect: %v", i+1, err)
			}
			step.Expect = exp
		}
		if step.Error != "" && len(step.Expect) > 0 {
			return nil, bad(line, "steps[%d]: a step expecting an error cannot expect diffs", i+1)
		}
		s.Steps = append(s.Steps, step)
	}
	return s, nil
}

// decodeEnvelope turns a YAML mapping into an envelope through its JSON
// form, so that the strict decoder of package change validates it. Floats
// keep their float-ness (105.0 stays a float).
func decodeEnvelope(n *yaml.Node) (*change.Envelope, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, v); err != nil {
		return nil, err
	}
	return change.Decode(buf.Bytes())
}

func writeJSON(w *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		w.WriteString("null")
	case bool:
		w.WriteString(strconv.FormatBool(x))
	case int:
		w.WriteString(strconv.Itoa(x))
	case int64:
		w.WriteString(strconv.FormatInt(x, 10))
	case uint64:
		w.WriteString(strconv.FormatUint(x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%v cannot travel in JSON", x)
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if x == math.Trunc(x) && !bytes.ContainsAny([]byte(s), "e.") {
			s += ".0"
		}
		w.WriteString(s)
	case string:
		w.WriteString(strconv.Quote(x))
	case []any:
		w.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := writeJSON(w, e); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(strconv.Quote(k))
			w.WriteByte(':')
			if err := writeJSON(w, x[k]); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	default:
		return fmt.Errorf("unsupported YAML value of type %T", v)
	}
	return nil
}

func decodeExpect(n *yaml.Node) ([]Diff, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("want a list of {added|updated|deleted} entries")
	}
	var out []Diff
	for i, item := range n.Content {
		if item.Kind != yaml.MappingNode || len(item.Content) != 2 {
			return nil, fmt.Errorf("entry %d (line %d): want exactly one of added, updated, deleted", i+1, item.Line)
		}
		key, val := item.Content[0].Value, item.Content[1]
		var d Diff
		switch key {
		case "added", "deleted":
			var row map[string]any
			if err := val.Decode(&row); err != nil {
				return nil, fmt.Errorf("entry %d (line %d): %s: want a row mapping: %v", i+1, item.Line, key, err)
			}
			if row == nil {
				row = map[string]any{}
			}
			if key == "added" {
				d.Added = row
			} else {
				d.Deleted = row
			}
		case "updated":
			var u struct {
				Before map[string]any `yaml:"before"`
				After  map[string]any `yaml:"after"`
			}
			if err := val.Decode(&u); err != nil {
				return nil, fmt.Errorf("entry %d (line %d): updated: %v", i+1, item.Line, err)
			}
			if u.Before == nil || u.After == nil {
				return nil, fmt.Errorf("entry %d (line %d): updated needs before and after", i+1, item.Line)
			}
			d.Updated = &change.RowUpdate{Before: u.Before, After: u.After}
		default:
			return nil, fmt.Errorf("entry %d (line %d): unknown key %q (want added, updated or deleted)", i+1, item.Line, key)
		}
		out = append(out, d)
	}
	return out, nil
}

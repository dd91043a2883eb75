package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads a config from YAML text: it expands ${VAR} and
// ${VAR:-default} in values using lookupEnv (os.LookupEnv when nil),
// decodes strictly (unknown keys are errors), applies defaults and
// validates. Every problem found on the way is reported at once in a
// *ValidationError (errors.Is(err, ErrInvalid)), each with its path and,
// where known, its line and column. The returned Config is nil on error.
func Parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = lookupOS
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Problems: []Problem{yamlProblem(err)}}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &ValidationError{Problems: []Problem{{Line: extra.Line, Column: extra.Column,
			Message: "more than one YAML document; the config is a single document"}}}
	case !errors.Is(err, io.EOF):
		return nil, &ValidationError{Problems: []Problem{yamlProblem(err)}}
	}

	ps := &problems{}
	cfg := &Config{}
	d := &decoder{ps: ps, pos: map[string]position{}}
	unset := map[string][]string{}
	used := map[string]map[string]string{}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		(&expander{lookup: lookupEnv, ps: ps, unset: unset, used: used, seen: map[*yaml.Node]bool{}}).walk(doc, "")
		for _, p := range ps.list {
			d.failed = append(d.failed, p.Path)
		}
		if !isNull(resolve(doc)) {
			if resolve(doc).Kind != yaml.MappingNode {
				d.fail("", doc, "the config must be a map with nats, sources, queries and reactions, got %s", describe(resolve(doc)))
			} else {
				d.decode(doc, reflect.ValueOf(cfg).Elem(), "")
			}
		}
	}

	cfg.ApplyDefaults()
	vs := &problems{}
	cfg.validate(vs)
	for _, p := range vs.list {
		if underAny(p.Path, d.failed) {
			continue // a consequence of a decoding problem already reported
		}
		if vars := unset[p.Path]; len(vars) > 0 {
			p.Message += fmt.Sprintf(" (environment variable %s is not set)", strings.Join(vars, ", "))
		}
		p.Line, p.Column = d.position(p.Path)
		ps.list = append(ps.list, p)
	}
	if len(ps.list) > 0 {
		hideVariableValues(ps.list, used)
		sortProblems(ps.list)
		return nil, &ValidationError{Problems: ps.list}
	}
	return cfg, nil
}

// position returns where path, or the nearest enclosing key, was written.
func (d *decoder) position(path string) (int, int) {
	for {
		if p, ok := d.pos[path]; ok {
			return p.line, p.col
		}
		if path == "" {
			return 0, 0
		}
		path = parentPath(path)
	}
}

// parentPath strips the last ".key" or "[i]" from path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// underAny reports whether path is one of roots or inside one of them.
func underAny(path string, roots []string) bool {
	for _, r := range roots {
		if r == "" || path == r || strings.HasPrefix(path, r+".") || strings.HasPrefix(path, r+"[") {
			return true
		}
	}
	return false
}

// yamlProblem turns a YAML syntax error into a Problem; yaml.v3 puts the
// line in the text ("yaml: line 3: ...").
func yamlProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		if _, rest, ok := strings.Cut(msg, ": "); ok {
			return Problem{Line: line, Column: 1, Message: "YAML syntax: " + rest}
		}
	}
	return Problem{Message: "YAML syntax: " + msg}
}

// hideVariableValues replaces substituted variable values in problem
// messages by their ${NAME}: a value from the environment may be a secret,
// even where the key is not one (port: ${PGPASSWORD} by mistake). Values
// substituted at a problem's own path are hidden whatever their length;
// values substituted elsewhere (reaching the problem through a YAML alias)
// are hidden when at least 4 bytes long, so that short values such as "1"
// do not garble unrelated messages.
func hideVariableValues(list []Problem, used map[string]map[string]string) {
	type sub struct{ name, value string }
	var global []sub
	for _, vars := range used {
		for name, v := range vars {
			if len(v) >= 4 {
				global = append(global, sub{name, v})
			}
		}
	}
	for i := range list {
		subs := append([]sub(nil), global...)
		for name, v := range used[list[i].Path] {
			subs = append(subs, sub{name, v})
		}
		// Longest value first, so that a value containing another is
		// replaced whole.
		sort.SliceStable(subs, func(a, b int) bool { return len(subs[a].value) > len(subs[b].value) })
		for _, s := range subs {
			list[i].Message = strings.ReplaceAll(list[i].Message, s.value, "${"+s.name+"}")
		}
	}
}

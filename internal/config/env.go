package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// expander expands ${VAR} and ${VAR:-default} in every scalar value of a
// YAML tree (keys are left alone).
//
//   - ${VAR} is VAR's value; when VAR is unset it is empty, and the path is
//     remembered so that a "required" problem there can say why.
//   - ${VAR:-default} is default when VAR is unset or empty.
//   - $$ is a literal $. A $ followed by anything else is kept as it is, so
//     Cypher parameters ($name) and SQL placeholders ($1) need no escaping.
type expander struct {
	lookup func(string) (string, bool)
	ps     *problems
	// unset maps a value's path to the variables it used that were unset.
	unset map[string][]string
	// used maps a value's path to the variables (name -> value) substituted
	// into it, so that problem messages can hide their values.
	used map[string]map[string]string
	seen map[*yaml.Node]bool
}

func (e *expander) walk(n *yaml.Node, path string) {
	if n == nil || e.seen[n] {
		return
	}
	e.seen[n] = true
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = index(path, i)
			}
			e.walk(c, p)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path
			if k.Value != mergeKey {
				p = join(path, k.Value)
			}
			e.walk(v, p)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		lookup := func(name string) (string, bool) {
			v, ok := e.lookup(name)
			if ok && v != "" {
				if e.used[path] == nil {
					e.used[path] = map[string]string{}
				}
				e.used[path][name] = v
			}
			return v, ok
		}
		out, unset, err := expandString(n.Value, lookup)
		if err != nil {
			e.ps.addAt(path, n.Line, n.Column, "%v", err)
			return
		}
		if len(unset) > 0 {
			e.unset[path] = append(e.unset[path], unset...)
		}
		if out != n.Value {
			n.Value = out
			if n.Style&(yaml.TaggedStyle|yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				// A plain scalar's type follows its expanded text
				// (port: ${PGPORT:-5432} is an int, ${X} unset is null).
				n.Tag = ""
			}
		}
	}
	// Alias nodes: the anchored node is expanded where it is defined.
}

// expandString expands s; unset lists variables without a default that were
// not set. Errors never quote s (it may be a secret), only variable names.
func expandString(s string, lookup func(string) (string, bool)) (out string, unset []string, err error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", nil, fmt.Errorf("unterminated ${ (write $$ for a literal $)")
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !validEnvName(name) {
				return "", nil, fmt.Errorf("invalid variable name %q in ${...}: want letters, digits and _, not starting with a digit", name)
			}
			v, ok := lookup(name)
			switch {
			case hasDef && v == "":
				b.WriteString(def)
			case !ok:
				unset = append(unset, name)
			default:
				b.WriteString(v)
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), unset, nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

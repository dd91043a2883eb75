package config

import (
	"os"
	"reflect"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/tributary/tributary/internal/logging"
)

func lookupOS(name string) (string, bool) { return os.LookupEnv(name) }

// redactedYAML renders v (a *Config) as YAML without secrets. Fields tagged
// secret:"true" become REDACTED, secret:"url" are passed through
// logging.RedactURL, secret:"values" (maps) have every value REDACTED.
// Zero values are left out.
func redactedYAML(v any) string {
	n := toNode(reflect.ValueOf(v), "")
	if n == nil {
		return "{}\n"
	}
	out, err := yaml.Marshal(n)
	if err != nil {
		return "<unprintable config>"
	}
	return string(out)
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func toNode(v reflect.Value, secret string) *yaml.Node {
	if !v.IsValid() {
		return nil
	}
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		if v.Kind() == reflect.Interface && v.Elem().Kind() != reflect.Pointer && v.Elem().Kind() != reflect.Struct {
			// A parameter value (scalar, list, map).
			var n yaml.Node
			if err := n.Encode(v.Interface()); err != nil {
				return scalar("<unprintable>")
			}
			return &n
		}
		return toNode(v.Elem(), secret)
	}
	if v.IsZero() {
		return nil
	}
	if v.Type() == durationType {
		return scalar(v.Interface().(Duration).String())
	}
	switch secret {
	case "true":
		return scalar(logging.Redacted)
	case "url":
		return scalar(logging.RedactURL(v.String()))
	}
	switch v.Kind() {
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		addFields(m, v)
		if len(m.Content) == 0 {
			return nil
		}
		return m
	case reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for i := 0; i < v.Len(); i++ {
			c := toNode(v.Index(i), "")
			if c == nil {
				c = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
			}
			if c.Kind != yaml.ScalarNode {
				s.Style = 0
			}
			s.Content = append(s.Content, c)
		}
		return s
	case reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			var c *yaml.Node
			if secret == "values" {
				c = scalar(logging.Redacted)
			} else {
				c = toNode(v.MapIndex(reflect.ValueOf(k)), "")
			}
			if c == nil {
				c = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
			}
			m.Content = append(m.Content, scalar(k), c)
		}
		return m
	default:
		var n yaml.Node
		if err := n.Encode(v.Interface()); err != nil {
			return scalar("<unprintable>")
		}
		return &n
	}
}

// addFields appends v's fields to m; the kind-specific Spec of a Source or
// Reaction is written inline, as in the file.
func addFields(m *yaml.Node, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := yamlName(f)
		if name == "" {
			if f.Type.Kind() == reflect.Interface && !v.Field(i).IsNil() && v.Field(i).Elem().Kind() == reflect.Pointer {
				addFields(m, v.Field(i).Elem().Elem())
			}
			continue
		}
		c := toNode(v.Field(i), f.Tag.Get("secret"))
		if c == nil {
			continue
		}
		m.Content = append(m.Content, scalar(name), c)
	}
}

package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// mergeKey is YAML's merge key (<<: *anchor).
const mergeKey = "<<"

// maxDecodeSteps bounds the work on one document, so that aliases cannot
// blow up into an exponential amount of decoding.
const maxDecodeSteps = 200_000

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

type position struct{ line, col int }

// decoder walks a YAML tree against the Config struct tree: it rejects
// unknown keys and values of the wrong shape, recording every problem with
// its path and position, and remembers where each path was written.
type decoder struct {
	ps    *problems
	pos   map[string]position
	steps int
	// failed holds the paths of decode problems; validation problems at or
	// under them are dropped as consequences.
	failed []string
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.ps.addAt(path, n.Line, n.Column, format, args...)
	d.failed = append(d.failed, path)
}

// entry is one key/value of a mapping after merge keys are applied.
type entry struct{ key, value *yaml.Node }

// entries returns n's key/value pairs with <<: merges resolved; explicit
// keys win over merged ones and earlier merges over later ones.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var own, merged []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == mergeKey && k.ShortTag() == "!!merge" {
			v = resolve(v)
			var srcs []*yaml.Node
			switch v.Kind {
			case yaml.MappingNode:
				srcs = []*yaml.Node{v}
			case yaml.SequenceNode:
				for _, s := range v.Content {
					srcs = append(srcs, resolve(s))
				}
			default:
				d.fail(path, k, "a merge (<<) must refer to a map or a list of maps")
			}
			for _, s := range srcs {
				if s.Kind != yaml.MappingNode {
					d.fail(path, k, "a merge (<<) must refer to a map or a list of maps")
					continue
				}
				d.steps++
				if d.steps > maxDecodeSteps {
					return own
				}
				merged = append(merged, d.entries(s, path)...)
			}
			continue
		}
		own = append(own, entry{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	seen := map[string]bool{}
	for _, e := range own {
		seen[e.key.Value] = true
	}
	out := own
	for _, e := range merged {
		if !seen[e.key.Value] {
			seen[e.key.Value] = true
			out = append(out, e)
		}
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	default:
		return "nothing"
	}
}

// decode stores n into v (settable), reporting problems under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.steps++
	if d.steps == maxDecodeSteps+1 {
		d.fail("", n, "document too large or too deeply aliased")
	}
	if d.steps > maxDecodeSteps {
		return
	}
	n = resolve(n)
	if n == nil || n.Kind == yaml.AliasNode {
		return
	}
	if _, ok := d.pos[path]; !ok {
		d.pos[path] = position{n.Line, n.Column}
	}
	if isNull(n) {
		return // key present without a value: leave the zero value (default)
	}
	t := v.Type()
	if t == durationType {
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want a duration such as 30s, got %s", describe(n))
			return
		}
		dur, err := parseDuration(n.Value)
		if err != nil {
			d.fail(path, n, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(dur))
		return
	}
	if t == byteSizeType {
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want a size such as 512MiB, got %s", describe(n))
			return
		}
		size, err := parseByteSize(n.Value)
		if err != nil {
			d.fail(path, n, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(size))
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.fail(path, n, "cannot read value: %v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "want a map, got %s", describe(n))
			return
		}
		if h, ok := v.Addr().Interface().(kindedHolder); ok {
			d.decodeKinded(n, v, h, path)
			return
		}
		fields := yamlFields(t)
		for _, e := range d.entries(n, path) {
			d.decodeField(e, v, fields, path, "")
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), index(path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "want a map, got %s", describe(n))
			return
		}
		m := reflect.MakeMap(t)
		for _, e := range d.entries(n, path) {
			k := resolve(e.key)
			if k.Kind != yaml.ScalarNode {
				d.fail(path, k, "map keys must be single values, got %s", describe(k))
				continue
			}
			elem := reflect.New(t.Elem()).Elem()
			d.decode(e.value, elem, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want true or false, got %s", describe(n))
			return
		}
		switch n.Value {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.fail(path, n, "want true or false, got %q", n.Value)
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 10, strconv.IntSize)
		if err != nil {
			d.fail(path, n, "want an integer, got %q", n.Value)
			return
		}
		v.SetInt(i)
	default:
		// Only reachable if a field of an unsupported type is added.
		panic(fmt.Sprintf("config: unsupported field type %s at %s", t, path))
	}
}

// decodeField decodes one mapping entry into the struct v, or reports it
// as unknown. kind, when not empty, names the kind whose keys were allowed.
func (d *decoder) decodeField(e entry, v reflect.Value, fields map[string]int, path, kind string) {
	k := resolve(e.key)
	if k.Kind != yaml.ScalarNode {
		d.fail(path, k, "keys must be single values, got %s", describe(k))
		return
	}
	i, ok := fields[k.Value]
	if !ok {
		d.unknownKey(k, fields, path, kind)
		return
	}
	d.decode(e.value, v.Field(i), join(path, k.Value))
}

func (d *decoder) unknownKey(k *yaml.Node, fields map[string]int, path, kind string) {
	msg := fmt.Sprintf("unknown key %q", k.Value)
	if kind != "" {
		msg += fmt.Sprintf(" for kind %q", kind)
	}
	for name := range fields {
		if strings.EqualFold(name, k.Value) {
			msg += fmt.Sprintf(" (did you mean %q?)", name)
			break
		}
	}
	d.fail(join(path, k.Value), k, "%s", msg)
}

// decodeKinded decodes a struct whose "kind" key selects the struct that
// takes the remaining keys.
func (d *decoder) decodeKinded(n *yaml.Node, v reflect.Value, h kindedHolder, path string) {
	common := yamlFields(v.Type())
	es := d.entries(n, path)
	var kind string
	for _, e := range es {
		if k := resolve(e.key); k.Kind == yaml.ScalarNode && k.Value == "kind" {
			if kv := resolve(e.value); kv != nil && kv.Kind == yaml.ScalarNode && !isNull(kv) {
				kind = kv.Value
			}
		}
	}
	spec, ok := h.newSpec(kind)
	var sv reflect.Value
	var specFields map[string]int
	if ok {
		sv = reflect.ValueOf(spec).Elem()
		specFields = yamlFields(sv.Type())
	}
	for _, e := range es {
		k := resolve(e.key)
		if k.Kind != yaml.ScalarNode {
			d.decodeField(e, v, common, path, kind) // reports the bad key
			continue
		}
		if i, isCommon := common[k.Value]; isCommon {
			d.decode(e.value, v.Field(i), join(path, k.Value))
			continue
		}
		if !ok {
			// Missing or unknown kind (Validate reports it): the other keys
			// cannot be checked.
			continue
		}
		if i, isSpec := specFields[k.Value]; isSpec {
			d.decode(e.value, sv.Field(i), join(path, k.Value))
			continue
		}
		d.unknownKey(k, mergeFieldNames(common, specFields), path, kind)
	}
	if ok {
		h.setSpec(spec)
	}
}

func mergeFieldNames(a, b map[string]int) map[string]int {
	out := make(map[string]int, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// yamlFields maps the yaml names of t's fields to their indexes, skipping
// fields tagged "-".
func yamlFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		out[name] = i
	}
	return out
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || tag == "" {
		return ""
	}
	return tag
}

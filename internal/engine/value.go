package engine

import (
	"encoding/json"
	"fmt"
	"github.com/tributary/tributary/internal/cypher"
	"math"
	"strconv"
)

// normalizeValue turns a decoded property value (from JSON with UseNumber,
// from YAML, or built by Go code) into the engine's value set: nil, bool,
// int64, float64, string, []any and map[string]any. Integer literals become
// int64; numbers with a fraction or exponent, or beyond int64, become float64.
func normalizeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, int64, float64, string:
		return x, nil
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, fmt.Errorf("number %q: %w", string(x), err)
		}
		return f, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return float64(x), nil
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return float64(x), nil
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalizeValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = n
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported value of type %T", v)
	}
}

// valueKey is the canonical equality key of v (cypher.AppendKey): exact
// bytes, never a hash; integer-valued floats share the key of the integer.
func valueKey(v any) string { return string(cypher.AppendKey(nil, v)) }

// joinable reports whether v can take part in an equality join: null,
// missing and NaN never join.
func joinable(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case float64:
		return !math.IsNaN(x)
	}
	return true
}

// canonicalGroupValue returns the representative of v's equality class used
// in grouping keys and DISTINCT rows, so that a group's row is a pure function
// of its members: integer-valued floats become int64 (JSON cannot tell them
// apart either), -0.0 becomes 0.
func canonicalGroupValue(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && x >= -9.007199254740992e15 && x <= 9.007199254740992e15 {
			return int64(x)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = canonicalGroupValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = canonicalGroupValue(e)
		}
		return out
	}
	return v
}

// strictEqual reports whether a and b are the same value including its
// representation (int64 1 and float64 1.0 differ). Used to suppress no-op
// updates: a row whose values did not change in any way is not updated.
func strictEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		if !ok {
			return false
		}
		if math.IsNaN(x) && math.IsNaN(y) {
			return true
		}
		return math.Float64bits(x) == math.Float64bits(y)
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !strictEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !strictEqual(xv, yv) {
				return false
			}
		}
		return true
	}
	return fmt.Sprintf("%T:%#v", a, a) == fmt.Sprintf("%T:%#v", b, b)
}

// eqKey is the canonical equality key of a value (grouping, DISTINCT,
// count(DISTINCT)).
func eqKey(v any) string { return valueKey(v) }

// orderValues is the total order of aggregate multisets: cypher.Compare, and
// for numerically equal numbers an int64 before a float64, so that distinct
// representations stay distinct entries in a canonical order.
func orderValues(a, b any) int {
	if c := cypher.Compare(a, b); c != 0 {
		return c
	}
	return reprRank(a) - reprRank(b)
}

func reprRank(v any) int {
	if _, ok := v.(float64); ok {
		return 1
	}
	return 0
}

// jsonEqual reports whether two result values look the same to a consumer
// of the JSON result: like strictEqual, except that numbers compare by value
// (int64 1 equals float64 1.0, which JSON cannot tell apart). Used to
// suppress no-op updates.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case int64, float64:
		switch b.(type) {
		case int64, float64:
			return cypher.Compare(x, b) == 0
		}
		return false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	}
	return strictEqual(a, b)
}

package cypher

import (
	"encoding/json"
	"math"
	"strconv"
)

// Value is a Cypher value. Only these dynamic types are valid:
//
//	nil                 null
//	bool                boolean
//	int64               integer
//	float64             float
//	string              string
//	[]Value             list
//	map[string]Value    map
//	Date, LocalDateTime, DateTime, Duration   temporal values
//	Element             a node or relation bound to a pattern variable
//
// Values are immutable once built: functions of this package never modify a
// list or map they receive, and callers must not modify one they passed in or
// got back.
type Value = any

// Element is a node or relation as the engine stores it, bound to a pattern
// variable. Implementations belong to the engine; this package only reads
// them.
type Element interface {
	// ElementID is the element's identity, unique among elements of both kinds.
	ElementID() string
	// Labels are the node's labels, or the relation's single type.
	Labels() []string
	// Property returns a property's value; ok is false when it is absent
	// (absent and null are the same to a query).
	Property(name string) (v Value, ok bool)
	// Properties returns all properties. The map must not be modified by
	// either side; it may be built on demand (it is only used by keys(),
	// properties() and ToJSON, never by filters).
	Properties() map[string]Value
	// IsRelation tells a relation from a node.
	IsRelation() bool
}

// Type is the kind of a Value, as used in error messages, in the total order
// of Compare and as the tag of AppendKey.
type Type uint8

// Value types, in the order Compare sorts them (ascending). The order follows
// Neo4j's ORDER BY across types: maps, nodes, relations, lists, temporal
// values, durations, strings, booleans, numbers, null last.
const (
	TypeMap Type = iota + 1
	TypeNode
	TypeRelation
	TypeList
	TypeDateTime
	TypeLocalDateTime
	TypeDate
	TypeDuration
	TypeString
	TypeBoolean
	TypeNumber // int64 and float64 order together
	TypeNull
	typeInvalid
)

var typeNames = [...]string{
	TypeMap:           "map",
	TypeNode:          "node",
	TypeRelation:      "relation",
	TypeList:          "list",
	TypeDateTime:      "datetime",
	TypeLocalDateTime: "localdatetime",
	TypeDate:          "date",
	TypeDuration:      "duration",
	TypeString:        "string",
	TypeBoolean:       "boolean",
	TypeNumber:        "number",
	TypeNull:          "null",
	typeInvalid:       "invalid",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "invalid"
}

// TypeOf returns the Type of v; values outside the model report typeInvalid
// ("invalid").
func TypeOf(v Value) Type {
	switch x := v.(type) {
	case nil:
		return TypeNull
	case bool:
		return TypeBoolean
	case int64, float64:
		return TypeNumber
	case string:
		return TypeString
	case []Value:
		return TypeList
	case map[string]Value:
		return TypeMap
	case Date:
		return TypeDate
	case LocalDateTime:
		return TypeLocalDateTime
	case DateTime:
		return TypeDateTime
	case Duration:
		return TypeDuration
	case Element:
		if x.IsRelation() {
			return TypeRelation
		}
		return TypeNode
	}
	return typeInvalid
}

// TypeName names v's type for error messages: "integer" and "float" are told
// apart, everything else is Type.String.
func TypeName(v Value) string {
	switch v.(type) {
	case int64:
		return "integer"
	case float64:
		return "float"
	}
	return TypeOf(v).String()
}

// FromJSON converts a decoded JSON value (from encoding/json, with or without
// UseNumber) into a Value: json.Number becomes int64 when it is an integer
// literal that fits, float64 otherwise; float64 stays float64 (decoding
// without UseNumber cannot tell 1 from 1.0); other integer kinds become int64;
// []any and map[string]any are converted recursively. Values that are already
// Values (temporal types, elements) pass through. A json.Number that is not a
// number, or an unsupported Go type, yields an error wrapping ErrInvalidValue.
func FromJSON(v any) (Value, error) {
	switch x := v.(type) {
	case nil, bool, string, int64, float64, Date, LocalDateTime, DateTime, Duration:
		return x, nil
	case json.Number:
		return numberFromString(string(x))
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case []any:
		out := make([]Value, len(x))
		for i, e := range x {
			c, err := FromJSON(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]Value, len(x))
		for k, e := range x {
			c, err := FromJSON(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case Element:
		return x, nil
	}
	return nil, &valueError{msg: "unsupported Go type " + goTypeName(v)}
}

func numberFromString(s string) (Value, error) {
	isInt := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || (i == 0 && c == '-')) {
			isInt = false
			break
		}
	}
	if isInt {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return nil, &valueError{msg: "invalid number " + strconv.Quote(s)}
	}
	return f, nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// ToJSON converts a Value into something encoding/json marshals faithfully:
// temporal values become their ISO-8601 strings, elements become their
// property maps, non-finite floats (which JSON cannot carry) become the
// strings "NaN", "Infinity" and "-Infinity". Lists and maps are converted
// recursively into []any and map[string]any.
func ToJSON(v Value) any {
	switch x := v.(type) {
	case nil, bool, int64, string:
		return x
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "Infinity"
		case math.IsInf(x, -1):
			return "-Infinity"
		}
		return x
	case []Value:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = ToJSON(e)
		}
		return out
	case map[string]Value:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = ToJSON(e)
		}
		return out
	case Date:
		return x.String()
	case LocalDateTime:
		return x.String()
	case DateTime:
		return x.String()
	case Duration:
		return x.String()
	case Element:
		props := x.Properties()
		out := make(map[string]any, len(props))
		for k, e := range props {
			out[k] = ToJSON(e)
		}
		return out
	}
	return nil
}

// IsValue reports whether v (recursively) belongs to the value model.
func IsValue(v Value) bool {
	switch x := v.(type) {
	case []Value:
		for _, e := range x {
			if !IsValue(e) {
				return false
			}
		}
		return true
	case map[string]Value:
		for _, e := range x {
			if !IsValue(e) {
				return false
			}
		}
		return true
	}
	return TypeOf(v) != typeInvalid
}

package cypher

import (
	"math"
	"slices"
	"strings"
)

// Compare is the one total order over all values, used for min, max, the
// canonical order of collect and any sorting. It returns -1, 0 or +1.
//
// Across types the order is TypeMap < TypeNode < TypeRelation < TypeList <
// TypeDateTime < TypeLocalDateTime < TypeDate < TypeDuration < TypeString <
// TypeBoolean < TypeNumber < TypeNull (Neo4j's ORDER BY order, null last).
// Within a type: numbers by numeric value, int64 and float64 compared
// exactly (1 and 1.0 are equal, -0.0 equals 0.0, NaN is greater than every
// other number and equal to itself); strings by code point; false < true;
// lists lexicographically; maps by their sorted keys and then values, pair
// by pair; elements by ElementID; dates and local date-times
// chronologically; date-times by instant (the offset does not count);
// durations by months, then days, seconds and nanoseconds.
//
// Compare(a, b) == 0 exactly when AppendKey(nil, a) equals AppendKey(nil, b).
// This is not Cypher's `<`, which yields null for incomparable values (see
// Less); and Equal differs from Compare == 0 for NaN and for null.
func Compare(a, b Value) int {
	ta, tb := TypeOf(a), TypeOf(b)
	if ta != tb {
		if ta < tb {
			return -1
		}
		return 1
	}
	switch x := a.(type) {
	case nil:
		return 0
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpInt(x, y)
		case float64:
			return cmpIntFloat(x, y)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return -cmpIntFloat(y, x)
		case float64:
			return cmpFloatTotal(x, y)
		}
	case string:
		return strings.Compare(x, b.(string))
	case []Value:
		y := b.([]Value)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := Compare(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmpInt(int64(len(x)), int64(len(y)))
	case map[string]Value:
		return compareMaps(x, b.(map[string]Value))
	case Date:
		return cmpInt(x.days, b.(Date).days)
	case LocalDateTime:
		y := b.(LocalDateTime)
		if c := cmpInt(x.sec, y.sec); c != 0 {
			return c
		}
		return cmpInt(int64(x.nsec), int64(y.nsec))
	case DateTime:
		y := b.(DateTime)
		if c := cmpInt(x.sec, y.sec); c != 0 {
			return c
		}
		return cmpInt(int64(x.nsec), int64(y.nsec))
	case Duration:
		y := b.(Duration)
		if c := cmpInt(x.Months, y.Months); c != 0 {
			return c
		}
		if c := cmpInt(x.Days, y.Days); c != 0 {
			return c
		}
		if c := cmpInt(x.Seconds, y.Seconds); c != 0 {
			return c
		}
		return cmpInt(int64(x.Nanos), int64(y.Nanos))
	case Element:
		return strings.Compare(x.ElementID(), b.(Element).ElementID())
	}
	return 0 // two values outside the model: unordered, treated as equal
}

func compareMaps(x, y map[string]Value) int {
	kx, ky := sortedKeys(x), sortedKeys(y)
	for i := 0; i < len(kx) && i < len(ky); i++ {
		if c := strings.Compare(kx[i], ky[i]); c != 0 {
			return c
		}
		if c := Compare(x[kx[i]], y[ky[i]]); c != 0 {
			return c
		}
	}
	return cmpInt(int64(len(kx)), int64(len(ky)))
}

func sortedKeys(m map[string]Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpFloatTotal orders floats with NaN above +Inf and equal to itself.
func cmpFloatTotal(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

const twoTo63 = 9223372036854775808.0

// cmpIntFloat compares an integer with a float exactly (no rounding of the
// integer to float64); NaN is greater than every integer.
func cmpIntFloat(i int64, f float64) int {
	switch {
	case math.IsNaN(f):
		return -1
	case f >= twoTo63:
		return -1
	case f < -twoTo63:
		return 1
	}
	t := math.Trunc(f)
	if c := cmpInt(i, int64(t)); c != 0 {
		return c
	}
	switch frac := f - t; {
	case frac > 0:
		return -1
	case frac < 0:
		return 1
	}
	return 0
}

// Equal is Cypher's `=`: isNull is true when the result is null (either side
// null, or lists/maps equal except for null members). Numbers compare by
// value (1 = 1.0), NaN equals nothing, values of different types are not
// equal, elements are equal when they are the same element, date-times when
// they are the same instant.
func Equal(a, b Value) (eq bool, isNull bool) {
	if a == nil || b == nil {
		return false, true
	}
	switch x := a.(type) {
	case bool:
		y, ok := b.(bool)
		return ok && x == y, false
	case int64:
		switch y := b.(type) {
		case int64:
			return x == y, false
		case float64:
			return !math.IsNaN(y) && cmpIntFloat(x, y) == 0, false
		}
		return false, false
	case float64:
		switch y := b.(type) {
		case int64:
			return !math.IsNaN(x) && cmpIntFloat(y, x) == 0, false
		case float64:
			return x == y, false
		}
		return false, false
	case string:
		y, ok := b.(string)
		return ok && x == y, false
	case []Value:
		y, ok := b.([]Value)
		if !ok || len(x) != len(y) {
			return false, false
		}
		sawNull := false
		for i := range x {
			e, n := Equal(x[i], y[i])
			if n {
				sawNull = true
			} else if !e {
				return false, false
			}
		}
		return !sawNull, sawNull
	case map[string]Value:
		y, ok := b.(map[string]Value)
		if !ok || len(x) != len(y) {
			return false, false
		}
		sawNull := false
		for k, xv := range x {
			yv, present := y[k]
			if !present {
				return false, false
			}
			e, n := Equal(xv, yv)
			if n {
				sawNull = true
			} else if !e {
				return false, false
			}
		}
		return !sawNull, sawNull
	case Element:
		y, ok := b.(Element)
		return ok && x.IsRelation() == y.IsRelation() && x.ElementID() == y.ElementID(), false
	}
	if TypeOf(a) != TypeOf(b) {
		return false, false
	}
	return Compare(a, b) == 0, false
}

// Results of order beyond -1, 0 and +1.
const (
	ordUnordered = 2 // comparable types but no order (NaN): every comparison is false
	ordNull      = 3 // incomparable or null: the comparison is null
)

// order is Cypher's ordering for <, <=, >, >=: numbers with numbers,
// strings with strings, booleans with booleans, lists lexicographically,
// temporal values of the same type; anything else (including durations,
// maps, elements, and null) is ordNull.
func order(a, b Value) int {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpInt(x, y)
		case float64:
			if math.IsNaN(y) {
				return ordUnordered
			}
			return cmpIntFloat(x, y)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			if math.IsNaN(x) {
				return ordUnordered
			}
			return -cmpIntFloat(y, x)
		case float64:
			if math.IsNaN(x) || math.IsNaN(y) {
				return ordUnordered
			}
			return cmpFloatTotal(x, y)
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case bool:
		if _, ok := b.(bool); ok {
			return Compare(a, b)
		}
	case Date, LocalDateTime, DateTime:
		if TypeOf(a) == TypeOf(b) {
			return Compare(a, b)
		}
	case []Value:
		y, ok := b.([]Value)
		if !ok {
			return ordNull
		}
		for i := 0; i < len(x) && i < len(y); i++ {
			if x[i] == nil || y[i] == nil {
				return ordNull
			}
			if e, _ := Equal(x[i], y[i]); e {
				continue
			}
			return order(x[i], y[i])
		}
		return cmpInt(int64(len(x)), int64(len(y)))
	}
	return ordNull
}

// Less is Cypher's `a < b`: isNull is true when the values are
// incomparable (different types, durations, maps, elements) or null.
func Less(a, b Value) (less bool, isNull bool) {
	switch o := order(a, b); o {
	case ordNull:
		return false, true
	default:
		return o == -1, false
	}
}

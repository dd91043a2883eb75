package cypher

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

type special uint8

const (
	specialNone special = iota
	specialCoalesce
	specialPreviousValue
	specialChangeTime
)

// funcDef is a scalar or aggregate function. impl receives the number of
// arguments given and up to three argument values (unused ones nil), which
// keeps calls free of slice allocations.
type funcDef struct {
	name     string // canonical spelling, for messages
	min, max int    // argument count; max < 0 = unbounded (special functions only)
	agg      AggFunc
	special  special
	impl     func(n int, a, b, c Value) (Value, error)
	// rejected, when set, is why the function cannot be used in a continuous
	// query (non-deterministic or not yet supported); unsupported marks
	// "not yet supported" rather than "never".
	rejected string
}

var functions = map[string]*funcDef{}

func def(name string, min, max int, impl func(n int, a, b, c Value) (Value, error)) {
	functions[strings.ToLower(name)] = &funcDef{name: name, min: min, max: max, impl: impl}
}

func fn1(f func(Value) (Value, error)) func(int, Value, Value, Value) (Value, error) {
	return func(_ int, a, _, _ Value) (Value, error) { return f(a) }
}

func fn2(f func(Value, Value) (Value, error)) func(int, Value, Value, Value) (Value, error) {
	return func(_ int, a, b, _ Value) (Value, error) { return f(a, b) }
}

func init() {
	for _, a := range []struct {
		name string
		f    AggFunc
	}{{"count", AggCount}, {"sum", AggSum}, {"avg", AggAvg}, {"min", AggMin}, {"max", AggMax}, {"collect", AggCollect}} {
		functions[a.name] = &funcDef{name: a.name, min: 1, max: 1, agg: a.f}
	}
	functions["coalesce"] = &funcDef{name: "coalesce", min: 1, max: -1, special: specialCoalesce}
	functions["drasi.previousvalue"] = &funcDef{name: "drasi.previousValue", min: 1, max: 2, special: specialPreviousValue}
	functions["drasi.changedatetime"] = &funcDef{name: "drasi.changeDateTime", min: 1, max: 1, special: specialChangeTime}
	for _, n := range []string{"drasi.trueFor", "drasi.trueLater", "drasi.trueUntil"} {
		functions[strings.ToLower(n)] = &funcDef{name: n, min: 0, max: -1,
			rejected: n + " is not yet supported: time-triggered re-evaluation is not implemented"}
	}
	for _, n := range []string{"timestamp", "rand", "randomUUID"} {
		functions[strings.ToLower(n)] = &funcDef{name: n, min: 0, max: -1,
			rejected: n + "() is not allowed in a continuous query: it is non-deterministic, so replaying changes would not reproduce the result"}
	}

	// Elements.
	def("elementId", 1, 1, fn1(elementID))
	def("id", 1, 1, fn1(elementID))
	def("labels", 1, 1, fn1(labelsFn))
	def("type", 1, 1, fn1(typeFn))
	def("keys", 1, 1, fn1(keysFn))
	def("properties", 1, 1, fn1(propertiesFn))
	def("exists", 1, 1, fn1(func(a Value) (Value, error) { return a != nil, nil }))

	// Lists and sizes.
	def("size", 1, 1, fn1(sizeFn))
	def("isEmpty", 1, 1, fn1(isEmptyFn))
	def("head", 1, 1, fn1(func(a Value) (Value, error) {
		l, err := listArg("head", a)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		return l[0], nil
	}))
	def("last", 1, 1, fn1(func(a Value) (Value, error) {
		l, err := listArg("last", a)
		if err != nil || len(l) == 0 {
			return nil, err
		}
		return l[len(l)-1], nil
	}))
	def("tail", 1, 1, fn1(func(a Value) (Value, error) {
		if a == nil {
			return nil, nil
		}
		l, err := listArg("tail", a)
		if err != nil {
			return nil, err
		}
		if len(l) == 0 {
			return []Value{}, nil
		}
		return l[1:len(l):len(l)], nil
	}))
	def("range", 2, 3, rangeFn)
	def("reverse", 1, 1, fn1(reverseFn))

	// Conversions.
	def("toString", 1, 1, fn1(toStringFn))
	def("toInteger", 1, 1, fn1(toIntegerFn))
	def("toFloat", 1, 1, fn1(toFloatFn))
	def("toBoolean", 1, 1, fn1(toBooleanFn))

	// Strings.
	def("toUpper", 1, 1, fn1(strMap("toUpper", strings.ToUpper)))
	def("toLower", 1, 1, fn1(strMap("toLower", strings.ToLower)))
	def("trim", 1, 1, fn1(strMap("trim", func(s string) string { return strings.TrimFunc(s, unicode.IsSpace) })))
	def("ltrim", 1, 1, fn1(strMap("ltrim", func(s string) string { return strings.TrimLeftFunc(s, unicode.IsSpace) })))
	def("rtrim", 1, 1, fn1(strMap("rtrim", func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) })))
	def("substring", 2, 3, substringFn)
	def("replace", 3, 3, replaceFn)
	def("split", 2, 2, fn2(splitFn))
	def("left", 2, 2, fn2(func(a, b Value) (Value, error) { return leftRight("left", a, b, true) }))
	def("right", 2, 2, fn2(func(a, b Value) (Value, error) { return leftRight("right", a, b, false) }))

	// Math.
	def("abs", 1, 1, fn1(absFn))
	def("ceil", 1, 1, fn1(floatMap("ceil", math.Ceil)))
	def("floor", 1, 1, fn1(floatMap("floor", math.Floor)))
	def("round", 1, 2, roundFn)
	def("sign", 1, 1, fn1(signFn))
	def("sqrt", 1, 1, fn1(floatMap("sqrt", math.Sqrt)))
	def("exp", 1, 1, fn1(floatMap("exp", math.Exp)))
	def("log", 1, 1, fn1(floatMap("log", math.Log)))
	def("log10", 1, 1, fn1(floatMap("log10", math.Log10)))
	def("sin", 1, 1, fn1(floatMap("sin", math.Sin)))
	def("cos", 1, 1, fn1(floatMap("cos", math.Cos)))
	def("tan", 1, 1, fn1(floatMap("tan", math.Tan)))
	def("asin", 1, 1, fn1(floatMap("asin", math.Asin)))
	def("acos", 1, 1, fn1(floatMap("acos", math.Acos)))
	def("atan", 1, 1, fn1(floatMap("atan", math.Atan)))
	def("atan2", 2, 2, fn2(func(a, b Value) (Value, error) {
		if a == nil || b == nil {
			return nil, nil
		}
		x, ok1 := toF(a)
		y, ok2 := toF(b)
		if !ok1 || !ok2 {
			return nil, typeErr("atan2 expects numbers but got " + TypeName(a) + " and " + TypeName(b))
		}
		return math.Atan2(x, y), nil
	}))
	def("degrees", 1, 1, fn1(floatMap("degrees", func(x float64) float64 { return x * 180 / math.Pi })))
	def("radians", 1, 1, fn1(floatMap("radians", func(x float64) float64 { return x * math.Pi / 180 })))
	def("pi", 0, 0, func(int, Value, Value, Value) (Value, error) { return math.Pi, nil })
	def("e", 0, 0, func(int, Value, Value, Value) (Value, error) { return math.E, nil })

	// Temporal. The no-argument forms (the current time) are rejected by
	// Analyze: a continuous query must be deterministic.
	def("date", 1, 1, fn1(dateFn))
	def("localdatetime", 1, 1, fn1(localDateTimeFn))
	def("datetime", 1, 1, fn1(dateTimeFn))
	def("duration", 1, 1, fn1(durationFn))
}

// LookupFunction reports whether name (case-insensitive) is a known function
// and whether it is an aggregate.
func LookupFunction(name string) (known, aggregate bool) {
	f, ok := functions[strings.ToLower(name)]
	return ok, ok && f.agg != 0
}

func elementID(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case Element:
		return x.ElementID(), nil
	}
	return nil, typeErr("elementId expects a node or relation but got " + TypeName(a))
}

func labelsFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case Element:
		if !x.IsRelation() {
			ls := x.Labels()
			out := make([]Value, len(ls))
			for i, l := range ls {
				out[i] = l
			}
			return out, nil
		}
	}
	return nil, typeErr("labels expects a node but got " + TypeName(a))
}

func typeFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case Element:
		if x.IsRelation() {
			if ls := x.Labels(); len(ls) > 0 {
				return ls[0], nil
			}
			return nil, nil
		}
	}
	return nil, typeErr("type expects a relation but got " + TypeName(a))
}

func keysFn(a Value) (Value, error) {
	var m map[string]Value
	switch x := a.(type) {
	case nil:
		return nil, nil
	case Element:
		m = x.Properties()
	case map[string]Value:
		m = x
	default:
		return nil, typeErr("keys expects a node, relation or map but got " + TypeName(a))
	}
	keys := sortedKeys(m)
	out := make([]Value, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out, nil
}

func propertiesFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case Element:
		return x.Properties(), nil
	case map[string]Value:
		return x, nil
	}
	return nil, typeErr("properties expects a node, relation or map but got " + TypeName(a))
}

func sizeFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		return runeLen(x), nil
	case []Value:
		return int64(len(x)), nil
	case map[string]Value:
		return int64(len(x)), nil
	}
	return nil, typeErr("size expects a string or list but got " + TypeName(a))
}

func isEmptyFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		return x == "", nil
	case []Value:
		return len(x) == 0, nil
	case map[string]Value:
		return len(x) == 0, nil
	}
	return nil, typeErr("isEmpty expects a string, list or map but got " + TypeName(a))
}

func listArg(fn string, a Value) ([]Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case []Value:
		return x, nil
	}
	return nil, typeErr(fn + " expects a list but got " + TypeName(a))
}

// maxRange bounds range() so that a query cannot allocate without limit.
const maxRange = 10_000_000

func rangeFn(n int, a, b, c Value) (Value, error) {
	if a == nil || b == nil || (n == 3 && c == nil) {
		return nil, nil
	}
	start, ok1 := a.(int64)
	end, ok2 := b.(int64)
	step := int64(1)
	ok3 := true
	if n == 3 {
		step, ok3 = c.(int64)
	}
	if !ok1 || !ok2 || !ok3 {
		return nil, typeErr("range expects integers")
	}
	if step == 0 {
		return nil, argErr("range: step must not be zero")
	}
	count := int64(0)
	if (step > 0 && end >= start) || (step < 0 && end <= start) {
		q := absDiff(end, start) / absI(step)
		if q >= maxRange {
			return nil, argErr("range: more than " + itoa(maxRange) + " elements")
		}
		count = q + 1
	}
	out := make([]Value, 0, count)
	for i, v := int64(0), start; i < count; i, v = i+1, v+step {
		out = append(out, v)
	}
	return out, nil
}

// absDiff computes |end-start|, saturating at MaxInt64 (enough to reject
// oversized ranges).
func absDiff(end, start int64) int64 {
	d, ok := subInt(end, start)
	if !ok {
		return math.MaxInt64
	}
	if d < 0 {
		if d == math.MinInt64 {
			return math.MaxInt64
		}
		return -d
	}
	return d
}

func absI(x int64) int64 {
	if x < 0 {
		if x == math.MinInt64 {
			return math.MaxInt64
		}
		return -x
	}
	return x
}

func reverseFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		r := []rune(x)
		slices.Reverse(r)
		return string(r), nil
	case []Value:
		out := slices.Clone(x)
		slices.Reverse(out)
		return out, nil
	}
	return nil, typeErr("reverse expects a string or list but got " + TypeName(a))
}

// ToString renders a value as Cypher's toString does, for the types it
// accepts (numbers, booleans, strings, temporal values); ok is false for
// other types.
func ToString(v Value) (s string, ok bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64, float64:
		return formatNumber(x), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case Date:
		return x.String(), true
	case LocalDateTime:
		return x.String(), true
	case DateTime:
		return x.String(), true
	case Duration:
		return x.String(), true
	}
	return "", false
}

func toStringFn(a Value) (Value, error) {
	if a == nil {
		return nil, nil
	}
	s, ok := ToString(a)
	if !ok {
		return nil, typeErr("toString cannot convert " + TypeName(a))
	}
	return s, nil
}

func toIntegerFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case int64:
		return x, nil
	case float64:
		return floatToInt("toInteger", x)
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, nil
		}
		v, err := floatToInt("toInteger", f)
		if err != nil {
			return nil, nil
		}
		return v, nil
	}
	return nil, typeErr("toInteger cannot convert " + TypeName(a))
}

func floatToInt(fn string, f float64) (Value, error) {
	t := math.Trunc(f)
	if math.IsNaN(t) || t < -twoTo63 || t >= twoTo63 {
		return nil, &EvalError{Msg: fn + ": " + formatFloat(f) + " does not fit in an integer", kind: ErrOverflow}
	}
	return int64(t), nil
}

func toFloatFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil && !isRangeErr(err) {
			return nil, nil
		}
		return f, nil
	}
	return nil, typeErr("toFloat cannot convert " + TypeName(a))
}

func toBooleanFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case bool:
		return x, nil
	case int64:
		return x != 0, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, nil
	}
	return nil, typeErr("toBoolean cannot convert " + TypeName(a))
}

func strMap(fn string, f func(string) string) func(Value) (Value, error) {
	return func(a Value) (Value, error) {
		switch x := a.(type) {
		case nil:
			return nil, nil
		case string:
			return f(x), nil
		}
		return nil, typeErr(fn + " expects a string but got " + TypeName(a))
	}
}

func intArg(fn, what string, v Value) (int64, error) {
	n, ok := v.(int64)
	if !ok {
		return 0, typeErr(fn + " expects an integer " + what + " but got " + TypeName(v))
	}
	if n < 0 {
		return 0, argErr(fn + ": " + what + " must not be negative")
	}
	return n, nil
}

// substring(s, start[, length]) counts in characters (code points).
func substringFn(n int, a, b, c Value) (Value, error) {
	if a == nil || b == nil || (n == 3 && c == nil) {
		return nil, nil
	}
	s, ok := a.(string)
	if !ok {
		return nil, typeErr("substring expects a string but got " + TypeName(a))
	}
	start, err := intArg("substring", "start", b)
	if err != nil {
		return nil, err
	}
	length := int64(math.MaxInt64)
	if n == 3 {
		if length, err = intArg("substring", "length", c); err != nil {
			return nil, err
		}
	}
	lo := runeOffset(s, start)
	rest := s[lo:]
	hi := runeOffset(rest, length)
	return rest[:hi], nil
}

// runeOffset returns the byte offset of the n-th code point of s (or len(s)).
func runeOffset(s string, n int64) int {
	if n >= int64(len(s)) {
		return len(s)
	}
	i := 0
	for k := int64(0); k < n && i < len(s); k++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return i
}

func replaceFn(_ int, a, b, c Value) (Value, error) {
	if a == nil || b == nil || c == nil {
		return nil, nil
	}
	s, ok1 := a.(string)
	old, ok2 := b.(string)
	repl, ok3 := c.(string)
	if !ok1 || !ok2 || !ok3 {
		return nil, typeErr("replace expects strings")
	}
	return strings.ReplaceAll(s, old, repl), nil
}

func splitFn(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	s, ok := a.(string)
	if !ok {
		return nil, typeErr("split expects a string but got " + TypeName(a))
	}
	var parts []string
	switch d := b.(type) {
	case string:
		if d == "" {
			parts = strings.Split(s, "")
		} else {
			parts = strings.Split(s, d)
		}
	case []Value:
		seps := make([]string, 0, len(d))
		for _, e := range d {
			str, ok := e.(string)
			if !ok {
				return nil, typeErr("split expects string delimiters but got " + TypeName(e))
			}
			seps = append(seps, str)
		}
		parts = splitMulti(s, seps)
	default:
		return nil, typeErr("split expects a string delimiter but got " + TypeName(b))
	}
	out := make([]Value, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func splitMulti(s string, seps []string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		matched := 0
		for _, sep := range seps {
			if sep != "" && strings.HasPrefix(s[i:], sep) {
				matched = len(sep)
				break
			}
		}
		if matched > 0 {
			out = append(out, s[start:i])
			i += matched
			start = i
			continue
		}
		i++
	}
	return append(out, s[start:])
}

func leftRight(fn string, a, b Value, left bool) (Value, error) {
	if a == nil {
		return nil, nil
	}
	s, ok := a.(string)
	if !ok {
		return nil, typeErr(fn + " expects a string but got " + TypeName(a))
	}
	if b == nil {
		return nil, argErr(fn + ": length must not be null")
	}
	n, err := intArg(fn, "length", b)
	if err != nil {
		return nil, err
	}
	if left {
		return s[:runeOffset(s, n)], nil
	}
	total := runeLen(s)
	if n >= total {
		return s, nil
	}
	return s[runeOffset(s, total-n):], nil
}

func absFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case int64:
		if x == math.MinInt64 {
			return nil, overflowErr("abs")
		}
		if x < 0 {
			return -x, nil
		}
		return x, nil
	case float64:
		return math.Abs(x), nil
	}
	return nil, typeErr("abs expects a number but got " + TypeName(a))
}

func floatMap(fn string, f func(float64) float64) func(Value) (Value, error) {
	return func(a Value) (Value, error) {
		if a == nil {
			return nil, nil
		}
		x, ok := toF(a)
		if !ok {
			return nil, typeErr(fn + " expects a number but got " + TypeName(a))
		}
		return f(x), nil
	}
}

// roundFn: round(x) rounds half up (toward positive infinity), as Java's
// Math.round; round(x, precision) rounds half away from zero at that many
// decimals. Results are floats.
func roundFn(n int, a, b, _ Value) (Value, error) {
	if a == nil || (n == 2 && b == nil) {
		return nil, nil
	}
	x, ok := toF(a)
	if !ok {
		return nil, typeErr("round expects a number but got " + TypeName(a))
	}
	if n == 1 {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return x, nil
		}
		return math.Floor(x + 0.5), nil
	}
	p, ok := b.(int64)
	if !ok {
		return nil, typeErr("round expects an integer precision but got " + TypeName(b))
	}
	if math.IsNaN(x) || math.IsInf(x, 0) || p > 300 {
		return x, nil
	}
	if p < -300 {
		return 0.0, nil
	}
	s := strconv.FormatFloat(x, 'f', -1, 64)
	f, err := strconv.ParseFloat(roundDecimal(s, int(p)), 64)
	if err != nil {
		return nil, argErr("round: " + err.Error())
	}
	return f, nil
}

// roundDecimal rounds the decimal text s (as strconv 'f' prints it) half away
// from zero at p decimals, exactly.
func roundDecimal(s string, p int) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	digits := []byte(intPart + frac)
	point := len(intPart) // digits[:point] are the integer part
	keep := point + p     // number of digits kept
	if keep >= len(digits) {
		if neg {
			return "-" + s
		}
		return s
	}
	if keep < 0 {
		return "0"
	}
	roundUp := digits[keep] >= '5'
	digits = digits[:keep]
	for i := len(digits); i < point; i++ {
		digits = append(digits, '0') // negative precision: zero the rest
	}
	if roundUp {
		i := keep - 1
		for ; i >= 0; i-- {
			if digits[i] == '9' {
				digits[i] = '0'
				continue
			}
			digits[i]++
			break
		}
		if i < 0 {
			digits = append([]byte{'1'}, digits...)
			point++
		}
	}
	var out string
	if point >= len(digits) {
		out = string(digits)
	} else {
		out = string(digits[:point]) + "." + string(digits[point:])
	}
	if out == "" {
		out = "0"
	}
	if neg {
		out = "-" + out
	}
	return out
}

func signFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case int64:
		return int64(cmpInt(x, 0)), nil
	case float64:
		switch {
		case x > 0:
			return int64(1), nil
		case x < 0:
			return int64(-1), nil
		}
		return int64(0), nil
	}
	return nil, typeErr("sign expects a number but got " + TypeName(a))
}

// ---- temporal constructors ----

func dateFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		return ParseDate(x)
	case Date:
		return x, nil
	case LocalDateTime:
		return DateOf(x.Time()), nil
	case DateTime:
		return DateOf(x.Time()), nil
	case map[string]Value:
		t, err := timeFromMap("date", x, false, false)
		if err != nil {
			return nil, err
		}
		return DateOf(t), nil
	}
	return nil, typeErr("date expects a string or map but got " + TypeName(a))
}

func localDateTimeFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		return ParseLocalDateTime(x)
	case LocalDateTime:
		return x, nil
	case Date:
		return NewLocalDateTime(x.Time()), nil
	case DateTime:
		return NewLocalDateTime(x.Time()), nil
	case map[string]Value:
		t, err := timeFromMap("localdatetime", x, true, false)
		if err != nil {
			return nil, err
		}
		return NewLocalDateTime(t), nil
	}
	return nil, typeErr("localdatetime expects a string or map but got " + TypeName(a))
}

func dateTimeFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		return ParseDateTime(x)
	case DateTime:
		return x, nil
	case Date:
		return NewDateTime(x.Time()), nil
	case LocalDateTime:
		return NewDateTime(x.Time()), nil
	case map[string]Value:
		if _, ok := x["epochMillis"]; ok {
			return epochDateTime(x, "epochMillis", int64(time.Millisecond))
		}
		if _, ok := x["epochSeconds"]; ok {
			return epochDateTime(x, "epochSeconds", int64(time.Second))
		}
		t, err := timeFromMap("datetime", x, true, true)
		if err != nil {
			return nil, err
		}
		return NewDateTime(t), nil
	}
	return nil, typeErr("datetime expects a string or map but got " + TypeName(a))
}

func epochDateTime(m map[string]Value, key string, unit int64) (Value, error) {
	for k := range m {
		if k != key && k != "nanosecond" {
			return nil, argErr("datetime: " + key + " cannot be combined with " + k)
		}
	}
	n, ok := m[key].(int64)
	if !ok {
		return nil, typeErr("datetime: " + key + " must be an integer")
	}
	var ns int64
	if v, ok := m["nanosecond"]; ok {
		if ns, ok = v.(int64); !ok {
			return nil, typeErr("datetime: nanosecond must be an integer")
		}
	}
	sec := n
	var extra int64
	if unit == int64(time.Millisecond) {
		sec = floorDiv(n, 1000)
		extra = (n - sec*1000) * 1e6
	}
	return NewDateTime(time.Unix(sec, extra+ns).UTC()), nil
}

// timeFromMap builds a time from {year, month, day, hour, minute, second,
// millisecond, microsecond, nanosecond, timezone}.
func timeFromMap(fn string, m map[string]Value, clock, zone bool) (time.Time, error) {
	get := func(k string, def int64, lo, hi int64) (int64, error) {
		v, ok := m[k]
		if !ok || v == nil {
			return def, nil
		}
		n, ok := v.(int64)
		if !ok {
			return 0, typeErr(fn + ": " + k + " must be an integer, not " + TypeName(v))
		}
		if n < lo || n > hi {
			return 0, argErr(fn + ": " + k + " " + itoa(int(n)) + " is out of range")
		}
		return n, nil
	}
	allowed := map[string]bool{"year": true, "month": true, "day": true}
	if clock {
		for _, k := range []string{"hour", "minute", "second", "millisecond", "microsecond", "nanosecond"} {
			allowed[k] = true
		}
	}
	if zone {
		allowed["timezone"] = true
	}
	for k := range m {
		if !allowed[k] {
			return time.Time{}, argErr(fn + ": unknown or unsupported component " + quoteName(k))
		}
	}
	if _, ok := m["year"]; !ok {
		return time.Time{}, argErr(fn + ": year is required")
	}
	y, err := get("year", 0, -999_999_999, 999_999_999)
	if err != nil {
		return time.Time{}, err
	}
	mo, err := get("month", 1, 1, 12)
	if err != nil {
		return time.Time{}, err
	}
	d, err := get("day", 1, 1, int64(daysIn(int(y), time.Month(mo))))
	if err != nil {
		return time.Time{}, err
	}
	var vals [6]int64
	lims := [6]int64{23, 59, 59, 999, 999, 999}
	for i, k := range []string{"hour", "minute", "second", "millisecond", "microsecond", "nanosecond"} {
		hi := lims[i]
		if k == "nanosecond" {
			if _, hasMs := m["millisecond"]; !hasMs {
				if _, hasUs := m["microsecond"]; !hasUs {
					hi = 999_999_999
				}
			}
		}
		if vals[i], err = get(k, 0, 0, hi); err != nil {
			return time.Time{}, err
		}
	}
	loc := time.UTC
	if tz, ok := m["timezone"]; ok && tz != nil {
		s, ok := tz.(string)
		if !ok {
			return time.Time{}, typeErr(fn + ": timezone must be a string")
		}
		p := isoScanner{s: s}
		l, ok := p.zone()
		if !ok {
			return time.Time{}, argErr(fn + ": invalid timezone " + quoteName(s))
		}
		loc = l
	}
	ns := vals[3]*1e6 + vals[4]*1e3 + vals[5]
	return time.Date(int(y), time.Month(mo), int(d), int(vals[0]), int(vals[1]), int(vals[2]), int(ns), loc), nil
}

func durationFn(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case string:
		return ParseDuration(x)
	case Duration:
		return x, nil
	case map[string]Value:
		if d, ok, err := exactDuration(x); ok || err != nil {
			return d, err
		}
		var acc durationAcc
		for _, k := range sortedKeys(x) {
			v := x[k]
			f, ok := toF(v)
			if !ok {
				return nil, typeErr("duration: " + k + " must be a number, not " + TypeName(v))
			}
			if err := acc.add(k, f); err != nil {
				return nil, err
			}
		}
		return acc.result()
	}
	return nil, typeErr("duration expects a string or map but got " + TypeName(a))
}

// exactDuration builds a duration from a map of integer components without
// going through floats; ok is false when some component is not an integer.
func exactDuration(m map[string]Value) (Value, bool, error) {
	var months, days, secs, nanos int64
	for k, v := range m {
		n, isInt := v.(int64)
		if !isInt {
			return nil, false, nil
		}
		var target *int64
		var unit int64
		switch k {
		case "years":
			target, unit = &months, 12
		case "months":
			target, unit = &months, 1
		case "weeks":
			target, unit = &days, 7
		case "days":
			target, unit = &days, 1
		case "hours":
			target, unit = &secs, 3600
		case "minutes":
			target, unit = &secs, 60
		case "seconds":
			target, unit = &secs, 1
		case "milliseconds":
			target, unit = &nanos, 1_000_000
		case "microseconds":
			target, unit = &nanos, 1000
		case "nanoseconds":
			target, unit = &nanos, 1
		default:
			return nil, false, argErr("duration: unknown component " + quoteName(k))
		}
		p, ok1 := mulInt(n, unit)
		sum, ok2 := addInt(*target, p)
		if !ok1 || !ok2 {
			return nil, false, overflowErr("duration")
		}
		*target = sum
	}
	d, err := normDuration(months, days, secs, nanos)
	if err != nil {
		return nil, false, err
	}
	return d, true, nil
}

func init() {
	def("duration.between", 2, 2, fn2(func(a, b Value) (Value, error) { return durationBetween("duration.between", a, b, 'b') }))
	def("duration.inMonths", 2, 2, fn2(func(a, b Value) (Value, error) { return durationBetween("duration.inMonths", a, b, 'm') }))
	def("duration.inDays", 2, 2, fn2(func(a, b Value) (Value, error) { return durationBetween("duration.inDays", a, b, 'd') }))
	def("duration.inSeconds", 2, 2, fn2(func(a, b Value) (Value, error) { return durationBetween("duration.inSeconds", a, b, 's') }))
}

// wallTimes returns the two temporal values as comparable wall-clock times:
// both of the same type, date-times expressed in the first one's offset.
func wallTimes(fn string, a, b Value) (time.Time, time.Time, error) {
	switch x := a.(type) {
	case Date:
		if y, ok := b.(Date); ok {
			return x.Time(), y.Time(), nil
		}
	case LocalDateTime:
		if y, ok := b.(LocalDateTime); ok {
			return x.Time(), y.Time(), nil
		}
	case DateTime:
		if y, ok := b.(DateTime); ok {
			loc := x.Time().Location()
			return x.Time(), y.Time().In(loc), nil
		}
	}
	return time.Time{}, time.Time{}, typeErr(fn + " expects two temporal values of the same type but got " + TypeName(a) + " and " + TypeName(b))
}

// durationBetween computes the duration from a to b: mode 'b' whole months,
// then days, then seconds (duration.between); 'm' months only; 'd' days only;
// 's' seconds and nanoseconds only. Partial units are truncated toward zero.
func durationBetween(fn string, a, b Value, mode byte) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	t1, t2, err := wallTimes(fn, a, b)
	if err != nil {
		return nil, err
	}
	neg := t2.Before(t1)
	if neg {
		t1, t2 = t2, t1
	}
	var months, days, secs, nanos int64
	if mode == 'b' || mode == 'm' {
		y1, m1, _ := t1.Date()
		y2, m2, _ := t2.Date()
		months = int64(y2-y1)*12 + int64(m2-m1)
		// As java.time: a month counts only once the day of month and
		// clock of t1 are reached in t2's month.
		if months > 0 && dayClock(t2) < dayClock(t1) {
			months--
		}
		t1, _ = addMonthsClamped(t1, months)
	}
	if mode == 'b' || mode == 'd' {
		days = int64(t2.Sub(t1) / (24 * time.Hour))
		if t2.Sub(t1) == math.MaxInt64 { // beyond time.Duration: count by calendar
			days = DateOf(t2).days - DateOf(t1).days
			if t1.AddDate(0, 0, int(days)).After(t2) {
				days--
			}
		}
		t1 = t1.AddDate(0, 0, int(days))
	}
	if mode == 'b' || mode == 's' {
		secs = t2.Unix() - t1.Unix()
		nanos = int64(t2.Nanosecond() - t1.Nanosecond())
	}
	if neg {
		months, days, secs, nanos = -months, -days, -secs, -nanos
	}
	return normDuration(months, days, secs, nanos)
}

// dayClock orders instants within a month: day of month, then clock.
func dayClock(t time.Time) int64 {
	h, m, s := t.Clock()
	return ((int64(t.Day())*24+int64(h))*60+int64(m))*60*1e9 + int64(s)*1e9 + int64(t.Nanosecond())
}

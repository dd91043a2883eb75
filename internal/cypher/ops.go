package cypher

import (
	"math"
	"math/bits"
	"strconv"
	"strings"
)

func addInt(a, b int64) (int64, bool) {
	c := a + b
	return c, (c > a) == (b > 0)
}

func subInt(a, b int64) (int64, bool) {
	c := a - b
	return c, (c < a) == (b > 0)
}

func mulInt(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	hi, lo := bits.Mul64(uint64(absU(a)), uint64(absU(b)))
	neg := (a < 0) != (b < 0)
	if hi != 0 {
		return 0, false
	}
	if neg {
		if lo > 1<<63 {
			return 0, false
		}
		return int64(-lo), true // -lo wraps correctly for lo == 1<<63
	}
	if lo >= 1<<63 {
		return 0, false
	}
	return int64(lo), true
}

func absU(a int64) uint64 {
	if a < 0 {
		return uint64(-a) // MinInt64 wraps to 1<<63, as wanted
	}
	return uint64(a)
}

// toF converts a number to float64; ok is false for non-numbers.
func toF(v Value) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func isNumber(v Value) bool {
	switch v.(type) {
	case int64, float64:
		return true
	}
	return false
}

func opAdd(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			c, ok := addInt(x, y)
			if !ok {
				return nil, overflowErr("+")
			}
			return c, nil
		case float64:
			return float64(x) + y, nil
		case string:
			return formatNumber(x) + y, nil
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return x + float64(y), nil
		case float64:
			return x + y, nil
		case string:
			return formatNumber(x) + y, nil
		}
	case string:
		switch y := b.(type) {
		case string:
			return x + y, nil
		case int64, float64:
			return x + formatNumber(y), nil
		}
	case []Value:
		if y, ok := b.([]Value); ok {
			out := make([]Value, 0, len(x)+len(y))
			return append(append(out, x...), y...), nil
		}
		out := make([]Value, 0, len(x)+1)
		return append(append(out, x...), b), nil
	case Duration:
		switch y := b.(type) {
		case Duration:
			return addDurations(x, y)
		case Date, LocalDateTime, DateTime:
			return addTemporal(y, x, false)
		}
	case Date, LocalDateTime, DateTime:
		if y, ok := b.(Duration); ok {
			return addTemporal(a, y, false)
		}
	}
	if y, ok := b.([]Value); ok {
		out := make([]Value, 0, len(y)+1)
		return append(append(out, a), y...), nil
	}
	return nil, binTypeErr("add", a, b)
}

func opSub(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			c, ok := subInt(x, y)
			if !ok {
				return nil, overflowErr("-")
			}
			return c, nil
		case float64:
			return float64(x) - y, nil
		}
	case float64:
		if y, ok := toF(b); ok {
			return x - y, nil
		}
	case Duration:
		if y, ok := b.(Duration); ok {
			n, err := negDuration(y)
			if err != nil {
				return nil, err
			}
			return addDurations(x, n)
		}
	case Date, LocalDateTime, DateTime:
		if y, ok := b.(Duration); ok {
			return addTemporal(a, y, true)
		}
	}
	return nil, binTypeErr("subtract", a, b)
}

func opMul(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			c, ok := mulInt(x, y)
			if !ok {
				return nil, overflowErr("*")
			}
			return c, nil
		case float64:
			return float64(x) * y, nil
		case Duration:
			return mulDuration(y, x, false)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return x * float64(y), nil
		case float64:
			return x * y, nil
		case Duration:
			return mulDuration(y, x, false)
		}
	case Duration:
		if isNumber(b) {
			return mulDuration(x, b, false)
		}
	}
	return nil, binTypeErr("multiply", a, b)
}

func opDiv(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			if y == 0 {
				return nil, divZeroErr("division")
			}
			if x == math.MinInt64 && y == -1 {
				return nil, overflowErr("/")
			}
			return x / y, nil
		case float64:
			return float64(x) / y, nil
		}
	case float64:
		if y, ok := toF(b); ok {
			return x / y, nil
		}
	case Duration:
		if isNumber(b) {
			return mulDuration(x, b, true)
		}
	}
	return nil, binTypeErr("divide", a, b)
}

func opMod(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			if y == 0 {
				return nil, divZeroErr("modulo")
			}
			if y == -1 {
				return int64(0), nil
			}
			return x % y, nil
		case float64:
			return math.Mod(float64(x), y), nil
		}
	case float64:
		if y, ok := toF(b); ok {
			return math.Mod(x, y), nil
		}
	}
	return nil, binTypeErr("compute the modulo of", a, b)
}

func opPow(a, b Value) (Value, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	x, ok1 := toF(a)
	y, ok2 := toF(b)
	if !ok1 || !ok2 {
		return nil, binTypeErr("raise", a, b)
	}
	return math.Pow(x, y), nil
}

func opNeg(a Value) (Value, error) {
	switch x := a.(type) {
	case nil:
		return nil, nil
	case int64:
		if x == math.MinInt64 {
			return nil, overflowErr("unary -")
		}
		return -x, nil
	case float64:
		return -x, nil
	case Duration:
		return negDuration(x)
	}
	return nil, typeErr("cannot negate " + TypeName(a))
}

// formatNumber renders a number as Cypher's toString does: integers in
// decimal, floats like Java's Double.toString (1.0, 0.1, 1.0E7, NaN,
// Infinity).
func formatNumber(v Value) string {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return formatFloat(x)
	}
	return ""
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	abs := math.Abs(f)
	if abs == 0 || (abs >= 1e-3 && abs < 1e7) {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsRune(s, '.') {
			s += ".0"
		}
		return s
	}
	s := strconv.FormatFloat(f, 'E', -1, 64) // 1.5E+07
	mant, exp, _ := strings.Cut(s, "E")
	if !strings.ContainsRune(mant, '.') {
		mant += ".0"
	}
	neg := strings.HasPrefix(exp, "-")
	exp = strings.TrimLeft(exp, "+-")
	exp = strings.TrimLeft(exp, "0")
	if neg {
		exp = "-" + exp
	}
	return mant + "E" + exp
}

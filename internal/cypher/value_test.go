package cypher

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// sampleValues covers every type, with the tricky numbers.
func sampleValues() []Value {
	return []Value{
		nil, true, false,
		int64(0), int64(1), int64(-1), int64(math.MaxInt64), int64(math.MinInt64),
		0.0, math.Copysign(0, -1), 1.0, -1.0, 0.5, 1e300, -1e300, math.Inf(1), math.Inf(-1), math.NaN(),
		twoTo63, -twoTo63, 9007199254740993.0, int64(9007199254740993),
		"", "a", "b", "ab", "é",
		l(), l(int64(1)), l(1.0), l(int64(1), int64(2)), l(nil), l("a", l(int64(1))),
		map[string]Value{}, map[string]Value{"a": int64(1)}, map[string]Value{"a": 1.0},
		map[string]Value{"a": int64(1), "b": int64(2)}, map[string]Value{"b": int64(1)},
		NewDate(2020, 1, 1), NewDate(1969, 12, 31),
		NewLocalDateTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)),
		NewLocalDateTime(time.Date(2020, 1, 1, 0, 0, 0, 1, time.UTC)),
		NewDateTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)),
		NewDateTime(time.Date(2020, 1, 1, 1, 0, 0, 0, time.FixedZone("", 3600))), // same instant
		NewDateTime(time.Date(2020, 1, 1, 0, 0, 1, 0, time.UTC)),
		Duration{Days: 1}, Duration{Seconds: 86400}, Duration{Months: 1}, Duration{Nanos: 5},
		nodeN, nodeM, relR, prevN,
	}
}

func TestCompareTotalOrder(t *testing.T) {
	vs := sampleValues()
	for _, a := range vs {
		if Compare(a, a) != 0 {
			t.Errorf("Compare(%v, itself) != 0", a)
		}
		for _, b := range vs {
			ab, ba := Compare(a, b), Compare(b, a)
			if ab != -ba {
				t.Errorf("antisymmetry: Compare(%#v, %#v)=%d, reverse %d", a, b, ab, ba)
			}
			ka, kb := AppendKey(nil, a), AppendKey(nil, b)
			if (ab == 0) != bytes.Equal(ka, kb) {
				t.Errorf("Compare(%#v, %#v)=%d but keys equal=%v", a, b, ab, bytes.Equal(ka, kb))
			}
			for _, c := range vs {
				if ab <= 0 && Compare(b, c) <= 0 && Compare(a, c) > 0 {
					t.Errorf("transitivity: %#v <= %#v <= %#v but a > c", a, b, c)
				}
			}
		}
	}
}

func TestCompareOrderAcrossTypes(t *testing.T) {
	ordered := []Value{
		map[string]Value{"a": int64(1)}, nodeN, relR, l(int64(1)),
		NewDateTime(time.Unix(0, 0)), NewLocalDateTime(time.Unix(0, 0)), NewDate(2000, 1, 1), Duration{Days: 1},
		"z", true, int64(-5), 0.5, int64(1), math.Inf(1), math.NaN(), nil,
	}
	for i := 0; i+1 < len(ordered); i++ {
		if Compare(ordered[i], ordered[i+1]) >= 0 {
			t.Errorf("want %#v < %#v", ordered[i], ordered[i+1])
		}
	}
	for _, c := range []struct {
		a, b Value
		want int
	}{
		{int64(1), 1.0, 0},
		{0.0, math.Copysign(0, -1), 0},
		{int64(9007199254740993), 9007199254740992.0, 1},
		{int64(math.MaxInt64), twoTo63, -1},
		{int64(math.MinInt64), -twoTo63, 0},
		{int64(2), 1.5, 1},
		{int64(-2), -1.5, -1},
		{"a", "b", -1},
		{false, true, -1},
		{l(int64(1), int64(2)), l(int64(1), int64(3)), -1},
		{l(int64(1)), l(int64(1), int64(0)), -1},
		{map[string]Value{"a": int64(1)}, map[string]Value{"a": int64(2)}, -1},
		{map[string]Value{"a": int64(9)}, map[string]Value{"b": int64(0)}, -1},
		{Duration{Months: 1}, Duration{Days: 40}, 1},
	} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%#v, %#v) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestAppendKeyCanonical(t *testing.T) {
	same := [][2]Value{
		{int64(1), 1.0},
		{int64(0), math.Copysign(0, -1)},
		{math.NaN(), math.Float64frombits(0x7ff8000000000001)},
		{int64(math.MinInt64), -twoTo63},
		{l(int64(1), l(2.0)), l(1.0, l(int64(2)))},
		{map[string]Value{"a": int64(1), "b": "x", "c": nil}, map[string]Value{"c": nil, "b": "x", "a": 1.0}},
		{NewDateTime(time.Date(2020, 1, 1, 1, 0, 0, 0, time.FixedZone("", 3600))), NewDateTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))},
	}
	for _, p := range same {
		if !bytes.Equal(AppendKey(nil, p[0]), AppendKey(nil, p[1])) {
			t.Errorf("keys of %#v and %#v differ", p[0], p[1])
		}
	}
	differ := [][2]Value{
		{int64(1), "1"},
		{int64(1), true},
		{nil, false},
		{0.5, int64(0)},
		{twoTo63, int64(math.MaxInt64)},
		{math.Inf(1), math.NaN()},
		{"", l()},
		{l(), map[string]Value{}},
		{l("ab"), l("a", "b")},
		{map[string]Value{"a": "b"}, map[string]Value{"ab": ""}},
		{nodeN, relR},
		{nodeN, "orders:1"},
		{Duration{Days: 1}, Duration{Seconds: 86400}},
		{NewDate(1970, 1, 1), NewLocalDateTime(time.Unix(0, 0))},
	}
	for _, p := range differ {
		if bytes.Equal(AppendKey(nil, p[0]), AppendKey(nil, p[1])) {
			t.Errorf("keys of %#v and %#v are equal", p[0], p[1])
		}
	}
	// Tuples: concatenated keys stay unambiguous thanks to length prefixes.
	k1 := AppendKey(AppendKey(nil, "a"), "bc")
	k2 := AppendKey(AppendKey(nil, "ab"), "c")
	if bytes.Equal(k1, k2) {
		t.Error("tuple keys ('a','bc') and ('ab','c') collide")
	}
	// AppendKey appends: the prefix is preserved.
	if k := AppendKey([]byte("pre"), int64(1)); !bytes.HasPrefix(k, []byte("pre")) {
		t.Error("AppendKey lost the prefix")
	}
}

func TestEqual(t *testing.T) {
	for _, c := range []struct {
		a, b         Value
		eq, wantNull bool
	}{
		{nil, nil, false, true},
		{int64(1), nil, false, true},
		{int64(1), 1.0, true, false},
		{math.NaN(), math.NaN(), false, false},
		{int64(1), "1", false, false},
		{l(int64(1), nil), l(int64(1), nil), false, true},
		{l(int64(1), nil), l(int64(2), nil), false, false},
		{map[string]Value{"a": nil}, map[string]Value{"a": nil}, false, true},
		{map[string]Value{"a": int64(1)}, map[string]Value{"b": int64(1)}, false, false},
		{nodeN, prevN, true, false}, // same element id
		{nodeN, relR, false, false},
		{Duration{Days: 1}, Duration{Days: 1}, true, false},
		{NewDate(2020, 1, 1), NewLocalDateTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), false, false},
	} {
		eq, isNull := Equal(c.a, c.b)
		if eq != c.eq || isNull != c.wantNull {
			t.Errorf("Equal(%#v, %#v) = %v,%v want %v,%v", c.a, c.b, eq, isNull, c.eq, c.wantNull)
		}
	}
	if less, isNull := Less(int64(1), 2.0); !less || isNull {
		t.Error("Less(1, 2.0)")
	}
	if _, isNull := Less(int64(1), "a"); !isNull {
		t.Error("Less(1, 'a') must be null")
	}
}

func TestFromJSON(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(`{"i": 42, "big": 9223372036854775808, "f": 1.5, "e": 1e3, "neg": -7,
		"one": 1.0, "s": "x", "b": true, "n": null, "l": [1, [2.5]], "m": {"k": 3}}`))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	v, err := FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Value{
		"i": int64(42), "big": 9223372036854775808.0, "f": 1.5, "e": 1000.0, "neg": int64(-7),
		"one": 1.0, "s": "x", "b": true, "n": nil, "l": l(int64(1), l(2.5)), "m": map[string]Value{"k": int64(3)},
	}
	if !sameValue(v, want) {
		t.Fatalf("FromJSON = %#v", v)
	}
	if !IsValue(v) {
		t.Error("IsValue false for converted JSON")
	}
	// Without UseNumber floats stay floats.
	var plain any
	_ = json.Unmarshal([]byte(`[1, 2.5]`), &plain)
	if v, _ := FromJSON(plain); !sameValue(v, l(1.0, 2.5)) {
		t.Errorf("plain: %#v", v)
	}
	if _, err := FromJSON(json.Number("x1")); !isErr(err, ErrInvalidValue) {
		t.Errorf("bad number: %v", err)
	}
	if _, err := FromJSON(struct{}{}); !isErr(err, ErrInvalidValue) {
		t.Errorf("struct: %v", err)
	}
	if _, err := FromJSON([]any{map[string]any{"x": complex(1, 1)}}); !isErr(err, ErrInvalidValue) {
		t.Errorf("nested complex: %v", err)
	}
	if IsValue(l(int32(1))) || IsValue(map[string]Value{"a": struct{}{}}) {
		t.Error("IsValue accepted a non-value")
	}
}

func TestToJSON(t *testing.T) {
	v := map[string]Value{
		"d": NewDate(2020, 1, 2), "nan": math.NaN(), "inf": math.Inf(-1), "n": nodeM,
		"l": l(int64(1), Duration{Days: 2}), "dt": NewDateTime(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
	b, err := json.Marshal(ToJSON(v))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"d":"2020-01-02","dt":"2020-01-02T03:04:05Z","inf":"-Infinity","l":[1,"P2D"],"n":{"id":7,"name":"Ann"},"nan":"NaN"}`
	if string(b) != want {
		t.Errorf("ToJSON = %s\nwant     %s", b, want)
	}
}

func TestTypeNames(t *testing.T) {
	cases := []struct {
		v    Value
		want string
	}{
		{int64(1), "integer"}, {1.0, "float"}, {"", "string"}, {nil, "null"}, {true, "boolean"},
		{l(), "list"}, {map[string]Value{}, "map"}, {nodeN, "node"}, {relR, "relation"},
		{NewDate(1, 1, 1), "date"}, {Duration{}, "duration"}, {int32(1), "invalid"},
	}
	for _, c := range cases {
		if got := TypeName(c.v); got != c.want {
			t.Errorf("TypeName(%#v) = %s, want %s", c.v, got, c.want)
		}
	}
}

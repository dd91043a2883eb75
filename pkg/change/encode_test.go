package change

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sameAsEncodingJSON fails the test unless AppendJSON and Encode produce
// exactly json.Marshal's bytes for e, or all three fail. It returns the
// encoding error, if any.
func sameAsEncodingJSON(t *testing.T, e *Envelope) error {
	t.Helper()
	want, wantErr := json.Marshal(e)

	prefix := []byte("prefix:")
	got, err := e.AppendJSON(append(make([]byte, 0, 8), prefix...))
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("AppendJSON error %v, json.Marshal error %v", err, wantErr)
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendJSON lost the bytes before it: %q", got)
	}
	if err != nil {
		if len(got) != len(prefix) {
			t.Fatalf("AppendJSON failed but left %q after the prefix", got[len(prefix):])
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("AppendJSON error does not wrap ErrInvalid: %v", err)
		}
	} else if !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("AppendJSON differs from json.Marshal\n got: %q\nwant: %q", got[len(prefix):], want)
	}

	enc, encErr := e.Encode()
	if (encErr != nil) != (wantErr != nil) {
		t.Fatalf("Encode error %v, json.Marshal error %v", encErr, wantErr)
	}
	if encErr == nil && !bytes.Equal(enc, want) {
		t.Fatalf("Encode differs from json.Marshal\n got: %q\nwant: %q", enc, want)
	}
	return err
}

// baseEnvelope is a valid node insert with a few properties.
func baseEnvelope() *Envelope {
	return &Envelope{
		Op:     OpInsert,
		Source: "pg1",
		Element: Element{
			Type:       TypeNode,
			ID:         "orders:42",
			Labels:     []string{"orders"},
			Properties: map[string]any{"id": json.Number("42"), "note": "hello"},
		},
		TsMs:     1764230400123,
		Position: "00000000016B3C48/00000003",
	}
}

// withProps is baseEnvelope with the given properties.
func withProps(props map[string]any) *Envelope {
	e := baseEnvelope()
	e.Element.Properties = props
	return e
}

// trickyStrings exercise every escaping rule of encoding/json.
var trickyStrings = []string{
	"",
	"plain",
	`quote " and backslash \ and slash /`,
	"controls \x00\x01\x07\b\t\n\v\f\r\x1b\x1f and DEL \x7f",
	"<script>alert('x') & co</script>",
	"line\u2028separator and paragraph\u2029separator",
	"\u2027\u202a neighbours of the separators",
	"invalid utf-8: \xff \xc3\x28 \xe2\x82 \xed\xa0\x80 \xf0\x9f\x98",
	"truncated at the end \xe2\x80",
	"emoji 😀👍🏽 and 日本語 and é",
	"\ufffd a real replacement character",
	"\xe2\x80\xa8 raw separator bytes",
}

func corpus() map[string]*Envelope {
	c := map[string]*Envelope{}
	ops := []Op{OpInsert, OpUpdate, OpDelete, OpTruncate, "", "weird<op>"}
	for _, op := range ops {
		e := baseEnvelope()
		e.Op = op
		c["node "+string(op)] = e

		r := baseEnvelope()
		r.Op = op
		r.Element = Element{Type: TypeRelation, ID: "r:1", Labels: []string{"BOUGHT"},
			Properties: map[string]any{"qty": json.Number("3")}, From: "customers:1", To: "orders:42"}
		c["relation "+string(op)] = r
	}

	e := baseEnvelope()
	e.Element.Properties = nil
	c["nil properties"] = e
	e = baseEnvelope()
	e.Element.Properties = map[string]any{}
	c["empty properties"] = e
	e = baseEnvelope()
	e.Element.Labels = nil
	c["nil labels"] = e
	e = baseEnvelope()
	e.Element.Labels = []string{}
	c["empty labels"] = e
	e = baseEnvelope()
	e.Element.ID = ""
	e.Op = OpTruncate
	e.Element.Labels = []string{"orders", "archive"}
	e.Element.Properties = nil
	c["truncate without id"] = e
	c["zero envelope"] = &Envelope{}
	e = baseEnvelope()
	e.Position = ""
	e.TsMs = 0
	c["no position, ts 0"] = e
	e = baseEnvelope()
	e.TsMs = math.MinInt64
	c["ts min"] = e
	e = baseEnvelope()
	e.TsMs = math.MaxInt64
	c["ts max"] = e
	e = baseEnvelope()
	e.Element.From, e.Element.To = "a", ""
	c["from only"] = e
	e = baseEnvelope()
	e.Element.From, e.Element.To = "", "b"
	c["to only"] = e

	e = baseEnvelope()
	e.Op = OpUpdate
	e.Before = map[string]any{"id": json.Number("42"), "note": "old", "gone": nil}
	e.Unchanged = []string{"blob", "doc"}
	c["update with before and unchanged"] = e
	e = baseEnvelope()
	e.Before = map[string]any{}
	e.Unchanged = []string{}
	c["empty before and unchanged"] = e
	e = baseEnvelope()
	e.Before = map[string]any{"x": nil}
	c["before with null"] = e

	for i, s := range trickyStrings {
		e := baseEnvelope()
		e.Source = s
		e.Element.ID = s
		e.Element.Labels = []string{s, "x"}
		e.Element.From = s
		e.Element.To = s
		e.Element.Properties = map[string]any{s: s, "k" + s: []any{s}}
		e.Before = map[string]any{s: map[string]any{s: s}}
		e.Unchanged = []string{s}
		e.Position = s
		c[fmt.Sprintf("tricky string %d", i)] = e
	}

	numbers := map[string]any{
		"int":        json.Number("42"),
		"negative":   json.Number("-7"),
		"numeric":    json.Number("12345678901234567890.000000001"),
		"exp":        json.Number("1.5e300"),
		"EXP":        json.Number("-1E-5"),
		"exp plus":   json.Number("2e+10"),
		"zero":       json.Number("0"),
		"neg zero":   json.Number("-0.0"),
		"empty":      json.Number(""),
		"f64 1e21":   1e21,
		"f64 1e20":   1e20,
		"f64 1e-7":   1e-7,
		"f64 1e-6":   1e-6,
		"f64 -0":     math.Copysign(0, -1),
		"f64 0":      0.0,
		"f64 0.1":    0.1,
		"f64 frac":   123456789.123456789,
		"f64 max":    math.MaxFloat64,
		"f64 min":    math.SmallestNonzeroFloat64,
		"f64 neg":    -2.5e-300,
		"f64 1e100":  1e100,
		"f32 0.1":    float32(0.1),
		"f32 1e21":   float32(1e21),
		"f32 1e20":   float32(1e20),
		"f32 1e-7":   float32(1e-7),
		"f32 1e-6":   float32(1e-6),
		"f32 max":    float32(math.MaxFloat32),
		"f32 min":    float32(math.SmallestNonzeroFloat32),
		"f32 -0":     float32(math.Copysign(0, -1)),
		"f32 third":  float32(1.0 / 3),
		"int64 min":  int64(math.MinInt64),
		"int64 max":  int64(math.MaxInt64),
		"uint64 max": uint64(math.MaxUint64),
		"int -1":     -1,
		"int8":       int8(math.MinInt8),
		"int16":      int16(math.MaxInt16),
		"int32":      int32(math.MinInt32),
		"uint":       uint(7),
		"uint8":      uint8(255),
		"uint16":     uint16(65535),
		"uint32":     uint32(math.MaxUint32),
		"uintptr":    uintptr(9),
		"true":       true,
		"false":      false,
		"null":       nil,
	}
	c["numbers"] = withProps(numbers)
	for k, v := range numbers {
		c["number "+k] = withProps(map[string]any{"v": v})
	}

	raws := map[string]json.RawMessage{
		"object with whitespace": json.RawMessage(" {\n\t\"a\" : [1, 2 ,\"x y\"] ,\r\n \"b\":{ }  } \n"),
		"html in raw strings":    json.RawMessage(`{"h": "<b>&amp;</b>", "k<": 1}`),
		"separators in raw":      json.RawMessage("[\"\u2028\", \"a\u2029b\"]"),
		"escapes in raw":         json.RawMessage(`"\u003c\n\"\\ \ud83d\ude00"`),
		"invalid utf-8 in raw":   json.RawMessage("\"\xff\xfe\""),
		"scalar":                 json.RawMessage("  true  "),
		"number":                 json.RawMessage("-1.5e3"),
		"nil":                    json.RawMessage(nil),
		"empty":                  json.RawMessage{},
		"only space":             json.RawMessage("  "),
		"invalid":                json.RawMessage(`{"a":}`),
		"trailing data":          json.RawMessage(`1 2`),
		"control in string":      json.RawMessage("\"a\x01b\""),
		"bad escape":             json.RawMessage(`"\x"`),
		"unclosed":               json.RawMessage(`[1,2`),
	}
	for k, v := range raws {
		c["raw "+k] = withProps(map[string]any{"doc": v, "after": "x"})
	}

	invalidNumbers := []string{"1.", ".5", "01", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "1 ", " 1", "1.5e3.2", "--1", "1_000"}
	for _, n := range invalidNumbers {
		c["invalid number "+n] = withProps(map[string]any{"n": json.Number(n)})
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		c[fmt.Sprintf("float64 %v", f)] = withProps(map[string]any{"f": f})
		c[fmt.Sprintf("float32 %v", f)] = withProps(map[string]any{"f": float32(f)})
		e := baseEnvelope()
		e.Before = map[string]any{"deep": []any{map[string]any{"f": f}}}
		c[fmt.Sprintf("before float %v", f)] = e
	}

	c["nested"] = withProps(map[string]any{
		"list":        []any{json.Number("1"), "two", nil, true, []any{}, map[string]any{}, []any(nil), map[string]any(nil)},
		"matrix":      []any{[]any{json.Number("1"), json.Number("2")}, []any{json.Number("3"), json.Number("4")}},
		"obj":         map[string]any{"z": 1, "a": map[string]any{"y": []any{"<>"}, "b": nil}},
		"empty list":  []any{},
		"empty obj":   map[string]any{},
		"nil list":    []any(nil),
		"nil obj":     map[string]any(nil),
		"raw in list": []any{json.RawMessage(` { "a" : 1 } `)},
	})

	// Key order: byte-wise, as encoding/json sorts.
	keys := map[string]any{}
	for _, k := range []string{"b", "a", "B", "A", "é", "e", "\u2028", "<", "", "a\x00", "aa", "a ", "😀", "\xff", "Z", "_", "10", "9"} {
		keys[k] = k
	}
	c["key order"] = withProps(keys)

	// Many keys in nested maps: the key stack grows while outer keys are in
	// use.
	wide := map[string]any{}
	for i := range 60 {
		inner := map[string]any{}
		for j := range 60 {
			inner[fmt.Sprintf("k%03d", 59-j)] = j
		}
		wide[fmt.Sprintf("outer%02d", i)] = inner
	}
	c["wide nested maps"] = withProps(wide)

	// Types without a fast path go through json.Marshal.
	type named string
	type withMarshaler struct{ json.RawMessage }
	zero := 0
	c["fallback types"] = withProps(map[string]any{
		"strings":   []string{"a", "<b>"},
		"bytes":     []byte("bytes\x00"),
		"nil bytes": []byte(nil),
		"time":      time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC),
		"struct":    struct{ A, B int }{1, 2},
		"named":     named("n<"),
		"nil ptr":   (*int)(nil),
		"ptr":       &zero,
		"int map":   map[int]string{2: "b", 10: "a"},
		"any map":   map[string]string{"x": "&"},
		"marshaler": withMarshaler{json.RawMessage(` { "m" : "<" } `)},
		"duration":  time.Second,
		"array":     [2]any{1, "x"},
	})
	c["fallback chan"] = withProps(map[string]any{"c": make(chan int)})
	c["fallback func"] = withProps(map[string]any{"f": func() {}})
	c["fallback complex"] = withProps(map[string]any{"c": complex(1, 2)})
	c["fallback NaN in struct"] = withProps(map[string]any{"s": struct{ F float64 }{math.NaN()}})

	// Deeper than the fast path: the rest goes through json.Marshal.
	var deep any = "bottom"
	for range 1500 {
		deep = []any{deep, map[string]any{"k": json.Number("1")}}
	}
	c["deep"] = withProps(map[string]any{"deep": deep})

	cyclicMap := map[string]any{"a": 1}
	cyclicMap["self"] = cyclicMap
	c["cyclic map"] = withProps(map[string]any{"m": cyclicMap})
	cyclicList := []any{nil, 1}
	cyclicList[0] = cyclicList
	c["cyclic list"] = withProps(map[string]any{"l": cyclicList})
	return c
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for name, e := range corpus() {
		t.Run(name, func(t *testing.T) {
			sameAsEncodingJSON(t, e)
		})
	}
}

// Every kind of failure happens where json.Marshal fails and names the
// failing property.
func TestAppendJSONErrorsNameTheProperty(t *testing.T) {
	cases := []struct {
		name string
		e    *Envelope
		want []string
	}{
		{"NaN", withProps(map[string]any{"price": math.NaN()}), []string{`element.properties["price"]`, "NaN"}},
		{"float32 Inf", withProps(map[string]any{"ratio": float32(math.Inf(-1))}), []string{`element.properties["ratio"]`, "-Inf"}},
		{"invalid number", withProps(map[string]any{"n": json.Number("1.")}), []string{`element.properties["n"]`, `invalid number literal "1."`}},
		{"invalid raw", withProps(map[string]any{"doc": json.RawMessage(`{"a":}`)}), []string{`element.properties["doc"]`, "json.RawMessage", "invalid character"}},
		{"empty raw", withProps(map[string]any{"doc": json.RawMessage{}}), []string{`element.properties["doc"]`, "unexpected end of JSON input"}},
		{"nested", withProps(map[string]any{"a": map[string]any{"b\"": []any{"ok", 1, math.Inf(1)}}}), []string{`element.properties["a"]["b\""][2]`, "+Inf"}},
		{"fallback", withProps(map[string]any{"ch": make(chan int)}), []string{`element.properties["ch"]`, "unsupported type: chan int"}},
		{"before", func() *Envelope {
			e := baseEnvelope()
			e.Before = map[string]any{"x": []any{json.Number("x")}}
			return e
		}(), []string{`before["x"][0]`, "invalid number literal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := sameAsEncodingJSON(t, c.e)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	// The underlying encoding/json error types stay reachable.
	_, err := withProps(map[string]any{"f": math.NaN()}).Encode()
	var uve *json.UnsupportedValueError
	if !errors.As(err, &uve) || uve.Str != "NaN" {
		t.Errorf("NaN error %v is not a *json.UnsupportedValueError for NaN", err)
	}
	_, err = withProps(map[string]any{"r": json.RawMessage("{")}).Encode()
	var me *json.MarshalerError
	if !errors.As(err, &me) {
		t.Errorf("raw message error %v is not a *json.MarshalerError", err)
	}
}

// Valid envelopes of the value types Decode produces come back unchanged.
func TestAppendJSONRoundTrip(t *testing.T) {
	envs := []*Envelope{baseEnvelope()}
	e := baseEnvelope()
	e.Op = OpUpdate
	e.Element.Properties = map[string]any{
		"id": json.Number("42"), "total": json.Number("12345678901234567890.000000001"),
		"paid": true, "note": "<b>\u2028 \"quoted\" 😀", "gone": nil,
		"tags": []any{"a", json.Number("1"), nil, []any{false}}, "doc": map[string]any{"k": map[string]any{}},
	}
	e.Before = map[string]any{"id": json.Number("42"), "total": json.Number("1e-7")}
	e.Unchanged = []string{"blob"}
	envs = append(envs, e)
	e = baseEnvelope()
	e.Element = Element{Type: TypeRelation, ID: "r", Labels: []string{"R"}, From: "a", To: "b",
		Properties: map[string]any{"w": json.Number("-0.5")}}
	envs = append(envs, e)
	e = baseEnvelope()
	e.Op = OpTruncate
	e.Element = Element{Type: TypeNode, Labels: []string{"orders"}}
	envs = append(envs, e)
	for _, c := range corpus() {
		if _, err := json.Marshal(c); err == nil && c.Validate() == nil {
			envs = append(envs, c)
		}
	}

	for i, e := range envs {
		data, err := e.AppendJSON(nil)
		if err != nil {
			t.Fatalf("envelope %d: %v", i, err)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("envelope %d: decoding %s: %v", i, data, err)
		}
		if i < 4 && !reflect.DeepEqual(got, e) {
			t.Fatalf("envelope %d changed in the round trip:\n got %#v\nwant %#v", i, got, e)
		}
		again, err := got.AppendJSON(nil)
		if err != nil {
			t.Fatalf("envelope %d: re-encoding: %v", i, err)
		}
		want, _ := json.Marshal(got)
		if !bytes.Equal(again, want) {
			t.Fatalf("envelope %d: re-encoding differs from json.Marshal\n got %s\nwant %s", i, again, want)
		}
	}
}

// The pooled scratch state is safe when many goroutines encode at once.
func TestEncodeConcurrent(t *testing.T) {
	c := corpus()
	envs := []*Envelope{c["numbers"], c["wide nested maps"], c["nested"], c["tricky string 7"], c["raw html in raw strings"]}
	wants := make([][]byte, len(envs))
	for i, e := range envs {
		var err error
		if wants[i], err = json.Marshal(e); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(envs)
				got, err := envs[i].Encode()
				if err == nil && !bytes.Equal(got, wants[i]) {
					err = fmt.Errorf("envelope %d: got %q", i, got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

type panickingMarshaler struct{}

func (panickingMarshaler) MarshalJSON() ([]byte, error) { panic("marshaler panics") }

// A panic out of a value's MarshalJSON propagates, as from json.Marshal, and
// leaves no stale state behind in the pooled scratch space.
func TestEncodeAfterPanickingMarshaler(t *testing.T) {
	bad := withProps(map[string]any{"a": map[string]any{"b": map[string]any{"c": panickingMarshaler{}, "d": 1}}})
	for range 3 {
		func() {
			defer func() {
				if r := recover(); r != "marshaler panics" {
					t.Fatalf("recovered %v, want the marshaler's panic", r)
				}
			}()
			_, _ = bad.Encode()
		}()
	}
	for name, e := range corpus() {
		t.Run(name, func(t *testing.T) { sameAsEncodingJSON(t, e) })
	}
}

func FuzzAppendJSONMatchesEncodingJSON(f *testing.F) {
	f.Add("insert", "orders:42", "text <&> \u2028", "12345678901234567890.000000001", 0.1, int64(42), []byte(` {"a" : [1, "<"]} `), uint8(0))
	f.Add("update", "", "\xff\xfe invalid", "1e-7", 1e21, int64(math.MinInt64), []byte(`"\u2029"`), uint8(0xff))
	f.Add("", "\x00\x1f\"\\", "emoji 😀", "", math.Copysign(0, -1), int64(math.MaxInt64), []byte(nil), uint8(0x55))
	f.Add("delete", "k", "", "01", math.NaN(), int64(-1), []byte(`{"a":}`), uint8(0xaa))
	f.Add("truncate", "\u2028", "a\tb\nc", "-0.5E+3", math.Inf(-1), int64(0), []byte{}, uint8(1))
	f.Add("insert", "x", "1e20", "1.", 1e20, int64(1), []byte("\xe2\x80\xa8"), uint8(2))
	f.Add("insert", "y", "", "-", float64(math.MaxFloat32)*2, int64(7), []byte("[1,2"), uint8(4))
	f.Add("insert", "z", "", "1e+", 1e-6, int64(8), []byte("1 2"), uint8(8))
	f.Fuzz(func(t *testing.T, s1, s2, s3, num string, fl float64, n int64, raw []byte, flags uint8) {
		bit := func(i uint) bool { return flags&(1<<i) != 0 }
		props := map[string]any{
			s1:       s3,
			s2:       json.Number(num),
			"f64":    fl,
			"f32":    float32(fl),
			"int":    n,
			"uint":   uint64(n),
			"list":   []any{s2, json.Number(num), fl, nil, bit(0), []any{s3}},
			"nested": map[string]any{s3: map[string]any{s1: n, s2: s1}},
		}
		if bit(1) {
			props["raw"] = json.RawMessage(raw)
		}
		if bit(2) {
			props = map[string]any{}
		}
		e := &Envelope{
			Op:     Op(s1),
			Source: s2,
			Element: Element{
				Type:       s3,
				ID:         s1,
				Labels:     []string{s2, s3},
				Properties: props,
			},
			TsMs: n,
		}
		if bit(3) {
			e.Element.From, e.Element.To = s2, s3
			e.Element.Labels = nil
		}
		if bit(4) {
			e.Before = map[string]any{s3: json.Number(num), "r": json.RawMessage(raw)}
		}
		if bit(5) {
			e.Unchanged = []string{s1, s3}
		}
		if bit(6) {
			e.Position = s2 + s3
		}
		if bit(7) {
			e.Element.Properties[s1] = []any{string(raw), map[string]any{string(raw): fl}}
		}
		sameAsEncodingJSON(t, e)
	})
}

// typicalRow is what the Postgres source sends for one inserted row.
func typicalRow() *Envelope {
	e := baseEnvelope()
	e.Element.Properties = map[string]any{
		"id":         json.Number("42"),
		"customer":   "Ada Lovelace",
		"total":      json.Number("1234.50"),
		"paid":       true,
		"created_at": "2026-11-27T10:34:04.123456Z",
		"notes":      nil,
	}
	e.TsMs = 1764239644123
	return e
}

func BenchmarkEncode(b *testing.B) {
	e := typicalRow()
	want, err := json.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	if got, err := e.Encode(); err != nil || !bytes.Equal(got, want) {
		b.Fatalf("Encode = %q, %v; want %q", got, err, want)
	}
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(want)))
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(want)))
		for b.Loop() {
			if _, err := e.Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append_json_reused_buffer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(want)))
		var buf []byte
		for b.Loop() {
			if buf, err = e.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

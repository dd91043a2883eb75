package pgsource

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestConvertTextValues(t *testing.T) {
	c := newConverter()
	cases := []struct {
		oid  uint32
		text string
		want string // JSON
	}{
		{pgtype.Int4OID, "-42", `-42`},
		{pgtype.Int8OID, "9223372036854775807", `9223372036854775807`},
		{pgtype.Float8OID, "1.5e+300", `1.5e+300`},
		{pgtype.Float8OID, "NaN", `"NaN"`},
		{pgtype.Float4OID, "-Infinity", `"-Infinity"`},
		{pgtype.NumericOID, "12345678901234567890.000000000000000001", `12345678901234567890.000000000000000001`},
		{pgtype.NumericOID, "Infinity", `"Infinity"`},
		{pgtype.BoolOID, "t", `true`},
		{pgtype.TextOID, "a \"quoted\" é", `"a \"quoted\" é"`},
		{pgtype.JSONBOID, `{"a": [1, 2.50]}`, `{"a":[1,2.50]}`},
		{pgtype.ByteaOID, `\xdeadbeef`, `"3q2+7w=="`},
		{pgtype.DateOID, "2024-02-29", `"2024-02-29"`},
		{pgtype.DateOID, "infinity", `"infinity"`},
		{pgtype.TimestampOID, "2024-02-29 13:14:15.123456", `"2024-02-29T13:14:15.123456Z"`},
		{pgtype.TimestamptzOID, "2024-02-29 13:14:15+00", `"2024-02-29T13:14:15Z"`},
		{pgtype.TimestamptzOID, "2024-02-29 13:14:15.5+02", `"2024-02-29T11:14:15.5Z"`},
		{pgtype.Int4ArrayOID, "{1,2,NULL}", `[1,2,null]`},
		{pgtype.Int4ArrayOID, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{pgtype.Int4ArrayOID, "[0:1]={7,8}", `[7,8]`},
		{pgtype.TextArrayOID, `{"a,b","c\"d",NULL,"NULL",e f}`, `["a,b","c\"d",null,"NULL","e f"]`},
		{pgtype.TextArrayOID, "{}", `[]`},
		{pgtype.TextArrayOID, `{ a b , c\ }`, `["a b","c "]`},
		{pgtype.NumericArrayOID, "{1.10,NaN}", `[1.10,"NaN"]`},
	}
	for _, tc := range cases {
		typ := builtinTypes[tc.oid]
		v, err := c.convert(typ, []byte(tc.text))
		if err != nil {
			t.Errorf("%s %q: %v", typ.name, tc.text, err)
			continue
		}
		got, err := json.Marshal(v)
		if err != nil {
			t.Errorf("%s %q: marshal: %v", typ.name, tc.text, err)
			continue
		}
		if string(got) != tc.want && !(tc.oid == pgtype.JSONBOID && jsonEqual(got, []byte(tc.want))) {
			t.Errorf("%s %q = %s, want %s", typ.name, tc.text, got, tc.want)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && string(mustJSON(x)) == string(mustJSON(y))
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestConvertRejectsMalformedText(t *testing.T) {
	c := newConverter()
	cases := []struct {
		oid  uint32
		text string
	}{
		{pgtype.Int4OID, "12a"},
		{pgtype.Int4OID, "007"},
		{pgtype.NumericOID, "1.2.3"},
		{pgtype.BoolOID, "yes"},
		{pgtype.JSONOID, "{"},
		{pgtype.ByteaOID, "\\xZZ"},
		{pgtype.Int4ArrayOID, "{1,2"},
		{pgtype.Int4ArrayOID, "{1,,2}"},
		{pgtype.Int4ArrayOID, "{1}x"},
		{pgtype.TextArrayOID, `{"abc}`},
	}
	for _, tc := range cases {
		typ := builtinTypes[tc.oid]
		if v, err := c.convert(typ, []byte(tc.text)); !errors.Is(err, ErrDecode) {
			t.Errorf("%s %q = %v, %v; want an ErrDecode error", typ.name, tc.text, v, err)
		}
	}
}

// FuzzArrayText checks that the array parser never panics and that what it
// accepts marshals to valid JSON.
func FuzzArrayText(f *testing.F) {
	for _, s := range []string{"{}", "{1,2}", `{"a\"b",NULL}`, "{{1},{2}}", "[1:2]={1,2}", "{a b ,c}", `{\,}`} {
		f.Add(s)
	}
	c := newConverter()
	types := []*pgType{builtinTypes[pgtype.TextArrayOID], builtinTypes[pgtype.Int8ArrayOID], builtinTypes[pgtype.NumericArrayOID]}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range types {
			v, err := c.convert(typ, []byte(s))
			if err != nil {
				if !errors.Is(err, ErrDecode) {
					t.Fatalf("%q: error %v does not wrap ErrDecode", s, err)
				}
				continue
			}
			b, err := json.Marshal(v)
			if err != nil || !json.Valid(b) {
				t.Fatalf("%q: accepted but marshals to %s, %v", s, b, err)
			}
		}
	})
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{
		Tables:           []string{"a", "public.a", "x.y.z"},
		TableKeys:        map[string][]string{"b": {"id"}, "a": {}},
		SlotName:         "Bad-Slot",
		PublicationName:  "1pub",
		Snapshot:         "sometimes",
		BatchMaxMessages: -1,
		MaxInFlight:      -5,
		Backoff:          Backoff{Initial: 2e9, Max: 1e9},
	}.Validate()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Validate = %v, want ErrConfig", err)
	}
	for _, want := range []string{
		"id: missing", "connString: missing", "public.a is listed twice", "tableKeys[b]: not one of the tables",
		"tableKeys[a]: no columns", "slotName", "publicationName", "snapshot: \"sometimes\"",
		"batchMaxMessages: -1 is below 1", "maxInFlight: -5", "backoff.max",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q:\n%v", want, err)
		}
	}
	ok := Config{ID: "shop", ConnString: "postgres://u:secret@localhost/db", Tables: []string{"orders", "sales.items"},
		PublicationName: "tributary_shop", SlotName: "tributary_shop"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

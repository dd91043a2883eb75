package change

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDecodeValid(t *testing.T) {
	raw := `{"op":"update","source":"shop","element":{"type":"node","id":"orders:42","labels":["orders"],"properties":{"id":42,"total":12345678901234567890.123456789}},"before":{"id":42},"unchanged":["notes"],"ts_ms":1764230400123,"position":"00000000016B3748/00000003"}`
	e, err := Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if e.Op != OpUpdate || e.Element.ID != "orders:42" || e.Position != "00000000016B3748/00000003" {
		t.Fatalf("decoded %+v", e)
	}
	// numeric precision is kept
	if got := e.Element.Properties["total"].(json.Number).String(); got != "12345678901234567890.123456789" {
		t.Fatalf("numeric lost precision: %s", got)
	}
	out, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "12345678901234567890.123456789") {
		t.Fatalf("re-encoded numeric lost precision: %s", out)
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	cases := []struct {
		name, raw string
		want      []string
	}{
		{"unknown field", `{"op":"insert","source":"s","element":{"type":"node","id":"a","labels":["A"]},"ts_ms":1,"extra":1}`, []string{"unknown field \"extra\""}},
		{"trailing", `{"op":"insert","source":"s","element":{"type":"node","id":"a","labels":["A"]},"ts_ms":1} {}`, []string{"trailing data"}},
		{"many", `{"op":"upsert","element":{"type":"edge"},"ts_ms":-1}`, []string{"op: \"upsert\"", "source: missing", "element.type: \"edge\"", "element.id: missing", "ts_ms: negative"}},
		{"relation endpoints", `{"op":"insert","source":"s","element":{"type":"relation","id":"r","labels":["R"]},"ts_ms":1}`, []string{"element.from", "element.to"}},
		{"truncate labels", `{"op":"truncate","source":"s","element":{"type":"node","labels":[]},"ts_ms":1}`, []string{"truncate needs at least one label"}},
		{"unchanged on insert", `{"op":"insert","source":"s","element":{"type":"node","id":"a","labels":["A"]},"unchanged":["x"],"ts_ms":1}`, []string{"only updates"}},
		{"unchanged and sent", `{"op":"update","source":"s","element":{"type":"node","id":"a","labels":["A"],"properties":{"x":1}},"unchanged":["x"],"ts_ms":1}`, []string{"also in element.properties"}},
		{"not json", `nope`, []string{"invalid character"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.raw))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestTruncateNeedsNoID(t *testing.T) {
	if _, err := Decode([]byte(`{"op":"truncate","source":"s","element":{"type":"node","labels":["orders"]},"ts_ms":1}`)); err != nil {
		t.Fatal(err)
	}
}

func TestComparePositions(t *testing.T) {
	ordered := []string{"", "1", "9", "10", "99", "100",
		FormatPGPosition(0x16B3748, 0), FormatPGPosition(0x16B3748, 1), FormatPGPosition(0x16B3748, 0x10), FormatPGPosition(0x16B3749, 0), FormatPGPosition(1<<40, 0)}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ComparePositions(ordered[i], ordered[j]); got != want {
				t.Errorf("ComparePositions(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestPGPositionRoundTrip(t *testing.T) {
	for _, c := range []struct {
		lsn uint64
		idx uint32
	}{{0, 0}, {0x16B3748, 3}, {^uint64(0), ^uint32(0)}} {
		p := FormatPGPosition(c.lsn, c.idx)
		lsn, idx, err := ParsePGPosition(p)
		if err != nil || lsn != c.lsn || idx != c.idx {
			t.Fatalf("%q -> %x %x %v", p, lsn, idx, err)
		}
	}
	if _, _, err := ParsePGPosition("0/1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

// The JSON Schema in docs/ names the same operations and element types as
// the Go validation.
func TestSchemaMatchesValidation(t *testing.T) {
	data, err := os.ReadFile("../../docs/change-envelope.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Required   []string `json:"required"`
		Properties struct {
			Op struct {
				Enum []string `json:"enum"`
			} `json:"op"`
			Element struct {
				Properties struct {
					Type struct {
						Enum []string `json:"enum"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"element"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("schema is not valid JSON: %v", err)
	}
	if strings.Join(s.Properties.Op.Enum, ",") != "insert,update,delete,truncate" {
		t.Fatalf("schema ops %v", s.Properties.Op.Enum)
	}
	if strings.Join(s.Properties.Element.Properties.Type.Enum, ",") != "node,relation" {
		t.Fatalf("schema element types %v", s.Properties.Element.Properties.Type.Enum)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"op":"insert","source":"s","element":{"type":"node","id":"a","labels":["A"],"properties":{"x":[1,{"y":null}]}},"ts_ms":1,"position":"5"}`))
	f.Add([]byte(`{"op":"truncate","source":"s","element":{"type":"node","labels":["A"]},"ts_ms":0}`))
	f.Add([]byte(`{"op":"insert","source":"s","element":{"type":"relation","id":"r","labels":["R"],"from":"a","to":"b"},"ts_ms":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// A valid envelope re-encodes and decodes to a valid envelope.
		out, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
	})
}

package pgsource

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tributary/tributary/pkg/change"
)

// Values travel as JSON (DESIGN.md section 4, docs/formats.md):
//
//	smallint, integer, bigint, oid        JSON number
//	real, double precision                JSON number; NaN, Infinity, -Infinity as strings
//	numeric                               JSON number with every digit of the text form;
//	                                      NaN, Infinity, -Infinity as strings
//	boolean                               true / false
//	text, varchar, char, name, uuid,      string (the Postgres text form)
//	enums, time, interval and any type
//	this package does not know
//	json, jsonb                           embedded JSON
//	bytea                                 string, standard base64
//	date                                  "2006-01-02"
//	timestamp                             RFC 3339 in UTC with "Z" (a timestamp without
//	                                      time zone is read as UTC)
//	timestamptz                           RFC 3339 in UTC with "Z"
//	                                      (infinite or out-of-range dates and times keep
//	                                      their Postgres text form, e.g. "infinity")
//	arrays                                JSON lists (nested for several dimensions) of
//	                                      the element type's JSON
//	domains                               as their base type
//	NULL                                  null
//
// The connections set DateStyle ISO, TimeZone UTC, IntervalStyle postgres,
// bytea_output hex and extra_float_digits 3, so that the text forms above are
// the same on every server and the snapshot and the stream agree.

// sessionParams are set on every connection of the source.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, YMD",
	"TimeZone":           "UTC",
	"IntervalStyle":      "postgres",
	"bytea_output":       "hex",
	"extra_float_digits": "3",
}

type valueKind int

const (
	kindString valueKind = iota
	kindBool
	kindInt
	kindFloat
	kindNumeric
	kindJSON
	kindBytea
	kindDate
	kindTimestamp
	kindTimestamptz
	kindArray
)

// pgType is how one Postgres type converts to JSON.
type pgType struct {
	kind valueKind
	// elem and delim describe the elements of an array type.
	elem  *pgType
	delim byte
	// name is for error messages.
	name string
}

// builtinTypes maps the OIDs this package converts natively.
var builtinTypes = func() map[uint32]*pgType {
	m := map[uint32]*pgType{}
	scalar := func(oid uint32, k valueKind, name string) *pgType {
		t := &pgType{kind: k, name: name}
		m[oid] = t
		return t
	}
	arr := func(oid uint32, elem *pgType) {
		m[oid] = &pgType{kind: kindArray, elem: elem, delim: ',', name: elem.name + "[]"}
	}
	arr(pgtype.BoolArrayOID, scalar(pgtype.BoolOID, kindBool, "boolean"))
	arr(pgtype.Int2ArrayOID, scalar(pgtype.Int2OID, kindInt, "smallint"))
	arr(pgtype.Int4ArrayOID, scalar(pgtype.Int4OID, kindInt, "integer"))
	arr(pgtype.Int8ArrayOID, scalar(pgtype.Int8OID, kindInt, "bigint"))
	arr(pgtype.OIDArrayOID, scalar(pgtype.OIDOID, kindInt, "oid"))
	arr(pgtype.Float4ArrayOID, scalar(pgtype.Float4OID, kindFloat, "real"))
	arr(pgtype.Float8ArrayOID, scalar(pgtype.Float8OID, kindFloat, "double precision"))
	arr(pgtype.NumericArrayOID, scalar(pgtype.NumericOID, kindNumeric, "numeric"))
	arr(pgtype.JSONArrayOID, scalar(pgtype.JSONOID, kindJSON, "json"))
	arr(pgtype.JSONBArrayOID, scalar(pgtype.JSONBOID, kindJSON, "jsonb"))
	arr(pgtype.ByteaArrayOID, scalar(pgtype.ByteaOID, kindBytea, "bytea"))
	arr(pgtype.DateArrayOID, scalar(pgtype.DateOID, kindDate, "date"))
	arr(pgtype.TimestampArrayOID, scalar(pgtype.TimestampOID, kindTimestamp, "timestamp"))
	arr(pgtype.TimestamptzArrayOID, scalar(pgtype.TimestamptzOID, kindTimestamptz, "timestamptz"))
	for _, s := range []struct {
		oid, arrayOID uint32
		name          string
	}{
		{pgtype.TextOID, pgtype.TextArrayOID, "text"},
		{pgtype.VarcharOID, pgtype.VarcharArrayOID, "varchar"},
		{pgtype.BPCharOID, pgtype.BPCharArrayOID, "char"},
		{pgtype.NameOID, pgtype.NameArrayOID, "name"},
		{pgtype.QCharOID, pgtype.QCharArrayOID, "\"char\""},
		{pgtype.UUIDOID, pgtype.UUIDArrayOID, "uuid"},
		{pgtype.TimeOID, pgtype.TimeArrayOID, "time"},
		{pgtype.IntervalOID, pgtype.IntervalArrayOID, "interval"},
	} {
		arr(s.arrayOID, scalar(s.oid, kindString, s.name))
	}
	return m
}()

// converter turns Postgres text values into JSON values. It is not safe for
// concurrent use (it holds a pgtype.Map); each goroutine has its own.
type converter struct {
	m *pgtype.Map
}

func newConverter() *converter { return &converter{m: pgtype.NewMap()} }

// convert returns the JSON value of one non-NULL text value of type t.
func (c *converter) convert(t *pgType, text []byte) (any, error) {
	switch t.kind {
	case kindString:
		return string(text), nil
	case kindBool:
		switch string(text) {
		case "t":
			return true, nil
		case "f":
			return false, nil
		}
	case kindInt:
		if isJSONInteger(text) {
			return json.Number(text), nil
		}
	case kindFloat, kindNumeric:
		switch s := string(text); s {
		case "NaN", "Infinity", "-Infinity":
			return s, nil
		default:
			if change.IsNumberLiteral(text) {
				return json.Number(s), nil
			}
		}
	case kindJSON:
		if json.Valid(text) {
			return json.RawMessage(append([]byte(nil), text...)), nil
		}
	case kindBytea:
		if len(text) >= 2 && text[0] == '\\' && text[1] == 'x' {
			raw := make([]byte, hex.DecodedLen(len(text)-2))
			if _, err := hex.Decode(raw, text[2:]); err == nil {
				return base64.StdEncoding.EncodeToString(raw), nil
			}
		}
	case kindDate:
		var d pgtype.Date
		if err := c.m.Scan(pgtype.DateOID, pgtype.TextFormatCode, text, &d); err == nil && d.Valid {
			if d.InfinityModifier != pgtype.Finite || !inRFC3339Range(d.Time) {
				return string(text), nil
			}
			return d.Time.Format(time.DateOnly), nil
		}
	case kindTimestamp:
		var ts pgtype.Timestamp
		if err := c.m.Scan(pgtype.TimestampOID, pgtype.TextFormatCode, text, &ts); err == nil && ts.Valid {
			if ts.InfinityModifier != pgtype.Finite || !inRFC3339Range(ts.Time) {
				return string(text), nil
			}
			return ts.Time.UTC().Format(time.RFC3339Nano), nil
		}
	case kindTimestamptz:
		var ts pgtype.Timestamptz
		if err := c.m.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, text, &ts); err == nil && ts.Valid {
			if ts.InfinityModifier != pgtype.Finite || !inRFC3339Range(ts.Time.UTC()) {
				return string(text), nil
			}
			return ts.Time.UTC().Format(time.RFC3339Nano), nil
		}
	case kindArray:
		v, err := c.convertArray(t, text)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: %q is not a valid %s text value", ErrDecode, truncate(text, 64), t.name)
}

func inRFC3339Range(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

// isJSONInteger reports whether b is an optional minus and decimal digits
// (Postgres prints integers without leading zeros).
func isJSONInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || (len(b) > 1 && b[0] == '0') {
		return false
	}
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return true
}

// convertArray parses the text form of an array ("{1,2,NULL}", "{{a,b},{c,d}}",
// optionally preceded by dimension bounds "[0:1]=") and converts each element.
func (c *converter) convertArray(t *pgType, text []byte) ([]any, error) {
	p := arrayParser{src: text, delim: t.delim}
	if len(p.src) > 0 && p.src[0] == '[' {
		eq := strings.IndexByte(string(p.src), '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: array %q: dimension bounds without '='", ErrDecode, truncate(text, 64))
		}
		p.pos = eq + 1
	}
	v, err := p.parse(func(elem []byte) (any, error) { return c.convert(t.elem, elem) })
	if err != nil {
		return nil, fmt.Errorf("%w: array %q of %s: %v", ErrDecode, truncate(text, 64), t.elem.name, err)
	}
	return v, nil
}

// arrayParser reads Postgres' array text format.
type arrayParser struct {
	src   []byte
	pos   int
	delim byte
}

// parse reads one brace-enclosed list at pos and the end of input after it.
func (p *arrayParser) parse(elem func([]byte) (any, error)) ([]any, error) {
	v, err := p.list(elem, 0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.src) {
		return nil, fmt.Errorf("unexpected %q after the array at byte %d", p.src[p.pos], p.pos)
	}
	return v, nil
}

func (p *arrayParser) skipSpace() {
	for p.pos < len(p.src) && isArraySpace(p.src[p.pos]) {
		p.pos++
	}
}

func isArraySpace(ch byte) bool {
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'
}

const maxArrayDepth = 6 // Postgres' MAXDIM

func (p *arrayParser) list(elem func([]byte) (any, error), depth int) ([]any, error) {
	if depth >= maxArrayDepth {
		return nil, fmt.Errorf("more than %d dimensions", maxArrayDepth)
	}
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return nil, fmt.Errorf("expected '{' at byte %d", p.pos)
	}
	p.pos++
	out := []any{}
	p.skipSpace()
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return out, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, fmt.Errorf("unterminated array")
		}
		switch p.src[p.pos] {
		case '{':
			sub, err := p.list(elem, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub)
		case '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			v, err := elem(s)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		default:
			s, err := p.unquoted()
			if err != nil {
				return nil, err
			}
			if strings.EqualFold(string(s), "NULL") {
				out = append(out, nil)
				break
			}
			v, err := elem(s)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil, fmt.Errorf("unterminated array")
		}
		switch p.src[p.pos] {
		case '}':
			p.pos++
			return out, nil
		case p.delim:
			p.pos++
		default:
			return nil, fmt.Errorf("unexpected %q at byte %d", p.src[p.pos], p.pos)
		}
	}
}

func (p *arrayParser) quoted() ([]byte, error) {
	p.pos++ // opening quote
	var b []byte
	for p.pos < len(p.src) {
		ch := p.src[p.pos]
		switch ch {
		case '\\':
			if p.pos+1 >= len(p.src) {
				return nil, fmt.Errorf("unterminated escape")
			}
			b = append(b, p.src[p.pos+1])
			p.pos += 2
		case '"':
			p.pos++
			if b == nil {
				b = []byte{}
			}
			return b, nil
		default:
			b = append(b, ch)
			p.pos++
		}
	}
	return nil, fmt.Errorf("unterminated quoted element")
}

func (p *arrayParser) unquoted() ([]byte, error) {
	var b []byte
	escaped := 0 // bytes up to the last escaped one, which are kept
	for p.pos < len(p.src) {
		ch := p.src[p.pos]
		switch {
		case ch == '\\':
			if p.pos+1 >= len(p.src) {
				return nil, fmt.Errorf("unterminated escape")
			}
			b = append(b, p.src[p.pos+1])
			escaped = len(b)
			p.pos += 2
			continue
		case ch == p.delim || ch == '}':
			// Postgres trims the unescaped trailing whitespace of unquoted
			// elements.
			end := len(b)
			for end > escaped && isArraySpace(b[end-1]) {
				end--
			}
			if end == 0 {
				return nil, fmt.Errorf("empty element at byte %d", p.pos)
			}
			return b[:end], nil
		case ch == '{' || ch == '"':
			return nil, fmt.Errorf("unexpected %q at byte %d", ch, p.pos)
		}
		b = append(b, ch)
		p.pos++
	}
	return nil, fmt.Errorf("unterminated array")
}

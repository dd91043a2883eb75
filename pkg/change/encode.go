package change

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// This file is the hand-written JSON encoder of the envelope. Its contract is
// byte identity with encoding/json: for every envelope, AppendJSON appends
// exactly what json.Marshal(e) returns, and fails exactly when json.Marshal
// fails. The types sources put into Properties and Before (see
// internal/pgsource/values.go) take fast paths; every other type is handed to
// json.Marshal, so identity holds for them too. encode_test.go checks the
// identity on a corpus and by fuzzing.

// AppendJSON appends the JSON form of the envelope to dst and returns the
// extended buffer. The bytes are exactly those of json.Marshal(e): the same
// field order and omitempty rules, map keys sorted, strings escaped for HTML
// (<, >, & as \u003c, \u003e, \u0026; U+2028 and U+2029 escaped; invalid
// UTF-8 as \ufffd), floats in the ES6 style of encoding/json, json.Number
// written verbatim and json.RawMessage compacted.
//
// It fails where json.Marshal fails: a NaN or infinite float, an invalid
// json.Number or json.RawMessage, a value of a type JSON cannot represent or
// a cyclic value. The error wraps ErrInvalid and the underlying error (for
// example a *json.UnsupportedValueError) and names the property, as in
// `element.properties["price"]`. On error dst is returned with its original
// length.
//
// AppendJSON does not validate the envelope (see Validate) and is safe for
// concurrent use as long as the envelope is not modified meanwhile.
func (e *Envelope) AppendJSON(dst []byte) ([]byte, error) {
	st := getEncodeState()
	defer putEncodeState(st)
	return e.appendJSON(st, dst)
}

// encodeState is the scratch space of one encoding, pooled between them.
type encodeState struct {
	// buf is the output buffer of Encode.
	buf []byte
	// entries is a stack of map entries being sorted: each map being
	// encoded owns a segment above those of the maps enclosing it.
	entries []mapEntry
}

type mapEntry struct {
	key   string
	value any
}

var encodeStatePool = sync.Pool{New: func() any { return new(encodeState) }}

// Buffers that grew beyond these are dropped instead of pooled, so that one
// huge envelope does not pin its memory for the rest of the process.
const (
	maxPooledBuf     = 64 << 10
	maxPooledEntries = 1 << 10
)

func getEncodeState() *encodeState { return encodeStatePool.Get().(*encodeState) }

func putEncodeState(st *encodeState) {
	if cap(st.buf) > maxPooledBuf {
		st.buf = nil
	}
	// The stack is empty unless a panic (from a value's MarshalJSON) unwound
	// through appendMap.
	clear(st.entries)
	st.entries = st.entries[:0]
	if cap(st.entries) > maxPooledEntries {
		st.entries = nil
	}
	encodeStatePool.Put(st)
}

// encodeOwned returns the envelope's JSON in a new slice that holds just it,
// encoding into a pooled buffer (one allocation, like json.Marshal).
func (e *Envelope) encodeOwned() ([]byte, error) {
	st := getEncodeState()
	defer putEncodeState(st)
	out, err := e.appendJSON(st, st.buf[:0])
	st.buf = out[:0]
	if err != nil {
		return nil, err
	}
	return bytes.Clone(out), nil
}

func (e *Envelope) appendJSON(st *encodeState, dst []byte) ([]byte, error) {
	orig := len(dst)
	var err error
	dst = append(dst, `{"op":`...)
	dst = appendString(dst, string(e.Op))
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, e.Source)

	el := &e.Element
	dst = append(dst, `,"element":{"type":`...)
	dst = appendString(dst, el.Type)
	if el.ID != "" {
		dst = append(dst, `,"id":`...)
		dst = appendString(dst, el.ID)
	}
	dst = append(dst, `,"labels":`...)
	dst = appendStrings(dst, el.Labels)
	if len(el.Properties) > 0 {
		dst = append(dst, `,"properties":`...)
		if dst, err = st.appendMap(dst, el.Properties, 0); err != nil {
			return dst[:orig], fieldError("element.properties", err)
		}
	}
	if el.From != "" {
		dst = append(dst, `,"from":`...)
		dst = appendString(dst, el.From)
	}
	if el.To != "" {
		dst = append(dst, `,"to":`...)
		dst = appendString(dst, el.To)
	}
	dst = append(dst, '}')

	if len(e.Before) > 0 {
		dst = append(dst, `,"before":`...)
		if dst, err = st.appendMap(dst, e.Before, 0); err != nil {
			return dst[:orig], fieldError("before", err)
		}
	}
	if len(e.Unchanged) > 0 {
		dst = append(dst, `,"unchanged":`...)
		dst = appendStrings(dst, e.Unchanged)
	}
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, e.TsMs, 10)
	if e.Position != "" {
		dst = append(dst, `,"position":`...)
		dst = appendString(dst, e.Position)
	}
	return append(dst, '}'), nil
}

// valueError is an encoding failure inside a value, with the path from the
// field's value down to the failing value.
type valueError struct {
	// path holds the segments (`["key"]`, `[3]`) innermost first, as they
	// are added while the recursion unwinds.
	path []string
	err  error
}

func (v *valueError) Error() string { return v.err.Error() }
func (v *valueError) Unwrap() error { return v.err }

// at returns err with seg prepended to its path.
func at(err error, seg string) error {
	ve, ok := err.(*valueError)
	if !ok {
		ve = &valueError{err: err}
	}
	ve.path = append(ve.path, seg)
	return ve
}

// fieldError is the error AppendJSON returns for a failure inside field.
func fieldError(field string, err error) error {
	var path strings.Builder
	path.WriteString(field)
	if ve, ok := err.(*valueError); ok {
		for i := len(ve.path) - 1; i >= 0; i-- {
			path.WriteString(ve.path[i])
		}
		err = ve.err
	}
	return fmt.Errorf("%w: encoding %s: %w", ErrInvalid, path.String(), err)
}

// maxFastDepth bounds the recursion of the fast paths. Deeper values go to
// json.Marshal, which starts looking for cycles at the same depth; so a
// cyclic value fails there as it does in json.Marshal, instead of
// overflowing the stack here.
const maxFastDepth = 1000

// appendValue appends the JSON of one property value; depth counts the maps
// and lists enclosing it.
func (st *encodeState) appendValue(dst []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, v), nil
	case json.Number:
		return appendNumber(dst, v)
	case bool:
		return strconv.AppendBool(dst, v), nil
	case json.RawMessage:
		return appendRawMessage(dst, v)
	case []any:
		return st.appendSlice(dst, v, depth)
	case map[string]any:
		return st.appendMap(dst, v, depth)
	case float64:
		return appendFloat(dst, v, 64)
	case float32:
		return appendFloat(dst, float64(v), 32)
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int8:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int16:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint64:
		return strconv.AppendUint(dst, v, 10), nil
	}
	return appendMarshaled(dst, v)
}

// appendMarshaled appends json.Marshal(v): the path for every type without a
// fast path, and for values nested deeper than maxFastDepth.
func appendMarshaled(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

func (st *encodeState) appendSlice(dst []byte, s []any, depth int) ([]byte, error) {
	if s == nil {
		return append(dst, "null"...), nil
	}
	if depth >= maxFastDepth {
		return appendMarshaled(dst, s)
	}
	dst = append(dst, '[')
	for i, v := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = st.appendValue(dst, v, depth+1); err != nil {
			return dst, at(err, "["+strconv.Itoa(i)+"]")
		}
	}
	return append(dst, ']'), nil
}

func (st *encodeState) appendMap(dst []byte, m map[string]any, depth int) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	if depth >= maxFastDepth {
		return appendMarshaled(dst, m)
	}
	// Sort the entries in this map's segment of the entry stack. Maps
	// nested in the values push their segments above it; should that
	// reallocate st.entries, entries still refers to the old array, whose
	// segment nobody else writes.
	base := len(st.entries)
	for k, v := range m {
		st.entries = append(st.entries, mapEntry{k, v})
	}
	entries := st.entries[base:]
	// Byte-wise, as encoding/json sorts; keys are unique.
	slices.SortFunc(entries, func(a, b mapEntry) int { return strings.Compare(a.key, b.key) })

	dst = append(dst, '{')
	var err error
	for i := range entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, entries[i].key)
		dst = append(dst, ':')
		if dst, err = st.appendValue(dst, entries[i].value, depth+1); err != nil {
			err = at(err, "["+strconv.Quote(entries[i].key)+"]")
			break
		}
	}
	clear(entries) // do not pin the caller's values in the pool
	st.entries = st.entries[:base]
	if err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}

func appendStrings(dst []byte, s []string) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, v := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, v)
	}
	return append(dst, ']')
}

// plainASCII marks the bytes a JSON string holds unescaped without looking
// further: ASCII from space up except the quote, the backslash and the
// HTML-sensitive <, > and &. Bytes from 0x80 up start UTF-8 sequences, which
// need checking.
var plainASCII = func() (t [256]bool) {
	for b := ' '; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	for _, b := range `"\<>&` {
		t[b] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json escapes
// with HTML escaping on.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied unchanged
	for i := 0; i < len(s); {
		b := s[i]
		if plainASCII[b] {
			i++
			continue
		}
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default: // other control bytes and <, >, &
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendNumber writes n verbatim after checking that it is a JSON number
// literal; the empty Number is 0, as in encoding/json.
func appendNumber(dst []byte, n json.Number) ([]byte, error) {
	if n == "" {
		return append(dst, '0'), nil
	}
	if !IsNumberLiteral(n) {
		return dst, fmt.Errorf("json: invalid number literal %q", string(n))
	}
	return append(dst, n...), nil
}

// IsNumberLiteral reports whether s is a number literal of the JSON grammar
// (RFC 8259 section 6): what a json.Number must hold to be encoded, and what
// a source may pass through verbatim as a number.
func IsNumberLiteral[T ~string | ~[]byte](s T) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// appendFloat writes f as encoding/json does for a float of the given bit
// size: like ES6 number to string, 'f' format unless the magnitude is below
// 1e-6 or from 1e21 up, then 'e' format with a minimal exponent. NaN and the
// infinities are errors.
func appendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		var v reflect.Value
		if bits == 32 {
			v = reflect.ValueOf(float32(f))
		} else {
			v = reflect.ValueOf(f)
		}
		return dst, &json.UnsupportedValueError{Value: v, Str: strconv.FormatFloat(f, 'g', -1, bits)}
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// e-07 becomes e-7
		n := len(dst)
		if n-start >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// appendRawMessage appends raw compacted, with the HTML-sensitive characters
// of its strings escaped, as encoding/json writes a json.RawMessage. Invalid
// JSON is an error.
func appendRawMessage(dst []byte, raw json.RawMessage) ([]byte, error) {
	if raw == nil {
		return append(dst, "null"...), nil
	}
	orig := len(dst)
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, raw); err != nil {
		return dst, &json.MarshalerError{Type: reflect.TypeFor[json.RawMessage](), Err: err}
	}
	out := buf.Bytes()
	if !needsHTMLEscape(out[orig:]) {
		return out, nil
	}
	compact := bytes.Clone(out[orig:])
	buf.Truncate(orig)
	json.HTMLEscape(buf, compact)
	return buf.Bytes(), nil
}

// needsHTMLEscape reports whether b holds <, >, & or the first byte of U+2028
// or U+2029.
func needsHTMLEscape(b []byte) bool {
	for _, c := range b {
		if c == '<' || c == '>' || c == '&' || c == 0xE2 {
			return true
		}
	}
	return false
}

package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/tributary/tributary/internal/cypher"
)

// Checkpoint errors.
var (
	// ErrBadCheckpoint is wrapped when checkpoint bytes are truncated,
	// corrupt (checksum), or of an unknown format version.
	ErrBadCheckpoint = errors.New("bad checkpoint")
	// ErrCheckpointMismatch is wrapped when a checkpoint was written by a
	// query with another text, joins or parameters.
	ErrCheckpointMismatch = errors.New("checkpoint belongs to another query definition")
)

const (
	checkpointMagic   = "TRIBQCP\x00"
	checkpointVersion = 1
)

// Fingerprint identifies a query definition: a SHA-256 over its text,
// joins and parameters (canonically encoded, independent of map order).
func Fingerprint(spec QuerySpec) [32]byte {
	var b []byte
	b = appendString(b, spec.Query)
	b = binary.AppendUvarint(b, uint64(len(spec.Joins)))
	for _, j := range spec.Joins {
		b = appendString(b, j.ID)
		b = binary.AppendUvarint(b, uint64(len(j.Keys)))
		for _, k := range j.Keys {
			b = appendString(b, k.Label)
			b = appendString(b, k.Property)
		}
	}
	names := make([]string, 0, len(spec.Parameters))
	for k := range spec.Parameters {
		names = append(names, k)
	}
	sort.Strings(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		v, err := cypher.FromJSON(spec.Parameters[k])
		if err != nil {
			v = fmt.Sprintf("%T:%v", spec.Parameters[k], spec.Parameters[k])
		}
		b = append(b, cypher.AppendKey(nil, v)...)
	}
	return sha256.Sum256(b)
}

// Checkpoint serializes the query's state: a header (format version, query
// fingerprint, per-source position watermark) and every element with its
// current and previous version, tombstones included, sorted by (source, id),
// followed by a SHA-256 checksum. The incremental state (groups,
// accumulators, result set) is a pure function of the elements and is
// rebuilt by Restore, so the bytes are deterministic: serialize, restore,
// serialize again gives identical bytes.
func (q *Query) Checkpoint() ([]byte, error) {
	s := q.store
	var b []byte
	b = append(b, checkpointMagic...)
	b = binary.BigEndian.AppendUint32(b, checkpointVersion)
	fp := Fingerprint(q.spec)
	b = append(b, fp[:]...)
	b = appendString(b, q.spec.ID)

	srcs := make([]string, 0, len(s.watermark))
	for src := range s.watermark {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	b = binary.AppendUvarint(b, uint64(len(srcs)))
	for _, src := range srcs {
		b = appendString(b, src)
		b = appendString(b, s.watermark[src])
	}

	ids := make([]elemID, 0, len(s.elems))
	for i := 1; i < len(s.elems); i++ {
		e := &s.elems[i]
		if e.versioned || e.st.present {
			ids = append(ids, elemID(i))
		}
	}
	sort.Slice(ids, func(i, j int) bool { return s.extLess(ids[i], ids[j]) })
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		e := &s.elems[id]
		var flags byte
		if e.rel {
			flags |= 1
		}
		if e.versioned {
			flags |= 2
		}
		if e.st.present {
			flags |= 4
		}
		if e.st.prev != nil {
			flags |= 8
		}
		b = append(b, flags)
		b = appendString(b, e.source)
		b = appendString(b, e.id)
		b = appendString(b, e.pos)
		if !e.st.present {
			continue
		}
		b = binary.AppendVarint(b, e.st.tsMs)
		b = appendLabels(b, e.st.labels)
		var err error
		if b, err = appendProps(b, e.st.props); err != nil {
			return nil, fmt.Errorf("checkpoint of query %q: element %q: %w", q.spec.ID, e.id, err)
		}
		if e.rel {
			b = appendString(b, s.elems[e.st.from].id)
			b = appendString(b, s.elems[e.st.to].id)
		}
		if e.st.prev != nil {
			b = appendLabels(b, e.st.prev.labels)
			if b, err = appendProps(b, e.st.prev.props); err != nil {
				return nil, fmt.Errorf("checkpoint of query %q: element %q: %w", q.spec.ID, e.id, err)
			}
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// Restore rebuilds a query from a checkpoint written by a query with the
// same spec. Errors wrap ErrBadCheckpoint, ErrCheckpointMismatch, or those
// of New.
func Restore(spec QuerySpec, data []byte) (*Query, error) {
	q, err := New(spec)
	if err != nil {
		return nil, err
	}
	if len(data) < len(checkpointMagic)+4+32+32 || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return nil, fmt.Errorf("%w: not a query checkpoint", ErrBadCheckpoint)
	}
	body, sum := data[:len(data)-32], data[len(data)-32:]
	if want := sha256.Sum256(body); !bytes.Equal(want[:], sum) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadCheckpoint)
	}
	r := &reader{b: body[len(checkpointMagic):]}
	if v := r.u32(); v != checkpointVersion {
		return nil, fmt.Errorf("%w: format version %d, this engine reads %d", ErrBadCheckpoint, v, checkpointVersion)
	}
	fp := Fingerprint(spec)
	if got := r.bytes(32); !bytes.Equal(got, fp[:]) {
		return nil, fmt.Errorf("%w: query %q", ErrCheckpointMismatch, spec.ID)
	}
	if id := r.str(); id != spec.ID && r.err == nil {
		return nil, fmt.Errorf("%w: checkpoint of query %q, restoring %q", ErrCheckpointMismatch, id, spec.ID)
	}
	s := q.store
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		src := r.str()
		s.watermark[src] = r.str()
	}
	var present []elemID
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		flags := r.byte()
		src, id, pos := r.str(), r.str(), r.str()
		rel := flags&1 != 0
		x := s.ensure(src, id, rel)
		e := &s.elems[x]
		e.rel = rel
		e.versioned = flags&2 != 0
		e.pos = pos
		if flags&4 == 0 {
			continue
		}
		st := elemState{present: true, tsMs: r.varint()}
		st.labels = s.labelSet(r.labels())
		st.props = r.props(s)
		if rel {
			from, to := r.str(), r.str()
			st.from = s.ensure(src, from, false)
			st.to = s.ensure(src, to, false)
		}
		if flags&8 != 0 {
			st.prev = &prevState{labels: s.labelSet(r.labels()), props: r.props(s)}
		}
		s.elems[x].st = st
		present = append(present, x)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCheckpoint, r.err)
	}
	for _, x := range present {
		s.index(x)
	}
	sort.Slice(present, func(i, j int) bool { return s.extLess(present[i], present[j]) })
	q.run(present, &view{s: s, empty: true}, &view{s: s}, false)
	return q, nil
}

// Watermark returns the latest position applied per source (sources whose
// changes carried positions).
func (q *Query) Watermark() map[string]string {
	out := make(map[string]string, len(q.store.watermark))
	for k, v := range q.store.watermark {
		out[k] = v
	}
	return out
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendLabels(b []byte, labels []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(labels)))
	for _, l := range labels {
		b = appendString(b, l)
	}
	return b
}

func appendProps(b []byte, props []prop) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(len(props)))
	for _, p := range props {
		b = appendString(b, p.key)
		var err error
		if b, err = appendValue(b, p.val); err != nil {
			return nil, fmt.Errorf("property %q: %w", p.key, err)
		}
	}
	return b, nil
}

// Value tags of the checkpoint format.
const (
	cvNull byte = iota
	cvFalse
	cvTrue
	cvInt
	cvFloat
	cvString
	cvList
	cvMap
)

func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, cvNull), nil
	case bool:
		if x {
			return append(b, cvTrue), nil
		}
		return append(b, cvFalse), nil
	case int64:
		b = append(b, cvInt)
		return binary.AppendVarint(b, x), nil
	case float64:
		b = append(b, cvFloat)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(x)), nil
	case string:
		return appendString(append(b, cvString), x), nil
	case []any:
		b = append(b, cvList)
		b = binary.AppendUvarint(b, uint64(len(x)))
		for _, e := range x {
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]any:
		b = append(b, cvMap)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = appendString(b, k)
			var err error
			if b, err = appendValue(b, x[k]); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("value of type %T cannot be checkpointed", v)
}

// reader decodes checkpoint bytes; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("truncated or malformed %s", what)
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail("bytes")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.fail("string")
		return ""
	}
	return string(r.bytes(int(n)))
}

func (r *reader) labels() []string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("labels")
		return nil
	}
	out := make([]string, 0, n)
	for ; n > 0 && r.err == nil; n-- {
		out = append(out, r.str())
	}
	return out
}

func (r *reader) props(s *store) []prop {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("properties")
		return nil
	}
	out := make([]prop, 0, n)
	for ; n > 0 && r.err == nil; n-- {
		k := s.str(r.str())
		out = append(out, prop{k, r.value(0)})
	}
	return out
}

func (r *reader) value(depth int) any {
	if depth > 1000 {
		r.fail("value (nested too deeply)")
		return nil
	}
	switch r.byte() {
	case cvNull:
		return nil
	case cvFalse:
		return false
	case cvTrue:
		return true
	case cvInt:
		return r.varint()
	case cvFloat:
		b := r.bytes(8)
		if b == nil {
			return nil
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	case cvString:
		return r.str()
	case cvList:
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			r.fail("list")
			return nil
		}
		out := make([]any, 0, n)
		for ; n > 0 && r.err == nil; n-- {
			out = append(out, r.value(depth+1))
		}
		return out
	case cvMap:
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			r.fail("map")
			return nil
		}
		out := make(map[string]any, n)
		for ; n > 0 && r.err == nil; n-- {
			k := r.str()
			out[k] = r.value(depth + 1)
		}
		return out
	}
	r.fail("value tag")
	return nil
}

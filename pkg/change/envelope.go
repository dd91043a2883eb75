package change

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Op is the kind of change an envelope carries.
type Op string

// The operations of the change envelope.
const (
	// OpInsert sets the element's whole state.
	OpInsert Op = "insert"
	// OpUpdate upserts and merges: a property absent from it keeps its value
	// (this is how unchanged TOAST columns travel), a property set to null is
	// removed.
	OpUpdate Op = "update"
	// OpDelete removes the element and its relations.
	OpDelete Op = "delete"
	// OpTruncate removes every element of Element.Labels from the source.
	OpTruncate Op = "truncate"
)

// Element types.
const (
	TypeNode     = "node"
	TypeRelation = "relation"
)

// Element is a node or a relation of the graph that queries see. An element is
// identified by (source, ID); a relation's From and To name elements of its own
// source.
type Element struct {
	Type       string         `json:"type"`
	ID         string         `json:"id,omitempty"`
	Labels     []string       `json:"labels"`
	Properties map[string]any `json:"properties,omitempty"`
	From       string         `json:"from,omitempty"`
	To         string         `json:"to,omitempty"`
}

// Envelope is one change of one element.
//
// Numbers inside Properties and Before are json.Number after Decode, so that
// no precision is lost (Postgres numeric travels as a JSON number literal).
type Envelope struct {
	Op      Op      `json:"op"`
	Source  string  `json:"source"`
	Element Element `json:"element"`
	// Before is the element's previous state where the producer knows it
	// (Postgres: REPLICA IDENTITY FULL, or the key columns with DEFAULT).
	Before map[string]any `json:"before,omitempty"`
	// Unchanged names properties whose values did not change and were not
	// sent (Postgres unchanged TOAST columns). They are absent from
	// Element.Properties, so consumers keep the stored value.
	Unchanged []string `json:"unchanged,omitempty"`
	// TsMs is the commit time in milliseconds since the Unix epoch.
	TsMs int64 `json:"ts_ms"`
	// Position orders the changes of one source in commit order; see
	// ComparePositions. Optional for other producers (then arrival order is
	// the version).
	Position string `json:"position,omitempty"`
}

// ErrInvalid is wrapped by every validation and decoding error of this
// package, so that consumers can classify bad input as permanent.
var ErrInvalid = errors.New("invalid change envelope")

// Decode parses one envelope strictly: unknown fields, trailing data and
// invalid values are errors (wrapping ErrInvalid) that name the field.
func Decode(data []byte) (*Envelope, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var e Envelope
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Encode returns the JSON form of the envelope in a new slice: the bytes of
// json.Marshal(e), written by AppendJSON without reflection. Errors are those
// of AppendJSON (they wrap ErrInvalid and name the failing property).
func (e *Envelope) Encode() ([]byte, error) {
	return e.encodeOwned()
}

// Validate reports every problem of the envelope at once, each naming its
// field. The error wraps ErrInvalid.
func (e *Envelope) Validate() error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	switch e.Op {
	case OpInsert, OpUpdate, OpDelete, OpTruncate:
	case "":
		add("op: missing")
	default:
		add("op: %q is not one of insert, update, delete, truncate", e.Op)
	}
	if e.Source == "" {
		add("source: missing")
	}
	el := e.Element
	switch el.Type {
	case TypeNode, TypeRelation:
	case "":
		add("element.type: missing")
	default:
		add("element.type: %q is not node or relation", el.Type)
	}
	if e.Op == OpTruncate {
		if len(el.Labels) == 0 {
			add("element.labels: truncate needs at least one label")
		}
	} else if el.ID == "" {
		add("element.id: missing")
	}
	for i, l := range el.Labels {
		if l == "" {
			add("element.labels[%d]: empty label", i)
		}
	}
	if el.Type == TypeRelation && e.Op != OpDelete && e.Op != OpTruncate {
		if el.From == "" {
			add("element.from: a relation needs from")
		}
		if el.To == "" {
			add("element.to: a relation needs to")
		}
		if len(el.Labels) == 0 {
			add("element.labels: a relation needs its type as a label")
		}
	}
	if el.Type == TypeNode && (el.From != "" || el.To != "") {
		add("element.from/to: only relations have endpoints")
	}
	if e.TsMs < 0 {
		add("ts_ms: negative")
	}
	for _, u := range e.Unchanged {
		if _, ok := el.Properties[u]; ok {
			add("unchanged: %q is also in element.properties", u)
		}
	}
	if len(e.Unchanged) > 0 && e.Op != OpUpdate {
		add("unchanged: only updates may leave properties unchanged")
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(probs, "; "))
}

// ComparePositions orders two positions of the same source: -1 when a is
// earlier, 0 when equal, +1 when later. A shorter position is earlier; equal
// lengths compare byte by byte. This orders fixed-width positions (Postgres:
// see FormatPGPosition) and unpadded decimal counters alike. The empty
// position (none given) is earlier than every other.
func ComparePositions(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// FormatPGPosition formats a Postgres position: the commit LSN and the index
// of the change inside its transaction, as fixed-width upper-case hex
// ("00000000016B3748/00000003"), so that positions compare in commit order
// and changes sharing an LSN stay distinct.
func FormatPGPosition(commitLSN uint64, index uint32) string {
	return fmt.Sprintf("%016X/%08X", commitLSN, index)
}

// ParsePGPosition is the inverse of FormatPGPosition.
func ParsePGPosition(p string) (commitLSN uint64, index uint32, err error) {
	if len(p) != 25 || p[16] != '/' {
		return 0, 0, fmt.Errorf("%w: position %q is not LSN/index in fixed-width hex", ErrInvalid, p)
	}
	var lsn uint64
	var idx uint32
	if _, err := fmt.Sscanf(p, "%016X/%08X", &lsn, &idx); err != nil {
		return 0, 0, fmt.Errorf("%w: position %q: %v", ErrInvalid, p, err)
	}
	return lsn, idx, nil
}

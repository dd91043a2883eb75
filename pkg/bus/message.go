package bus

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of atomic batches, in messages (see ConnectOptions.MaxBatch).
const (
	// DefaultMaxBatch is nats-server's default limit (max_batch_size), the
	// default for remote servers.
	DefaultMaxBatch = 1000
	// DefaultEmbeddedMaxBatch is the embedded server's limit by default:
	// larger batches spread the server's fixed cost per batch (it stages
	// every batch in a store of its own) over more messages.
	DefaultEmbeddedMaxBatch = 5000
	// MaxBatchLimit is the largest MaxBatch a Conn accepts.
	MaxBatchLimit = 100_000
)

// Message is one message to publish.
type Message struct {
	// Subject is a literal subject (no wildcards) bound to a stream.
	Subject string
	// ID is the Nats-Msg-Id: deterministic (derived from what the message
	// says, e.g. the source position), required. The server stores a message
	// with an id it has seen within the stream's duplicate window only once,
	// which makes re-sending safe.
	ID   string
	Data []byte
	// Header holds optional extra headers. Names starting with "Nats-" are
	// reserved for the server and rejected.
	Header map[string]string
}

// StoredMessage is a message as the stream holds it.
type StoredMessage struct {
	Stream   string
	Subject  string
	Sequence uint64 // stream sequence
	ID       string // Nats-Msg-Id, "" when published without one
	Data     []byte
	// Header holds the message's headers (the first value of each),
	// including Nats-Msg-Id.
	Header map[string]string
	Time   time.Time // when the stream stored it
}

func (m *Message) validate() error {
	var probs []string
	if err := validSubject(m.Subject); err != nil {
		probs = append(probs, err.Error())
	}
	if m.ID == "" {
		probs = append(probs, "id is empty (a deterministic Nats-Msg-Id is required)")
	}
	for k := range m.Header {
		switch {
		case k == "":
			probs = append(probs, "header with an empty name")
		case strings.HasPrefix(strings.ToLower(k), "nats-"):
			probs = append(probs, fmt.Sprintf("header %q is reserved for the server", k))
		case strings.ContainsAny(k, ": \t\r\n"):
			probs = append(probs, fmt.Sprintf("header name %q contains a separator", k))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: subject %q id %q: %s", ErrInvalidMessage, m.Subject, m.ID, strings.Join(probs, "; "))
	}
	return nil
}

func validSubject(s string) error {
	if s == "" {
		return fmt.Errorf("subject is empty")
	}
	// Token by token, without allocating: this runs for every message.
	for start := 0; start <= len(s); {
		end := strings.IndexByte(s[start:], '.')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		tok := s[start:end]
		if tok == "" {
			return fmt.Errorf("subject %q has an empty token", s)
		}
		if tok == "*" || tok == ">" {
			return fmt.Errorf("subject %q has a wildcard", s)
		}
		if strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("subject %q contains whitespace", s)
		}
		start = end + 1
	}
	return nil
}

// natsMsg builds a fresh client message for one send attempt: the client
// mutates headers and reply subjects, so attempts never share one.
func (m *Message) natsMsg() *nats.Msg {
	h := make(nats.Header, len(m.Header)+4)
	for k, v := range m.Header {
		h.Set(k, v)
	}
	// Assigned directly: the name is canonical already (Set would check).
	h[jetstream.MsgIDHeader] = []string{m.ID}
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}
}

// size approximates the wire size the server checks against max_payload.
func (m *Message) size() int {
	n := len(m.Data) + len(jetstream.MsgIDHeader) + len(m.ID) + 16
	for k, v := range m.Header {
		n += len(k) + len(v) + 4
	}
	return n
}

func storedMessage(stream string, r *jetstream.RawStreamMsg) *StoredMessage {
	sm := &StoredMessage{
		Stream:   stream,
		Subject:  r.Subject,
		Sequence: r.Sequence,
		Data:     r.Data,
		Time:     r.Time,
		Header:   make(map[string]string, len(r.Header)),
	}
	for k, v := range r.Header {
		if len(v) > 0 {
			sm.Header[k] = v[0]
		}
	}
	sm.ID = r.Header.Get(jetstream.MsgIDHeader)
	return sm
}

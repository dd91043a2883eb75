package reaction

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/tributary/tributary/internal/config"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/pkg/bus"
	"github.com/tributary/tributary/pkg/change"
)

// Headers of the messages the nats reaction publishes (besides
// Nats-Msg-Id, the idempotency key).
const (
	HeaderQuery = "Tributary-Query"
	HeaderSeq   = "Tributary-Seq"
	HeaderOp    = "Tributary-Op" // per row: c, u or d
)

// NATSOptions tune a nats reaction.
type NATSOptions struct {
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// NATS republishes results to a subject: one message per result message
// (the message's JSON), or with perRow one per row change (a RowChange).
// Every message carries Nats-Msg-Id, the idempotency key (<query>:<seq>,
// <query>:<seq>:<row>). In jetstream mode each publish waits for the
// stream's PubAck, and the stream drops a repeat within its duplicate
// window; in core mode a publish is done once the server has it (a flush),
// and a repeat is delivered again.
//
// It publishes through pkg/bus (Conn.PublishMsg, one message at a time
// with its PubAck, so the target stream need not allow atomic batches;
// Conn.PublishCore in core mode).
//
// Errors: a message the server refuses for good (larger than the stream's
// or the server's limit; bus.ErrRejected, bus.ErrInvalidMessage) wraps
// ErrTargetRejected, a subject the template cannot render validly wraps
// ErrBadResult (both permanent); no stream for the subject
// (bus.ErrNoStream), a timeout, a lost or closed connection wrap
// ErrTargetUnavailable (retried).
type NATS struct {
	id      string
	conn    *bus.Conn
	core    bool
	subject *template.Template
	perRow  bool
	timeout time.Duration
	log     *slog.Logger
}

// NewNATS builds the nats reaction id publishing on conn, which the caller
// owns and closes.
func NewNATS(id string, spec *config.NATSReaction, conn *bus.Conn, opts NATSOptions) (*NATS, error) {
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	subj, err := config.ParseRowTemplate(spec.Subject)
	if err != nil {
		return nil, fmt.Errorf("nats reaction %s: subject: %w", id, err)
	}
	n := &NATS{id: id, conn: conn, subject: subj, perRow: spec.PerRow, timeout: spec.Timeout.D(), log: opts.Logger}
	if n.timeout <= 0 {
		n.timeout = 10 * time.Second
	}
	switch spec.Mode {
	case config.NATSModeJetStream, "":
	case config.NATSModeCore:
		n.core = true
	default:
		return nil, fmt.Errorf("nats reaction %s: mode %q is not jetstream or core", id, spec.Mode)
	}
	return n, nil
}

// React implements Reaction: it publishes the result's messages in order.
func (n *NATS) React(ctx context.Context, r *change.Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats reaction %s, result %s: %w", n.id, IdempotencyKey(r), err)
	}
	msgs, err := n.messages(r)
	if err != nil {
		return bus.Permanent(fmt.Errorf("nats reaction %s: %w", n.id, err))
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	if n.core {
		err := n.conn.PublishCore(ctx, msgs...)
		return n.targetErr(fmt.Sprintf("nats reaction %s, publishing %s", n.id, IdempotencyKey(r)), err)
	}
	// One message at a time, each waiting for its PubAck: the target
	// stream need not allow atomic batches, and a message is never stored
	// before the one ahead of it.
	for _, m := range msgs {
		if _, err := n.conn.PublishMsg(ctx, m); err != nil {
			return n.targetErr(fmt.Sprintf("nats reaction %s, publishing %s to %s", n.id, m.ID, m.Subject), err)
		}
	}
	return nil
}

// targetErr maps a bus publish error to the reaction's sentinels: a
// message the server or the client refuses for good is permanent
// (ErrTargetRejected); anything else is retried (ErrTargetUnavailable).
func (n *NATS) targetErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bus.ErrInvalidMessage), errors.Is(err, bus.ErrRejected):
		return bus.Permanent(fmt.Errorf("%s: %w: %w", what, ErrTargetRejected, err))
	}
	// bus.ErrNoStream, ErrUnavailable, ErrClosed: a stream may be created,
	// the server may come back.
	return fmt.Errorf("%s: %w: %w", what, ErrTargetUnavailable, err)
}

func (n *NATS) messages(r *change.Result) ([]bus.Message, error) {
	newMsg := func(rc *RowChange, key string, v any) (bus.Message, error) {
		var subj strings.Builder
		if err := n.subject.Execute(&subj, map[string]any{"query": bus.Token(rc.Query), "seq": rc.Seq, "op": string(rc.Op)}); err != nil {
			return bus.Message{}, fmt.Errorf("%w: subject of %s: %v", ErrBadResult, key, err)
		}
		if !validPublishSubject(subj.String()) {
			return bus.Message{}, fmt.Errorf("%w: subject of %s: %q is not a literal NATS subject", ErrBadResult, key, subj.String())
		}
		data, err := json.Marshal(v)
		if err != nil {
			return bus.Message{}, fmt.Errorf("%w: encoding %s: %v", ErrBadResult, key, err)
		}
		m := bus.Message{Subject: subj.String(), ID: key, Data: data, Header: map[string]string{
			HeaderQuery: rc.Query,
			HeaderSeq:   strconv.FormatUint(rc.Seq, 10),
		}}
		if rc.Op != "" {
			m.Header[HeaderOp] = string(rc.Op)
		}
		return m, nil
	}
	if !n.perRow {
		m, err := newMsg(&RowChange{Query: r.Query, Seq: r.Seq}, IdempotencyKey(r), r)
		if err != nil {
			return nil, err
		}
		return []bus.Message{m}, nil
	}
	var out []bus.Message
	for _, rc := range RowChanges(r) {
		m, err := newMsg(&rc, rc.Key(), rc)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// validPublishSubject: non-empty tokens, no wildcards, no whitespace.
func validPublishSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	for _, t := range strings.Split(s, ".") {
		if t == "" {
			return false
		}
	}
	return true
}

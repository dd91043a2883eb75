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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
// Errors: a message the server refuses for good (larger than the stream's
// or the server's limit) wraps ErrTargetRejected, a subject the template
// cannot render validly wraps ErrBadResult (both permanent); no stream for
// the subject, a timeout or a lost connection wrap ErrTargetUnavailable
// (retried).
type NATS struct {
	id      string
	nc      *nats.Conn
	js      jetstream.JetStream // nil in core mode
	subject *template.Template
	perRow  bool
	timeout time.Duration
	log     *slog.Logger
}

// NewNATS builds the nats reaction id publishing on nc, which the caller
// owns and closes.
func NewNATS(id string, spec *config.NATSReaction, nc *nats.Conn, opts NATSOptions) (*NATS, error) {
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	subj, err := config.ParseRowTemplate(spec.Subject)
	if err != nil {
		return nil, fmt.Errorf("nats reaction %s: subject: %w", id, err)
	}
	n := &NATS{id: id, nc: nc, subject: subj, perRow: spec.PerRow, timeout: spec.Timeout.D(), log: opts.Logger}
	if n.timeout <= 0 {
		n.timeout = 10 * time.Second
	}
	switch spec.Mode {
	case config.NATSModeJetStream, "":
		if n.js, err = jetstream.New(nc); err != nil {
			return nil, fmt.Errorf("nats reaction %s: %w", id, err)
		}
	case config.NATSModeCore:
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
	for _, m := range msgs {
		if err := n.publish(ctx, m); err != nil {
			return err
		}
	}
	if n.js == nil {
		if err := n.nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("nats reaction %s, result %s: %w: flush: %v", n.id, IdempotencyKey(r), ErrTargetUnavailable, err)
		}
	}
	return nil
}

func (n *NATS) messages(r *change.Result) ([]*nats.Msg, error) {
	newMsg := func(rc *RowChange, key string, v any) (*nats.Msg, error) {
		var subj strings.Builder
		if err := n.subject.Execute(&subj, map[string]any{"query": bus.Token(rc.Query), "seq": rc.Seq, "op": string(rc.Op)}); err != nil {
			return nil, fmt.Errorf("%w: subject of %s: %v", ErrBadResult, key, err)
		}
		if !validPublishSubject(subj.String()) {
			return nil, fmt.Errorf("%w: subject of %s: %q is not a literal NATS subject", ErrBadResult, key, subj.String())
		}
		data, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: encoding %s: %v", ErrBadResult, key, err)
		}
		m := nats.NewMsg(subj.String())
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, key)
		m.Header.Set(HeaderQuery, rc.Query)
		m.Header.Set(HeaderSeq, strconv.FormatUint(rc.Seq, 10))
		if rc.Op != "" {
			m.Header.Set(HeaderOp, string(rc.Op))
		}
		return m, nil
	}
	if !n.perRow {
		m, err := newMsg(&RowChange{Query: r.Query, Seq: r.Seq}, IdempotencyKey(r), r)
		if err != nil {
			return nil, err
		}
		return []*nats.Msg{m}, nil
	}
	var out []*nats.Msg
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

func (n *NATS) publish(ctx context.Context, m *nats.Msg) error {
	key := m.Header.Get(jetstream.MsgIDHeader)
	what := fmt.Sprintf("nats reaction %s, publishing %s to %s", n.id, key, m.Subject)
	var err error
	if n.js != nil {
		_, err = n.js.PublishMsg(ctx, m)
	} else {
		err = n.nc.PublishMsg(m)
	}
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return bus.Permanent(fmt.Errorf("%s: %w: %v", what, ErrTargetRejected, err))
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%s: %w: no stream captures the subject: %v", what, ErrTargetUnavailable, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w: %w", what, ErrTargetUnavailable, ctx.Err())
	}
	return fmt.Errorf("%s: %w: %v", what, ErrTargetUnavailable, err)
}

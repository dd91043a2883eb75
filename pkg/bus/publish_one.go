package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors of the single-message publishes (PublishMsg, PublishCore).
var (
	// ErrNoStream: no JetStream stream captures the subject (the server
	// had no responder for a JetStream publish). Nothing was stored;
	// re-sending succeeds once a stream captures the subject.
	ErrNoStream = errors.New("no stream captures the subject")
	// ErrUnavailable: the server did not confirm the publish: a timeout,
	// a lost or reconnecting connection, a server-side error (5xx, 429, a
	// full stream: then the error also wraps ErrStreamFull). Whether the
	// message was stored is unknown; re-sending with the same id is safe
	// within the stream's duplicate window.
	ErrUnavailable = errors.New("server unavailable")
)

// DefaultCoreFlushTimeout bounds PublishCore's flush when its context has
// no deadline.
const DefaultCoreFlushTimeout = 10 * time.Second

// PubAck is the server's acknowledgement of one stored message.
type PubAck struct {
	Stream   string
	Sequence uint64 // stream sequence
	// Duplicate: the stream held a message with this id already (within
	// its duplicate window) and stored nothing new.
	Duplicate bool
}

// PublishMsg stores one message with its id (Nats-Msg-Id) in whatever
// JetStream stream captures its subject, in a single attempt, and waits
// for the stream's PubAck within ctx. It is for subjects outside the
// topology, such as a nats reaction's target stream, which need not allow
// atomic publish (use a Publisher for the topology's streams: it re-sends
// until stored and publishes atomic batches). The caller re-sends on a
// retryable error with the same id; the stream stores the message once
// within its duplicate window.
//
// Errors: ErrInvalidMessage for a message that cannot be sent (bad subject
// or id, reserved header, above the server's max payload; nothing sent);
// ErrRejected when the server refused it for good (above the stream's
// maximum message size, a header it does not support, ...); ErrNoStream
// when no stream captures the subject; ErrClosed when the connection is
// closed; otherwise ErrUnavailable (timeout, disconnect, server error,
// ctx ended, ErrStreamFull) with the server's or ctx's error. The first
// two are permanent; the others may succeed when re-sent.
func (c *Conn) PublishMsg(ctx context.Context, m Message) (PubAck, error) {
	if err := m.validate(); err != nil {
		return PubAck{}, err
	}
	if n, maxPayload := m.size(), c.nc.MaxPayload(); maxPayload > 0 && int64(n) > maxPayload {
		return PubAck{}, fmt.Errorf("%w: message %s on %s: about %d bytes exceed the server's max payload %d", ErrInvalidMessage, m.ID, m.Subject, n, maxPayload)
	}
	ack, err := c.js.PublishMsg(ctx, m.natsMsg())
	if err != nil {
		return PubAck{}, c.classifyPublishErr(ctx, fmt.Sprintf("publishing %s to %s", m.ID, m.Subject), err)
	}
	return PubAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// PublishCore publishes msgs on core NATS, in order, then flushes: it
// returns nil once the server has received every message (core NATS
// stores nothing: subscribers that are not connected now never see them,
// and a repeat is delivered again). A message's ID, when not empty, is
// sent as its Nats-Msg-Id header, for subscribers that drop repeats.
//
// Errors: ErrInvalidMessage for a message that cannot be sent (bad
// subject, reserved header, above the server's max payload; nothing sent);
// ErrClosed when the connection is closed; ErrUnavailable when the flush
// did not complete within ctx, or DefaultCoreFlushTimeout when ctx has no
// deadline (a lost or reconnecting connection, a slow
// server): some of msgs may have been delivered.
func (c *Conn) PublishCore(ctx context.Context, msgs ...Message) error {
	maxPayload := c.nc.MaxPayload()
	for i := range msgs {
		m := msgs[i]
		noID := m.ID == ""
		if noID {
			m.ID = "-" // validate requires one; not sent
		}
		if err := m.validate(); err != nil {
			return fmt.Errorf("core message %d: %w", i, err)
		}
		if n := m.size(); maxPayload > 0 && int64(n) > maxPayload {
			return fmt.Errorf("%w: core message %d on %s: about %d bytes exceed the server's max payload %d", ErrInvalidMessage, i, m.Subject, n, maxPayload)
		}
	}
	for i := range msgs {
		nm := msgs[i].natsMsg()
		if msgs[i].ID == "" {
			delete(nm.Header, jetstream.MsgIDHeader)
		}
		if err := c.nc.PublishMsg(nm); err != nil {
			return c.classifyPublishErr(ctx, "publishing on "+nm.Subject, err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCoreFlushTimeout)
		defer cancel()
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return c.classifyPublishErr(ctx, fmt.Sprintf("flushing %d core messages", len(msgs)), err)
	}
	return nil
}

// classifyPublishErr wraps a client or server error of a single publish
// with the package's sentinel (see PublishMsg).
func (c *Conn) classifyPublishErr(ctx context.Context, what string, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), c.nc.IsClosed():
		return fmt.Errorf("%s: %w: %w", what, ErrClosed, err)
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrInvalidMsg), errors.Is(err, nats.ErrBadHeaderMsg):
		return fmt.Errorf("%s: %w: %w", what, ErrInvalidMessage, err)
	case errors.Is(err, nats.ErrHeadersNotSupported):
		return fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%s: %w: %w", what, ErrNoStream, err)
	case isStreamFull(err):
		return fmt.Errorf("%s: %w: %w: %w", what, ErrUnavailable, ErrStreamFull, err)
	case errors.As(err, &apiErr) && !retryablePublishErr(err):
		return fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%s: %w: %w (%v)", what, ErrUnavailable, ctx.Err(), err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReplayOptions say which history Replay reads.
type ReplayOptions struct {
	// Stream is the stream to read. Required.
	Stream string
	// FilterSubjects restrict the replay to these subjects (wildcards
	// allowed, not overlapping); empty means the whole stream.
	FilterSubjects []string
	// Through is the last stream sequence delivered. 0 means the stream's
	// last sequence when Replay starts.
	Through uint64
	// Batch is how many messages one pull asks for. Default 1000.
	Batch int
}

// Replay delivers to fn, in stream order, every stored message of the
// stream that matches the filters and whose sequence is at most Through,
// then returns the sequence the replay covers: Through (or, when Through
// is 0, the stream's last sequence when Replay started). Messages
// published meanwhile beyond that point are not delivered.
//
// It reads with an ordered consumer (ephemeral, no acknowledgements,
// re-created by the client after a gap or a lost connection, deleted when
// Replay returns), so it leaves nothing behind and changes no durable
// consumer's state: it is the way to rebuild state from history. The
// Delivery's NumDelivered is always 1 and its Consumer is "".
//
// fn's error stops the replay and is returned as is; ctx bounds the whole
// replay. Errors wrap ErrConfig for bad options and ErrStreamNotFound when
// the stream does not exist.
func (c *Conn) Replay(ctx context.Context, opts ReplayOptions, fn func(*Delivery) error) (uint64, error) {
	if opts.Stream == "" {
		return 0, fmt.Errorf("%w: replay: stream: required", ErrConfig)
	}
	for _, f := range opts.FilterSubjects {
		if f == "" || strings.ContainsAny(f, " \t\r\n") {
			return 0, fmt.Errorf("%w: replay of %s: filterSubjects: %q is not a subject", ErrConfig, opts.Stream, f)
		}
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	through := opts.Through
	if through == 0 {
		last, err := c.StreamLastSequence(ctx, opts.Stream)
		if err != nil {
			return 0, err
		}
		through = last
	}
	// The last matching message bounds the reading: without it, a replay
	// whose filters match nothing up to through would wait for a message
	// that never comes.
	var lastMatch uint64
	filters := opts.FilterSubjects
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for _, f := range filters {
		m, err := c.LastMessage(ctx, opts.Stream, f)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("replay of %s: %w", opts.Stream, err)
		}
		lastMatch = max(lastMatch, m.Sequence)
	}
	end := min(through, lastMatch)
	if end == 0 {
		return through, nil
	}
	cons, err := c.js.OrderedConsumer(ctx, opts.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    opts.FilterSubjects,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("replay: stream %s: %w", opts.Stream, ErrStreamNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("replay of %s: creating the ordered consumer: %w", opts.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(opts.Batch))
	if err != nil {
		return 0, fmt.Errorf("replay of %s: %w", opts.Stream, err)
	}
	defer func() {
		it.Stop()
		// Delete the server's consumer now rather than after its
		// inactivity threshold: replays can be frequent.
		if info := cons.CachedInfo(); info != nil && info.Name != "" {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := c.js.DeleteConsumer(dctx, opts.Stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				c.log.Debug("deleting a replay's ordered consumer failed; the server removes it when inactive", "stream", opts.Stream, "err", err)
			}
		}
	}()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("replay of %s: %w", opts.Stream, ctx.Err())
			}
			return 0, fmt.Errorf("replay of %s: reading: %w", opts.Stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return 0, fmt.Errorf("replay of %s: message without metadata: %w", opts.Stream, err)
		}
		if md.Sequence.Stream > end {
			return through, nil
		}
		d := newDelivery(m, md)
		d.Consumer = ""
		if err := fn(d); err != nil {
			return 0, err
		}
		if md.Sequence.Stream == end || md.NumPending == 0 {
			return through, nil
		}
	}
}

// StreamLastSequence returns the sequence of the last message stored in a
// stream (0 when it never held one). The error wraps ErrStreamNotFound when
// the stream does not exist.
func (c *Conn) StreamLastSequence(ctx context.Context, stream string) (uint64, error) {
	s, err := c.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("stream %s: %w", stream, ErrStreamNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("looking up stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	return info.State.LastSeq, nil
}

// DurableState is the server's view of a durable consumer, read without
// consuming (see Conn.DurableState).
type DurableState struct {
	// Found is false when the consumer does not exist (the other fields
	// are then zero).
	Found bool
	// Pending messages match the consumer and were never delivered;
	// AckPending were delivered and are not acknowledged yet.
	Pending    uint64
	AckPending int
	// AckFloor is the stream sequence below which the consumer has
	// acknowledged (or terminated) every message. Messages above it may
	// still have been acknowledged one by one.
	AckFloor uint64
}

// DurableState reads a durable consumer's backlog and ack floor from the
// server, e.g. to tell whether a query has worked off its input. The error
// wraps ErrStreamNotFound when the stream does not exist.
func (c *Conn) DurableState(ctx context.Context, stream, durable string) (DurableState, error) {
	cons, err := c.js.Consumer(ctx, stream, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return DurableState{}, nil
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return DurableState{}, fmt.Errorf("consumer %s: stream %s: %w", durable, stream, ErrStreamNotFound)
	}
	if err != nil {
		return DurableState{}, fmt.Errorf("looking up consumer %s on %s: %w", durable, stream, err)
	}
	info := cons.CachedInfo()
	return DurableState{Found: true, Pending: info.NumPending, AckPending: info.NumAckPending, AckFloor: info.AckFloor.Stream}, nil
}

// ConsumerAckFloor returns a durable consumer's ack floor (DurableState),
// 0 when the consumer does not exist.
func (c *Conn) ConsumerAckFloor(ctx context.Context, stream, durable string) (uint64, error) {
	st, err := c.DurableState(ctx, stream, durable)
	return st.AckFloor, err
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredDeadLetter is a dead letter together with its place in the
// dead-letter stream.
type StoredDeadLetter struct {
	DeadLetter
	// Seq is the dead letter's sequence in the dead-letter stream: the
	// handle GetDeadLetter and DeleteDeadLetter take.
	Seq  uint64
	Time time.Time // when the dead-letter stream stored it
}

// ListDeadLetters returns, oldest first, the dead letters stored in
// stream (the dead-letter stream) on subject (one consumer's dead-letter
// subject, e.g. Topology.DeadLetterSubject), read with Replay: no state
// changes. A message on the subject that is not a dead letter is skipped.
// Errors wrap ErrStreamNotFound when the stream does not exist.
func (c *Conn) ListDeadLetters(ctx context.Context, stream, subject string) ([]*StoredDeadLetter, error) {
	var out []*StoredDeadLetter
	_, err := c.Replay(ctx, ReplayOptions{Stream: stream, FilterSubjects: []string{subject}}, func(d *Delivery) error {
		dl, err := ParseDeadLetter(&StoredMessage{Stream: stream, Subject: d.Subject, Sequence: d.StreamSeq, ID: d.ID, Data: d.Data, Header: d.Header, Time: d.Time})
		if err != nil {
			c.log.Warn("skipping a message that is not a dead letter", "stream", stream, "seq", d.StreamSeq, "err", err)
			return nil
		}
		out = append(out, &StoredDeadLetter{DeadLetter: *dl, Seq: d.StreamSeq, Time: d.Time})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing dead letters on %s: %w", subject, err)
	}
	return out, nil
}

// GetDeadLetter returns the dead letter at seq of stream. When subject is
// not empty the message must be on it. Errors wrap ErrNotFound (no
// message at seq, or one on another subject), ErrInvalidMessage (not a
// dead letter) or ErrStreamNotFound.
func (c *Conn) GetDeadLetter(ctx context.Context, stream, subject string, seq uint64) (*StoredDeadLetter, error) {
	s, err := c.dlqStream(ctx, stream)
	if err != nil {
		return nil, err
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dead letter %d in %s: %w", seq, stream, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d in %s: %w", seq, stream, err)
	}
	if subject != "" && raw.Subject != subject {
		return nil, fmt.Errorf("dead letter %d in %s: on %s, not %s: %w", seq, stream, raw.Subject, subject, ErrNotFound)
	}
	sm := storedMessage(stream, raw)
	dl, err := ParseDeadLetter(sm)
	if err != nil {
		return nil, err
	}
	return &StoredDeadLetter{DeadLetter: *dl, Seq: seq, Time: raw.Time}, nil
}

// DeleteDeadLetter removes the dead letter at seq from stream (after it
// was re-driven or judged useless). Errors wrap ErrNotFound when there is
// no message at seq, ErrStreamNotFound when the stream does not exist.
func (c *Conn) DeleteDeadLetter(ctx context.Context, stream string, seq uint64) error {
	s, err := c.dlqStream(ctx, stream)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		// The client keeps only the text of the server's answer.
		if errors.Is(err, jetstream.ErrMsgNotFound) ||
			errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(err.Error(), "no message found") {
			return fmt.Errorf("deleting dead letter %d in %s: %w", seq, stream, ErrNotFound)
		}
		return fmt.Errorf("deleting dead letter %d in %s: %w", seq, stream, err)
	}
	return nil
}

// PurgeDeadLetters removes every dead letter stored in stream on subject
// and returns how many it removed. Errors wrap ErrStreamNotFound when the
// stream does not exist; an empty subject is refused (ErrConfig): it would
// purge every consumer's dead letters.
func (c *Conn) PurgeDeadLetters(ctx context.Context, stream, subject string) (uint64, error) {
	if subject == "" {
		return 0, fmt.Errorf("%w: purging dead letters of %s: subject: required", ErrConfig, stream)
	}
	s, err := c.dlqStream(ctx, stream)
	if err != nil {
		return 0, err
	}
	before, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("purging dead letters on %s: %w", subject, err)
	}
	n := before.State.Subjects[subject]
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return 0, fmt.Errorf("purging dead letters on %s: %w", subject, err)
	}
	return n, nil
}

func (c *Conn) dlqStream(ctx context.Context, stream string) (jetstream.Stream, error) {
	s, err := c.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("dead-letter stream %s: %w", stream, ErrStreamNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up dead-letter stream %s: %w", stream, err)
	}
	return s, nil
}

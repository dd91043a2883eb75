package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/retry"
)

// declare creates or updates the durable consumer. An existing consumer
// keeps its deliver policy and start position (the server refuses to
// change them, and a consumer recreated at a start sequence must not
// conflict with the next declaration). A missing one is created to deliver
// from resumeAt when it is not 0 (a recreation), else from the options'
// StartSeq, or everything when that is 0 too.
func (k *Consumer) declare(ctx context.Context, resumeAt uint64) (jetstream.Consumer, error) {
	o := k.opts
	cfg := o.consumerConfig()
	existing, err := k.conn.js.Consumer(ctx, o.Stream, o.Durable)
	switch {
	case err == nil:
		have := existing.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("consumer %s: stream %s: %w", o.Durable, o.Stream, ErrStreamNotFound)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if resumeAt == 0 {
			resumeAt = o.StartSeq
		}
		if resumeAt > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, resumeAt
		}
	default:
		return nil, fmt.Errorf("looking up consumer %s on stream %s: %w", o.Durable, o.Stream, err)
	}
	cons, err := k.conn.js.CreateOrUpdateConsumer(ctx, o.Stream, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("consumer %s: stream %s: %w", o.Durable, o.Stream, ErrStreamNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("creating or updating consumer %s on stream %s: %w", o.Durable, o.Stream, err)
	}
	return cons, nil
}

// checkConsumer asks the server whether the durable consumer still exists
// after a failed pull; when it does not, it marks the consumer lost (the
// fetch loop recreates it) and reports whether it did.
func (k *Consumer) checkConsumer() bool {
	ctx, cancel := context.WithTimeout(k.stopCtx, k.opts.AckWait)
	defer cancel()
	_, err := k.conn.js.Consumer(ctx, k.opts.Stream, k.opts.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		k.markLost()
		return true
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		k.degrade("consumer", fmt.Sprintf("stream %s does not exist (deleted?): nothing can be consumed", k.opts.Stream))
		k.log.Error("the consumer's stream does not exist", "stream", k.opts.Stream)
	}
	return false
}

// deletionSettle is how long a deleted consumer is given to be removed
// completely before it is recreated.
const deletionSettle = 500 * time.Millisecond

// markLost records that the durable consumer is gone from the server and
// reports it at once (the recreation may wait for a handler to finish).
func (k *Consumer) markLost() {
	if k.lost.CompareAndSwap(false, true) {
		k.log.Error("the durable consumer was deleted on the server; recreating it")
		k.degrade("consumer", fmt.Sprintf("durable consumer %s on stream %s was deleted on the server; recreating it", k.opts.Durable, k.opts.Stream))
	}
}

// streamCreated is when the consumer's stream was created (zero if
// unknown).
func (k *Consumer) streamCreated(ctx context.Context) time.Time {
	s, err := k.conn.js.Stream(ctx, k.opts.Stream)
	if err != nil {
		return time.Time{}
	}
	return s.CachedInfo().Created
}

// checkStreamIdentity forgets the tracker's record when the stream was
// created anew (deleted and created again): its sequences restart at 1, so
// the recreated consumer must start from its beginning.
func (k *Consumer) checkStreamIdentity() {
	ctx, cancel := context.WithTimeout(k.stopCtx, k.opts.AckWait)
	defer cancel()
	created := k.streamCreated(ctx)
	if created.IsZero() || created.Equal(k.created) {
		return
	}
	k.log.Warn("the consumer's stream was created anew; consuming it from its beginning", "created", created)
	k.track.reset()
	k.created = created
}

// stillLost asks the server again before anything is dropped or
// recreated; a consumer found after all is used as it is.
func (k *Consumer) stillLost() bool {
	ctx, cancel := context.WithTimeout(k.stopCtx, k.opts.AckWait)
	defer cancel()
	_, err := k.conn.js.Consumer(ctx, k.opts.Stream, k.opts.Durable)
	if err == nil {
		k.lost.Store(false)
		k.log.Warn("the durable consumer reported missing exists after all")
		k.degrade("consumer", "")
		return false
	}
	return true
}

// repairConsumer recreates a durable consumer deleted on the server, with
// the same configuration, resuming at the oldest message not known to be
// settled. It retries until it succeeds or the Consumer stops, reporting
// the problem through Degrade meanwhile. The caller makes sure no handler
// is running.
func (k *Consumer) repairConsumer() {
	const cause = "consumer"
	bo := retry.NewBackOff(100*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		k.checkStreamIdentity()
		at := k.track.resumeAt()
		reason := fmt.Sprintf("durable consumer %s on stream %s was deleted on the server; recreating it from stream sequence %d", k.opts.Durable, k.opts.Stream, at)
		if attempt == 1 {
			k.degrade(cause, reason)
			// nats-server answers the pulls of a deleted consumer before it
			// removes the consumer's directory; a consumer recreated in
			// between loses its files (seen with 2.15.2: "meta.inf.tmp: no
			// such file or directory"). Give the deletion time to finish.
			if retry.Sleep(k.stopCtx, deletionSettle) != nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(k.stopCtx, k.opts.AckWait)
		cons, err := k.declare(ctx, at)
		cancel()
		if err == nil {
			k.consMu.Lock()
			k.cons = cons
			k.consMu.Unlock()
			k.lost.Store(false)
			k.m.recreated.Inc()
			k.log.Warn("recreated the durable consumer", "resume_at", at,
				"deliver_policy", cons.CachedInfo().Config.DeliverPolicy.String())
			k.degrade(cause, "")
			return
		}
		k.degrade(cause, reason+": "+err.Error())
		wait := bo.NextBackOff()
		k.log.Error("recreating the durable consumer failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		if retry.Sleep(k.stopCtx, wait) != nil {
			return
		}
	}
}

// subjectMatches reports whether the literal subject matches filter (with
// the '*' and '>' wildcards).
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// repairStreamFor recreates the stream of the applied topology
// (EnsureTopology) that takes subject, when it is missing, and returns its
// name. The error says why it could not.
func (c *Conn) repairStreamFor(ctx context.Context, subject string) (string, error) {
	t := c.topology.Load()
	if t == nil {
		return "", fmt.Errorf("no stream takes subject %s, and this connection applied no topology to recreate it from", subject)
	}
	for _, s := range t.Streams() {
		for _, f := range s.Subjects {
			if subjectMatches(f, subject) {
				if err := c.ensureStream(ctx, streamConfig(s)); err != nil {
					return s.Name, err
				}
				return s.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no stream takes subject %s, and no stream of the applied topology declares it", subject)
}

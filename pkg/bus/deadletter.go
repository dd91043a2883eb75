package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/retry"
)

// Headers of a dead letter. Its body is the original message's data; the
// original message's own headers (except the server's Nats-* headers) are
// kept too.
const (
	HeaderDLQReason     = "Tributary-Dlq-Reason"     // why the consumer gave up
	HeaderDLQSubject    = "Tributary-Dlq-Subject"    // original subject
	HeaderDLQStream     = "Tributary-Dlq-Stream"     // original stream
	HeaderDLQConsumer   = "Tributary-Dlq-Consumer"   // consumer that gave up
	HeaderDLQSequence   = "Tributary-Dlq-Sequence"   // original stream sequence
	HeaderDLQDeliveries = "Tributary-Dlq-Deliveries" // deliveries before giving up
	HeaderDLQMsgID      = "Tributary-Dlq-Msg-Id"     // original Nats-Msg-Id, if any
	HeaderDLQTime       = "Tributary-Dlq-Time"       // when it was dead-lettered, RFC 3339
)

// maxReasonLen bounds the reason header.
const maxReasonLen = 1024

// DeadLetter is a message a consumer gave up on, as read back from the
// dead-letter stream.
type DeadLetter struct {
	Reason     string
	Subject    string // original subject
	Stream     string // original stream
	Consumer   string
	Sequence   uint64 // original stream sequence
	Deliveries uint64
	MsgID      string
	Data       []byte
	Header     map[string]string // all headers of the dead letter
}

// ParseDeadLetter reads the dead-letter headers of a message stored in a
// dead-letter stream. The error wraps ErrInvalidMessage when m is not a dead
// letter.
func ParseDeadLetter(m *StoredMessage) (*DeadLetter, error) {
	h := m.Header
	if h[HeaderDLQReason] == "" || h[HeaderDLQSubject] == "" {
		return nil, fmt.Errorf("%w: stream %s sequence %d is not a dead letter (no %s header)", ErrInvalidMessage, m.Stream, m.Sequence, HeaderDLQReason)
	}
	seq, err1 := strconv.ParseUint(h[HeaderDLQSequence], 10, 64)
	n, err2 := strconv.ParseUint(h[HeaderDLQDeliveries], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: dead letter %s/%d: bad sequence %q or deliveries %q", ErrInvalidMessage, m.Stream, m.Sequence, h[HeaderDLQSequence], h[HeaderDLQDeliveries])
	}
	return &DeadLetter{
		Reason: h[HeaderDLQReason], Subject: h[HeaderDLQSubject], Stream: h[HeaderDLQStream],
		Consumer: h[HeaderDLQConsumer], Sequence: seq, Deliveries: n, MsgID: h[HeaderDLQMsgID],
		Data: m.Data, Header: h,
	}, nil
}

// deadLetterMsg builds the dead letter of d. Its id is derived from the
// original stream and sequence, so dead-lettering the same message again
// (after a crash between publish and Term) stores it once.
func deadLetterMsg(subject string, d *Delivery, reason string) *nats.Msg {
	h := make(nats.Header, len(d.Header)+8)
	for k, v := range d.Header {
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			h.Set(k, v)
		}
	}
	h.Set(HeaderDLQReason, cleanReason(reason))
	h.Set(HeaderDLQSubject, d.Subject)
	h.Set(HeaderDLQStream, d.Stream)
	h.Set(HeaderDLQConsumer, d.Consumer)
	h.Set(HeaderDLQSequence, strconv.FormatUint(d.StreamSeq, 10))
	h.Set(HeaderDLQDeliveries, strconv.FormatUint(d.NumDelivered, 10))
	if d.ID != "" {
		h.Set(HeaderDLQMsgID, d.ID)
	}
	h.Set(HeaderDLQTime, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, "dlq."+d.Stream+"."+d.Consumer+"."+strconv.FormatUint(d.StreamSeq, 10))
	return &nats.Msg{Subject: subject, Data: d.Data, Header: h}
}

// cleanReason makes reason a single bounded header line.
func cleanReason(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, reason)
	if reason == "" {
		reason = "unknown"
	}
	return truncate(reason, maxReasonLen)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// errNoDeadLetterStream: no stream takes the dead-letter subject.
var errNoDeadLetterStream = errors.New("no stream takes the dead-letter subject")

// storeDeadLetter stores the dead letter of d, recreating a missing
// dead-letter stream from the applied topology first. When it cannot, it
// reports the failure (Error log, metric, Degrade until a dead letter of
// the message is stored or the message is acknowledged) and returns it:
// the caller keeps the message.
func (k *Consumer) storeDeadLetter(ctx context.Context, d *Delivery, reason string) error {
	err := k.publishDeadLetter(ctx, d, reason)
	if errors.Is(err, errNoDeadLetterStream) {
		rctx, cancel := context.WithTimeout(ctx, k.opts.AckWait)
		name, rerr := k.conn.repairStreamFor(rctx, k.opts.DeadLetterSubject)
		cancel()
		if rerr != nil {
			err = fmt.Errorf("%w (%v)", err, rerr)
		} else {
			k.log.Warn("recreated the missing dead-letter stream", "dlq_stream", name, "dlq_subject", k.opts.DeadLetterSubject)
			err = k.publishDeadLetter(ctx, d, reason)
		}
	}
	if err != nil {
		k.deadLetterFailed(d, err)
		return err
	}
	k.deadLetterResolved(d.StreamSeq)
	return nil
}

// deadLetterFailed reports a dead letter that could not be stored.
func (k *Consumer) deadLetterFailed(d *Delivery, err error) {
	k.m.deadLetterFailures.Inc()
	k.log.Error("storing a dead letter failed; the message is kept and retried later", "stream_seq", d.StreamSeq,
		"subject", d.Subject, "dlq_subject", k.opts.DeadLetterSubject, "err", err)
	k.dlqMu.Lock()
	k.dlqFailed[d.StreamSeq] = err.Error()
	n := len(k.dlqFailed)
	k.dlqMu.Unlock()
	k.degrade("dead letters", fmt.Sprintf("%d messages cannot be dead-lettered on %s and are kept (last: stream sequence %d: %v)",
		n, k.opts.DeadLetterSubject, d.StreamSeq, err))
}

// deadLetterResolved clears the report of a failed dead letter once the
// message is dead-lettered or acknowledged after all.
func (k *Consumer) deadLetterResolved(seq uint64) {
	k.dlqMu.Lock()
	_, ok := k.dlqFailed[seq]
	delete(k.dlqFailed, seq)
	n := len(k.dlqFailed)
	k.dlqMu.Unlock()
	if ok && n == 0 {
		k.degrade("dead letters", "")
	}
}

// publishDeadLetter stores the dead letter, re-sending on transient errors
// for at most AckWait (or until ctx ends). A missing stream gives
// errNoDeadLetterStream at once.
func (k *Consumer) publishDeadLetter(ctx context.Context, d *Delivery, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, k.opts.AckWait)
	defer cancel()
	bo := retry.NewBackOff(100*time.Millisecond, 2*time.Second)
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, max(k.opts.AckWait/4, time.Second))
		_, err := k.conn.js.PublishMsg(actx, deadLetterMsg(k.opts.DeadLetterSubject, d, reason))
		acancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
			return fmt.Errorf("dead letter of %s/%d on %s: %w", d.Stream, d.StreamSeq, k.opts.DeadLetterSubject, errNoDeadLetterStream)
		case !retryablePublishErr(err):
			return fmt.Errorf("%w: dead letter of %s/%d on %s: %w", ErrRejected, d.Stream, d.StreamSeq, k.opts.DeadLetterSubject, err)
		}
		k.log.Warn("publishing a dead letter failed; retrying", "stream_seq", d.StreamSeq, "attempt", attempt, "err", err)
		if serr := retry.Sleep(ctx, bo.NextBackOff()); serr != nil {
			return fmt.Errorf("dead letter of %s/%d on %s: not stored within %s (last attempt: %w)", d.Stream, d.StreamSeq, k.opts.DeadLetterSubject, k.opts.AckWait, err)
		}
	}
}

// PublishDeadLetter stores the dead letter of d on subject by hand, with
// the headers and the message id a Consumer named d.Consumer would give it
// (the id is derived from d.Stream, d.Consumer and d.StreamSeq, so a
// message dead-lettered again, by hand or by that consumer, is stored once
// within the dead-letter stream's duplicate window). It is for a caller
// that handles part of a stream outside a Consumer, e.g. a Replay ahead of
// a durable created at a later StartSeq. A missing dead-letter stream is
// recreated from the applied topology first; transient errors are retried
// until ctx ends. Errors wrap ErrConfig (bad subject or d), ErrRejected
// (the server refused the message) or the last publish error.
func (c *Conn) PublishDeadLetter(ctx context.Context, subject string, d *Delivery, reason string) error {
	if err := validSubject(subject); err != nil {
		return fmt.Errorf("%w: dead letter: subject: %v", ErrConfig, err)
	}
	if d == nil || d.Stream == "" || d.Consumer == "" || d.StreamSeq == 0 {
		return fmt.Errorf("%w: dead letter: the delivery needs a stream, a consumer and a stream sequence", ErrConfig)
	}
	msg := deadLetterMsg(subject, d, reason)
	bo := retry.NewBackOff(100*time.Millisecond, 2*time.Second)
	repaired := false
	for attempt := 1; ; attempt++ {
		_, err := c.js.PublishMsg(ctx, msg)
		switch {
		case err == nil:
			return nil
		case !repaired && (errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)):
			repaired = true
			name, rerr := c.repairStreamFor(ctx, subject)
			if rerr != nil {
				return fmt.Errorf("dead letter of %s/%d on %s: %w (%v)", d.Stream, d.StreamSeq, subject, errNoDeadLetterStream, rerr)
			}
			c.log.Warn("recreated the missing dead-letter stream", "dlq_stream", name, "dlq_subject", subject)
			continue
		case !retryablePublishErr(err):
			return fmt.Errorf("%w: dead letter of %s/%d on %s: %w", ErrRejected, d.Stream, d.StreamSeq, subject, err)
		}
		c.log.Warn("publishing a dead letter failed; retrying", "stream", d.Stream, "stream_seq", d.StreamSeq, "attempt", attempt, "err", err)
		if serr := retry.Sleep(ctx, bo.NextBackOff()); serr != nil {
			return fmt.Errorf("dead letter of %s/%d on %s: not stored (last attempt: %w)", d.Stream, d.StreamSeq, subject, err)
		}
	}
}

package bus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// publishDeadLetter stores the dead letter, re-sending on transient errors
// until ctx ends.
func (c *Consumer) publishDeadLetter(ctx context.Context, d *Delivery, reason string) error {
	bo := newBackOff(100*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.opts.AckWait)
		_, err := c.conn.js.PublishMsg(actx, deadLetterMsg(c.opts.DeadLetterSubject, d, reason))
		cancel()
		if err == nil {
			return nil
		}
		if !retryablePublishErr(err) {
			return fmt.Errorf("%w: dead letter of %s/%d on %s: %w", ErrRejected, d.Stream, d.StreamSeq, c.opts.DeadLetterSubject, err)
		}
		c.log.Warn("publishing a dead letter failed; retrying", "stream_seq", d.StreamSeq, "attempt", attempt, "err", err)
		if serr := sleepCtx(ctx, bo.NextBackOff()); serr != nil {
			return fmt.Errorf("dead letter of %s/%d on %s: %w (last attempt: %v)", d.Stream, d.StreamSeq, c.opts.DeadLetterSubject, serr, err)
		}
	}
}

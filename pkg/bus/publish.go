package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/retry"
)

// PublisherOptions tune a Publisher. The zero value is usable.
type PublisherOptions struct {
	// Name labels the metrics and the logs. Default "publisher".
	Name string
	// PublishTimeout bounds one attempt: the wait for one atomic batch's
	// commit (or, after a duplicate answer, one message's PubAck). After it
	// the batch is re-sent with the same ids. Default 5s.
	PublishTimeout time.Duration
	// RetryWait is the delay before the first re-send, doubled (with
	// jitter) per failed attempt up to MaxRetryWait. Defaults 100ms and 5s.
	RetryWait    time.Duration
	MaxRetryWait time.Duration
	// Logger defaults to the connection's logger; Registerer to the
	// connection's registerer.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Publisher stores messages in JetStream streams as atomic batches
// (PublishBatch, or StageBatch then Commit: all messages of a batch are
// stored or none, with one fsync per batch on a SyncAlways server) and
// never loses or duplicates a message it was given: every message carries
// a caller-supplied deterministic id (Nats-Msg-Id), an attempt that times
// out or is cut by a disconnect is re-sent with the same bytes and the same
// ids, and the server's "duplicate" answer counts as success. A full stream
// (ErrStreamFull) is re-sent until space is freed; Stalled says why the
// current batch waits.
//
// Deduplication lasts the stream's duplicate window (2 minutes by default):
// re-sending a message later than that stores it again.
//
// Create it with Conn.NewPublisher and end it with Close. It owns no
// goroutine. Its methods are safe for concurrent use; one batch is used by
// one goroutine at a time.
type Publisher struct {
	c    *Conn
	opts PublisherOptions
	log  *slog.Logger
	m    *pubMetrics

	mu     sync.Mutex // guards closed
	closed bool

	stallMu sync.Mutex
	stall   error // why the current publish is being re-sent; nil after a success
}

func (o *PublisherOptions) setDefaults(c *Conn) {
	if o.Name == "" {
		o.Name = "publisher"
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.RetryWait == 0 {
		o.RetryWait = 100 * time.Millisecond
	}
	if o.MaxRetryWait == 0 {
		o.MaxRetryWait = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = c.log
	}
	if o.Registerer == nil {
		o.Registerer = c.opts.Registerer
	}
}

func (o *PublisherOptions) validate() error {
	var probs []error
	if o.PublishTimeout < 0 {
		probs = append(probs, fmt.Errorf("publishTimeout %s: must be positive", o.PublishTimeout))
	}
	if o.RetryWait < 0 || o.MaxRetryWait < o.RetryWait {
		probs = append(probs, fmt.Errorf("retryWait %s / maxRetryWait %s: need 0 < retryWait <= maxRetryWait", o.RetryWait, o.MaxRetryWait))
	}
	if err := errors.Join(probs...); err != nil {
		return fmt.Errorf("%w: publisher %s: %w", ErrConfig, o.Name, err)
	}
	return nil
}

// NewPublisher returns a Publisher on c. Options are validated (errors wrap
// ErrConfig). The caller must Close it.
func (c *Conn) NewPublisher(opts PublisherOptions) (*Publisher, error) {
	opts.setDefaults(c)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newPubMetrics(opts.Registerer, opts.Name)
	if err != nil {
		return nil, err
	}
	return &Publisher{
		c:    c,
		opts: opts,
		log:  opts.Logger.With("component", "publisher", "id", opts.Name),
		m:    m,
	}, nil
}

// Close stops the publisher: StageBatch and PublishBatch then return
// ErrClosed, and a Commit in progress returns ErrClosed at its next re-send
// (an attempt in flight still completes). It waits for nothing and always
// returns nil; ctx is accepted for symmetry with the other Close methods.
// It is safe to call more than once.
func (p *Publisher) Close(context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

// newBackOff and sleepCtx are the package's old names for retry.NewBackOff
// and retry.Sleep, kept while the consumer code still calls them.
func newBackOff(initial, max time.Duration) *backoff.ExponentialBackOff {
	return retry.NewBackOff(initial, max)
}

func sleepCtx(ctx context.Context, d time.Duration) error { return retry.Sleep(ctx, d) }

// Server error codes the publisher treats specially.
const (
	errCodeAccountResources   = 10002 // the account's JetStream storage limit reached
	errCodeInsufficientRes    = 10023 // the server's JetStream storage exhausted
	errCodeStoreFailed        = 10077 // storing failed; "maximum bytes exceeded" on a full stream
	errCodeBatchIncomplete    = 10176 // the server abandoned an incomplete batch
	errCodeBatchDuplicate     = 10201 // an atomic batch holds an id the stream has stored
	errCodeAtomicTooMany      = 10210
	errCodeBatchTooMany       = 10211
	apiStatusTooManyRequests  = 429
	apiStatusRequestTimeout   = 408
	apiStatusServerErrorStart = 500
)

// retryablePublishErr says whether re-sending the same message can succeed:
// timeouts, disconnects, missing responders (a stream leader election),
// server-side 5xx/429 answers (a full stream is 503) and exhausted JetStream
// storage. Client-side and other 4xx rejections are permanent.
func retryablePublishErr(err error) bool {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrInvalidMsg),
		errors.Is(err, nats.ErrHeadersNotSupported),
		errors.Is(err, jetstream.ErrAsyncPublishReplySubjectSet):
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeBatchIncomplete, errCodeAtomicTooMany, errCodeBatchTooMany,
			errCodeAccountResources: // storage is freed by expiry or a purge
			return true
		}
		return apiErr.Code >= apiStatusServerErrorStart || apiErr.Code == apiStatusTooManyRequests ||
			apiErr.Code == apiStatusRequestTimeout
	}
	return true
}

func isAPIError(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// ErrStreamFull: a stream refused a message because it reached its size
// limit (MaxBytes, which makes the stream discard new messages, never old
// ones), or because the server's JetStream storage is exhausted. Nothing
// was stored; PublishBatch and Commit keep re-sending until space is freed
// (by MaxAge expiry or a purge) or their context ends, and Stalled reports
// it meanwhile. The error is a *StreamFullError. A stream's MaxBytes refuses
// an atomic batch as a whole; with exhausted server or account storage,
// nats-server 2.15 was seen to store a prefix of the refused batch, which
// the re-send completes (deduplicated by id).
var ErrStreamFull = errors.New("stream is full")

// StreamFullError says which stream is full. errors.Is(err, ErrStreamFull)
// is true; Unwrap gives the server's answer.
type StreamFullError struct {
	// Stream is the full stream; empty when JetStream storage as a whole is
	// exhausted (then MaxBytes is -1), or the stream could not be looked up.
	Stream string
	// MaxBytes is the stream's limit (-1: none), Bytes and Msgs what it
	// holds.
	MaxBytes    int64
	Bytes, Msgs uint64
	// Subject is the refused message's subject.
	Subject string
	Err     error
}

func (e *StreamFullError) Error() string {
	switch {
	case isAPIError(e.Err, errCodeAccountResources), isAPIError(e.Err, errCodeInsufficientRes):
		return fmt.Sprintf("JetStream storage is exhausted: messages on %s are refused until space is freed (maxAge expiry, a purge, or a larger storage limit): %v", e.Subject, e.Err)
	case e.Stream == "":
		return fmt.Sprintf("the stream of %s is full: new messages are refused until maxAge expiry or a purge frees space: %v", e.Subject, e.Err)
	}
	return fmt.Sprintf("stream %s is full (maxBytes %d, holding %d bytes in %d messages): new messages are refused until maxAge expiry or a purge frees space: %v",
		e.Stream, e.MaxBytes, e.Bytes, e.Msgs, e.Err)
}

// Is makes errors.Is(err, ErrStreamFull) true.
func (e *StreamFullError) Is(target error) bool { return target == ErrStreamFull }

func (e *StreamFullError) Unwrap() error { return e.Err }

// isStreamFull recognises a server's refusal for lack of space.
func isStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeAccountResources, errCodeInsufficientRes:
		return true
	case errCodeStoreFailed:
		// "maximum bytes exceeded", "maximum messages exceeded"; not the
		// per-subject limit, which Tributary never sets to discard new.
		d := apiErr.Description
		return strings.Contains(d, "maximum bytes") || strings.Contains(d, "maximum messages exceeded")
	}
	return false
}

// Stalled returns why the publisher is re-sending its current batch: a
// full stream (a *StreamFullError, errors.Is ErrStreamFull), a timeout, a
// lost connection. It is nil once a publish succeeded again. A writer shows
// it in its health while its acknowledgements wait. With several
// goroutines publishing through one Publisher it reflects the latest
// attempt of any of them.
func (p *Publisher) Stalled() error {
	p.stallMu.Lock()
	defer p.stallMu.Unlock()
	return p.stall
}

// retrying records err, which made the publisher re-send a message on
// subject, for Stalled and the metrics. It returns err, as a
// *StreamFullError naming the stream and its limit when the stream is full.
func (p *Publisher) retrying(ctx context.Context, subject string, err error) error {
	full := isStreamFull(err)
	if full {
		err = p.describeFull(ctx, subject, err)
		p.m.streamFull.Set(1)
	} else {
		p.m.streamFull.Set(0)
	}
	p.stallMu.Lock()
	wasFull := errors.Is(p.stall, ErrStreamFull)
	p.stall = err
	p.stallMu.Unlock()
	if full && !wasFull {
		p.log.Warn("stream full: publishing paused, re-sending until space is freed", "err", err)
	}
	return err
}

// published clears the state retrying recorded, after a success.
func (p *Publisher) published() {
	p.stallMu.Lock()
	was := p.stall
	p.stall = nil
	p.stallMu.Unlock()
	if was != nil {
		p.m.streamFull.Set(0)
	}
	if errors.Is(was, ErrStreamFull) {
		p.log.Info("stream has room again: publishing resumed")
	}
}

// describeFull names the stream that refused a message on subject.
func (p *Publisher) describeFull(ctx context.Context, subject string, err error) error {
	e := &StreamFullError{Subject: subject, MaxBytes: -1, Err: err}
	if isAPIError(err, errCodeAccountResources) || isAPIError(err, errCodeInsufficientRes) {
		return e
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
	defer cancel()
	name, lerr := p.c.js.StreamNameBySubject(ctx, subject)
	if lerr != nil {
		return e
	}
	e.Stream = name
	if s, lerr := p.c.js.Stream(ctx, name); lerr == nil {
		info := s.CachedInfo()
		e.MaxBytes, e.Bytes, e.Msgs = info.Config.MaxBytes, info.State.Bytes, info.State.Msgs
	}
	return e
}

package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// PublisherOptions tune a Publisher. The zero value is usable.
type PublisherOptions struct {
	// Name labels the metrics and the logs. Default "publisher".
	Name string
	// PublishTimeout bounds one attempt: the wait for one message's PubAck,
	// or for one atomic batch's commit. After it the message (batch) is
	// re-sent with the same ids. Default 5s.
	PublishTimeout time.Duration
	// MaxPending is how many messages Publish keeps in flight; Publish
	// blocks while that many are unacknowledged. Default 1000.
	MaxPending int
	// RetryWait is the delay before the first re-send, doubled (with
	// jitter) per failed attempt up to MaxRetryWait. Defaults 100ms and 5s.
	RetryWait    time.Duration
	MaxRetryWait time.Duration
	// Logger defaults to the connection's logger; Registerer to the
	// connection's registerer.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Publisher publishes to JetStream streams and never loses or duplicates a
// message it was given: every message carries a caller-supplied
// deterministic id (Nats-Msg-Id), an attempt that times out or is cut by a
// disconnect is re-sent with the same bytes and the same id, and the
// server's "duplicate" answer counts as success.
//
// It has two ways in, not to be mixed for messages whose relative order
// matters:
//   - Publish: pipelined (many messages in flight), acknowledged in
//     position order through AckedThrough and Acked.
//   - PublishBatch: synchronous atomic batches (all stored or none, one
//     fsync per batch on a SyncAlways server).
//
// Order: Publish sends in position order and, after a timeout or
// disconnect, re-sends every unacknowledged message in position order
// (while disconnected nothing is parked in a client buffer, so nothing
// overtakes them). Only a message the server refused transiently while it
// stored a later one (a stream leader change in a cluster) can land after
// that later one.
//
// Deduplication lasts the stream's duplicate window (2 minutes by default):
// re-sending a message later than that stores it again.
//
// Create it with Conn.NewPublisher and end it with Close, which waits for
// the goroutine it owns. Its methods are safe for concurrent use, but
// positions given to Publish must be strictly increasing.
type Publisher struct {
	c    *Conn
	js   jetstream.JetStream
	opts PublisherOptions
	log  *slog.Logger
	m    *pubMetrics

	slots   chan struct{} // one token per message in flight (backpressure)
	acked   atomic.Uint64
	ackedCh chan struct{}
	wake    chan struct{}
	failed  chan struct{} // closed on a permanent error
	closing chan struct{} // closed by Close
	drained chan struct{} // closed by run once closed and nothing is pending
	stop    chan struct{}
	done    chan struct{}

	closeOnce sync.Once
	closeErr  error // set once by Close

	stallMu sync.Mutex
	stall   error // why the current publish is being re-sent; nil after a success

	mu       sync.Mutex // guards the fields below
	incoming []*pubEntry
	lastPos  uint64
	closed   bool
	err      error

	outMu    sync.Mutex // guards outcomes; never held while calling the client
	outcomes []pubOutcome

	// Owned by the run goroutine.
	queue       []*pubEntry // position order, head = oldest unacknowledged
	nextSend    int         // queue[:nextSend] was handled by this send pass
	byMsg       map[*nats.Msg]*pubEntry
	inflight    int
	recovering  bool
	drainedDone bool
	bo          *backoff.ExponentialBackOff
}

type pubEntry struct {
	pos      uint64
	msg      Message
	nm       *nats.Msg // current attempt; nil when not in flight
	sentAt   time.Time
	attempts int
	done     bool
}

type pubOutcome struct {
	msg *nats.Msg
	ack *jetstream.PubAck
	err error
}

func (o *PublisherOptions) setDefaults(c *Conn) {
	if o.Name == "" {
		o.Name = "publisher"
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.MaxPending == 0 {
		o.MaxPending = 1000
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
	if o.MaxPending < 1 {
		probs = append(probs, fmt.Errorf("maxPending %d: must be at least 1", o.MaxPending))
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
	p := &Publisher{
		c:       c,
		opts:    opts,
		log:     opts.Logger.With("component", "publisher", "id", opts.Name),
		m:       m,
		slots:   make(chan struct{}, opts.MaxPending),
		ackedCh: make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		failed:  make(chan struct{}),
		closing: make(chan struct{}),
		drained: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		byMsg:   make(map[*nats.Msg]*pubEntry),
		bo:      newBackOff(opts.RetryWait, opts.MaxRetryWait),
	}
	// A JetStream context of its own, so that the asynchronous acks and
	// errors of this publisher reach only its callbacks. (On the first
	// asynchronous publish the client starts a goroutine that watches for
	// reconnects; it ends when the connection closes.)
	p.js, err = jetstream.New(c.nc,
		jetstream.WithPublishAsyncTimeout(opts.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(opts.MaxPending),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, nm *nats.Msg, ack *jetstream.PubAck) {
			p.addOutcome(pubOutcome{msg: nm, ack: ack})
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, nm *nats.Msg, err error) {
			p.addOutcome(pubOutcome{msg: nm, err: err})
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("publisher %s: opening JetStream: %w", opts.Name, err)
	}
	go p.run()
	return p, nil
}

func newBackOff(initial, max time.Duration) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = initial
	bo.MaxInterval = max
	bo.Reset()
	return bo
}

// Publish hands m to the publisher under the caller's position pos, which
// must be greater than the previous call's (positions start at 1); the
// error then wraps ErrPositionOrder. It returns once m is queued, blocking
// while MaxPending messages are unacknowledged (backpressure) until ctx
// ends. A malformed m gives ErrInvalidMessage; after Close, ErrClosed; after
// a permanent failure, ErrPublisherFailed.
//
// The message is then sent, re-sent with the same id on a timeout,
// disconnect or transient server error (keeping position order among
// re-sends) until it is acknowledged; AckedThrough reports the progress.
// The caller must not modify m.Data afterwards.
func (p *Publisher) Publish(ctx context.Context, pos uint64, m Message) error {
	if err := m.validate(); err != nil {
		return err
	}
	if max := p.c.nc.MaxPayload(); max > 0 && int64(m.size()) > max {
		return fmt.Errorf("%w: subject %q id %q: %d bytes exceed the server's max payload %d", ErrInvalidMessage, m.Subject, m.ID, m.size(), max)
	}
	if m.Header != nil {
		h := make(map[string]string, len(m.Header))
		for k, v := range m.Header {
			h[k] = v
		}
		m.Header = h
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.failed:
		return p.failedErr()
	case <-p.closing:
		// A publisher that failed and was then closed reports the failure:
		// select picks at random when both channels are ready.
		select {
		case <-p.failed:
			return p.failedErr()
		default:
		}
		return fmt.Errorf("publishing %s: publisher %s: %w", m.ID, p.opts.Name, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("publishing %s (position %d): waiting for a free slot: %w", m.ID, pos, ctx.Err())
	}
	p.mu.Lock()
	var err error
	switch {
	case p.err != nil:
		err = p.failedErrLocked()
	case p.closed:
		err = fmt.Errorf("publishing %s: publisher %s: %w", m.ID, p.opts.Name, ErrClosed)
	case pos <= p.lastPos:
		err = fmt.Errorf("%w: position %d after %d (message %s)", ErrPositionOrder, pos, p.lastPos, m.ID)
	default:
		p.lastPos = pos
		p.incoming = append(p.incoming, &pubEntry{pos: pos, msg: m})
	}
	p.mu.Unlock()
	if err != nil {
		<-p.slots
		return err
	}
	p.m.inFlight.Inc()
	p.signal()
	return nil
}

// AckedThrough returns the highest position such that it and every
// position given to Publish before it are stored (0 before the first).
func (p *Publisher) AckedThrough() uint64 { return p.acked.Load() }

// Acked receives a value (coalesced, never blocking the publisher) each
// time AckedThrough advances. Read AckedThrough after receiving.
func (p *Publisher) Acked() <-chan struct{} { return p.ackedCh }

// Err returns the permanent error that stopped the publisher, or nil.
func (p *Publisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close stops accepting messages and waits, within ctx, until every
// message given to Publish is acknowledged; then it stops the publisher's
// goroutine. If ctx ends first the error says how many messages were left
// unacknowledged (AckedThrough tells which). After a permanent failure it
// returns that failure (wrapping ErrPublisherFailed). Later calls return
// the first call's result.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.closing)
		p.mu.Unlock()
		p.signal()
		var err error
		select {
		case <-p.drained:
		case <-p.failed:
		case <-ctx.Done():
			err = fmt.Errorf("closing publisher %s: %d messages left unacknowledged after position %d: %w",
				p.opts.Name, len(p.slots), p.AckedThrough(), ctx.Err())
		}
		close(p.stop)
		<-p.done
		if p.Err() != nil {
			err = p.failedErr()
		}
		p.closeErr = err
	})
	return p.closeErr
}

func (p *Publisher) failedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failedErrLocked()
}

func (p *Publisher) failedErrLocked() error {
	return fmt.Errorf("%w: %s: %w", ErrPublisherFailed, p.opts.Name, p.err)
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// addOutcome is called from the client's callbacks, which must not block.
func (p *Publisher) addOutcome(o pubOutcome) {
	p.outMu.Lock()
	p.outcomes = append(p.outcomes, o)
	p.outMu.Unlock()
	p.signal()
}

// fail records a permanent error and stops all sending.
func (p *Publisher) fail(err error, e *pubEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	p.err = fmt.Errorf("%w: message %s (position %d) on %s: %w", ErrRejected, e.msg.ID, e.pos, e.msg.Subject, err)
	close(p.failed)
	p.log.Error("publisher stopped: the server rejected a message", "position", e.pos, "id", e.msg.ID, "subject", e.msg.Subject, "err", err)
}

// run owns the queue: it sends, processes acks and errors, re-sends, and
// advances AckedThrough in order.
func (p *Publisher) run() {
	defer close(p.done)
	var timer *time.Timer
	var timerC <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.takeIncoming()
		p.takeOutcomes()
		select {
		case <-p.failed:
		default:
			if !p.recovering {
				p.sendUnsent()
			}
			if p.recovering && p.inflight == 0 && timerC == nil {
				// Every outcome of the pass is in: re-send after a delay.
				timer = time.NewTimer(p.bo.NextBackOff())
				timerC = timer.C
			}
		}
		p.checkDrained()
		select {
		case <-p.wake:
		case <-timerC:
			timerC = nil
			p.recovering = false
			p.nextSend = 0
		case <-p.stop:
			return
		}
	}
}

func (p *Publisher) takeIncoming() {
	p.mu.Lock()
	in := p.incoming
	p.incoming = nil
	p.mu.Unlock()
	p.queue = append(p.queue, in...)
}

func (p *Publisher) takeOutcomes() {
	p.outMu.Lock()
	outs := p.outcomes
	p.outcomes = nil
	p.outMu.Unlock()
	for _, o := range outs {
		e := p.byMsg[o.msg]
		if e == nil || e.nm != o.msg {
			continue // an outcome of an attempt already given up on
		}
		delete(p.byMsg, o.msg)
		p.inflight--
		e.nm = nil
		if o.err == nil {
			e.done = true
			p.m.latency.Observe(time.Since(e.sentAt).Seconds())
			p.m.published.Inc()
			if o.ack.Duplicate && e.attempts == 1 {
				p.log.Debug("message was stored before", "id", e.msg.ID, "seq", o.ack.Sequence)
			}
			continue
		}
		if !retryablePublishErr(o.err) {
			p.fail(o.err, e)
			continue
		}
		if !p.recovering {
			p.log.Warn("publish not acknowledged; re-sending in order", "position", e.pos, "id", e.msg.ID, "attempt", e.attempts, "err", o.err)
		}
		p.recovering = true
	}
	p.advance()
}

// advance pops acknowledged messages off the head of the queue.
func (p *Publisher) advance() {
	var pos uint64
	n := 0
	for n < len(p.queue) && p.queue[n].done {
		pos = p.queue[n].pos
		p.queue[n] = nil
		n++
	}
	if n == 0 {
		return
	}
	p.queue = p.queue[n:]
	p.nextSend = max(p.nextSend-n, 0)
	for range n {
		<-p.slots
	}
	p.m.inFlight.Sub(float64(n))
	p.bo.Reset()
	p.acked.Store(pos)
	select {
	case p.ackedCh <- struct{}{}:
	default:
	}
}

func (p *Publisher) sendUnsent() {
	for ; p.nextSend < len(p.queue); p.nextSend++ {
		e := p.queue[p.nextSend]
		if e.done || e.nm != nil {
			continue
		}
		nm := e.msg.natsMsg()
		e.nm = nm
		e.attempts++
		if e.attempts > 1 {
			p.m.retries.Inc()
		}
		e.sentAt = time.Now()
		p.byMsg[nm] = e
		p.inflight++
		if _, err := p.js.PublishMsgAsync(nm); err != nil {
			delete(p.byMsg, nm)
			p.inflight--
			e.nm = nil
			if !retryablePublishErr(err) {
				p.fail(err, e)
				return
			}
			p.log.Warn("publish failed to send; re-sending in order", "position", e.pos, "id", e.msg.ID, "err", err)
			p.recovering = true
			return
		}
	}
}

func (p *Publisher) checkDrained() {
	if p.drainedDone || len(p.queue) > 0 {
		return
	}
	p.mu.Lock()
	done := p.closed && len(p.incoming) == 0
	p.mu.Unlock()
	if done {
		p.drainedDone = true
		close(p.drained)
	}
}

// Server error codes the publisher treats specially.
const (
	errCodeAccountResources   = 10002 // JetStream storage of the account (server) exhausted
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

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrStreamFull: a stream refused a message because it reached its size
// limit (MaxBytes, which makes the stream discard new messages, never old
// ones), or because the server's JetStream storage is exhausted. Nothing
// was stored; PublishBatch and Commit keep re-sending until space is freed
// (by MaxAge expiry or a purge) or their context ends, and Stalled reports
// it meanwhile. The error is a *StreamFullError.
var ErrStreamFull = errors.New("stream is full")

// StreamFullError says which stream is full. errors.Is(err, ErrStreamFull)
// is true; Unwrap gives the server's answer.
type StreamFullError struct {
	// Stream is the full stream; empty when JetStream storage as a whole is
	// exhausted, or the stream could not be looked up.
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
	if e.Stream == "" {
		return fmt.Sprintf("JetStream storage is exhausted: messages on %s are refused until space is freed (expiry, a purge, or a larger storage limit): %v", e.Subject, e.Err)
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
	case errCodeAccountResources:
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
// it in its health while its acknowledgements wait.
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
	if errors.Is(was, ErrStreamFull) {
		p.m.streamFull.Set(0)
		p.log.Info("stream has room again: publishing resumed")
	}
}

// describeFull names the stream that refused a message on subject.
func (p *Publisher) describeFull(ctx context.Context, subject string, err error) error {
	e := &StreamFullError{Subject: subject, MaxBytes: -1, Err: err}
	if isAPIError(err, errCodeAccountResources) {
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

package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/retry"
)

// Delivery is one delivery of a stored message to a Handler.
type Delivery struct {
	Stream   string
	Consumer string
	Subject  string
	ID       string // Nats-Msg-Id, "" if published without one
	Data     []byte
	// Header holds the first value of each header, Nats-Msg-Id included.
	Header      map[string]string
	StreamSeq   uint64
	ConsumerSeq uint64
	// NumDelivered is the server's delivery count: 1 on the first delivery,
	// growing with each redelivery. (An ordered consumer that takes over
	// unacknowledged messages resets its durable, which restarts it.)
	NumDelivered uint64
	// Attempt is how many times a handler has been given this message,
	// this call included, as far as the server and this Consumer know:
	// NumDelivered plus the retries in place of an ordered consumer. It
	// equals NumDelivered for unordered consumers.
	Attempt uint64
	Time    time.Time // when the stream stored the message
}

// Handler processes one delivery. Its result decides what happens to the
// message: nil acknowledges it; an error marked with Permanent dead-letters
// it (stores it in the dead-letter stream, then terminates it); any other
// error is retryable. An unordered consumer has a retryable failure
// redelivered after a delay that grows with the delivery count and
// dead-letters the message when its MaxDeliver-th delivery fails; an
// ordered consumer retries it in place, with backoff, until it succeeds or
// fails permanently (see ConsumerOptions.Ordered). A panic is recovered,
// logged with its stack and treated like a retryable error. A message whose
// dead letter cannot be stored is kept (redelivered later), never dropped.
//
// The context ends when HandlerTimeout passes (the attempt then counts as a
// retryable failure) or when Drain's deadline passes: the handler must then
// return promptly; unless it returns nil, the message is left for
// redelivery at once.
type Handler func(ctx context.Context, d *Delivery) error

// ConsumerOptions declare a durable pull consumer and how it is run.
type ConsumerOptions struct {
	// Stream and Durable (the consumer's name) are required.
	Stream  string
	Durable string
	// FilterSubjects restricts the consumer to these subjects (wildcards
	// allowed); empty means the whole stream.
	FilterSubjects []string
	// StartSeq is the stream sequence a durable consumer that does not
	// exist yet starts at (it is created with DeliverByStartSequence); 0
	// means the stream's beginning. An existing durable keeps its position
	// (its ack floor decides), whatever StartSeq says: a caller that
	// covered the history up to some sequence by other means (Replay)
	// passes that sequence + 1, and is then responsible for what the
	// consumer will never see (e.g. dead-lettering invalid messages
	// itself, see Conn.PublishDeadLetter).
	StartSeq uint64
	// DeadLetterSubject is where messages the consumer gives up on are
	// published (a subject of a dead-letter stream). Required.
	DeadLetterSubject string
	// AckWait is how long the server waits for an acknowledgement before
	// redelivering (while a message is fetched and not yet settled,
	// InProgress is sent every third of it). It also bounds the wait for
	// the server's confirmation of an ack. Default 30s.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of a message to an unordered
	// consumer: a retryable failure of the MaxDeliver-th delivery (or a
	// later one) dead-letters the message. -1 means unlimited (a retryable
	// error then retries forever). Default 20. The decision is the
	// client's alone: the server's consumer is created with unlimited
	// deliveries, so that the server never drops a message on its own.
	// Ordered consumers do not apply it to retryable failures.
	MaxDeliver int
	// MaxAckPending bounds the messages delivered and not yet acknowledged
	// (backpressure). Default 1000.
	MaxAckPending int
	// BackOff are the retry delays. An unordered consumer uses them by
	// delivery count (the last one repeats): after a retryable error,
	// delivery n+1 comes BackOff[n-1] after delivery n failed
	// (NakWithDelay). An ordered consumer retries in place with a capped
	// exponential backoff with jitter from BackOff[0] up to the last
	// BackOff. Empty: 1s, 2s, 4s, ... up to 1 min. They are deliberately
	// not the server's consumer BackOff, which would replace AckWait with
	// BackOff[0] for messages in progress too. A message never
	// acknowledged (a crashed process) comes back after AckWait.
	BackOff []time.Duration
	// Concurrency is how many handlers run at once. Default 1, which hands
	// messages to the handler one at a time in stream order (a message
	// waiting for its redelivery can still be overtaken unless Ordered is
	// set).
	Concurrency int
	// Ordered makes the consumer keep stream order through retries: a
	// later message is never handed to the handler before an earlier one
	// succeeded or was dead-lettered. A retryable failure is retried in
	// place (not redelivered) with backoff for as long as it takes, while
	// the fetched messages are kept in progress; the consumer reports
	// itself degraded (Degrade) while it retries. Permanent failures are
	// dead-lettered and the consumer continues. An ordered consumer that
	// starts while messages are unacknowledged by an earlier instance (one
	// that died) resets the durable to its ack floor, so that those come
	// back first. Requires Concurrency 1; only one instance may consume a
	// durable at a time (the lifecycle lease). ConsumeBatches implies it.
	Ordered bool
	// BatchSize is the most messages an ordered consumer hands to one
	// BatchHandler call (or one run of Handler calls between two acks); it
	// keeps up to twice as many fetched ahead, at most MaxAckPending.
	// Default 256, cut to MaxAckPending; at most MaxAckPending.
	BatchSize int
	// HandlerTimeout bounds one handler call: its context ends then, and a
	// call that did not succeed counts as a retryable failure ("handler
	// timed out after ..."). 0 means no timeout.
	HandlerTimeout time.Duration
	// FetchWait is how long one pull request waits for messages. Default
	// 2s.
	FetchWait time.Duration
	// LagInterval is how often the consumer's lag metrics are refreshed
	// from the server. Default 5s.
	LagInterval time.Duration
	// Degrade, when set, is told about problems the consumer works around
	// but cannot fix on its own: an ordered consumer retrying a message, a
	// dead letter that cannot be stored, a durable consumer deleted on the
	// server. cause names the problem; an empty reason clears it
	// (lifecycle.Component.Degrade has this signature). It is called from
	// the consumer's goroutines and must not block.
	Degrade func(cause, reason string)
	// Logger and Registerer default to the connection's.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Consumer runs a Handler (or a BatchHandler) over a durable pull consumer.
// It fetches only as many messages as it can work on, keeping every
// fetched message in progress until it is settled, so no message's AckWait
// runs out in a client buffer. Create it with Conn.Consume or
// Conn.ConsumeBatches; end it with Drain, which waits for the goroutines it
// owns (the fetch loop, the handlers, the lag poller). A durable consumer
// deleted on the server is recreated (see Conn.Consume).
type Consumer struct {
	conn          *Conn
	opts          ConsumerOptions
	h             Handler
	bh            BatchHandler
	log           *slog.Logger
	m             *consMetrics
	track         *tracker
	progressEvery time.Duration

	consMu sync.Mutex
	cons   jetstream.Consumer
	lost   atomic.Bool // the durable consumer is gone from the server (seen by a pull or the lag poller)
	// created is when the stream was created, to recognise one created
	// anew (its sequences restart); used by the fetch loop only.
	created time.Time

	sem        chan struct{} // one token per running handler (unordered)
	q          *orderedQueue // fetched messages (ordered)
	stopCh     chan struct{}
	stopOnce   sync.Once
	stopCtx    context.Context // ends at Stop or Drain's deadline
	stopCancel context.CancelFunc
	hardCtx    context.Context // ends at Drain's deadline
	hardCancel context.CancelFunc
	fetchDone  chan struct{}
	handlers   sync.WaitGroup
	bg         sync.WaitGroup // the lag poller
	drainOnce  sync.Once
	drainErr   error

	interrupted atomic.Int64

	dlqMu     sync.Mutex
	dlqFailed map[uint64]string // stream seq -> why its dead letter was not stored
}

func (o *ConsumerOptions) setDefaults(c *Conn) {
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = 20
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 1000
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.BatchSize == 0 {
		o.BatchSize = max(1, min(256, o.MaxAckPending))
	}
	if o.FetchWait == 0 {
		o.FetchWait = 2 * time.Second
	}
	if o.LagInterval == 0 {
		o.LagInterval = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = c.log
	}
	if o.Registerer == nil {
		o.Registerer = c.opts.Registerer
	}
}

func (o *ConsumerOptions) validate() error {
	var probs []string
	if o.Stream == "" {
		probs = append(probs, "stream: required")
	}
	if o.Durable == "" || strings.ContainsAny(o.Durable, ".*> \t\r\n") {
		probs = append(probs, fmt.Sprintf("durable %q: required, without '.', '*', '>' or whitespace", o.Durable))
	}
	if err := validSubject(o.DeadLetterSubject); err != nil {
		probs = append(probs, "deadLetterSubject: "+err.Error())
	}
	for _, f := range o.FilterSubjects {
		if f == "" || strings.ContainsAny(f, " \t\r\n") {
			probs = append(probs, fmt.Sprintf("filterSubjects: %q is not a subject", f))
		}
	}
	if o.AckWait < 0 {
		probs = append(probs, fmt.Sprintf("ackWait %s: must be positive", o.AckWait))
	}
	if o.MaxDeliver < -1 {
		probs = append(probs, fmt.Sprintf("maxDeliver %d: -1 (unlimited) or at least 1", o.MaxDeliver))
	}
	if o.MaxAckPending < 1 {
		probs = append(probs, fmt.Sprintf("maxAckPending %d: at least 1", o.MaxAckPending))
	}
	for _, d := range o.BackOff {
		if d <= 0 {
			probs = append(probs, fmt.Sprintf("backOff: delay %s must be positive", d))
			break
		}
	}
	if o.Concurrency < 1 {
		probs = append(probs, fmt.Sprintf("concurrency %d: at least 1", o.Concurrency))
	}
	if o.Ordered && o.Concurrency != 1 {
		probs = append(probs, fmt.Sprintf("concurrency %d: an ordered consumer runs one handler at a time (1)", o.Concurrency))
	}
	if o.BatchSize < 1 || o.BatchSize > o.MaxAckPending {
		probs = append(probs, fmt.Sprintf("batchSize %d: between 1 and maxAckPending (%d)", o.BatchSize, o.MaxAckPending))
	}
	if o.HandlerTimeout < 0 {
		probs = append(probs, fmt.Sprintf("handlerTimeout %s: 0 (none) or positive", o.HandlerTimeout))
	}
	if o.FetchWait < 10*time.Millisecond {
		probs = append(probs, fmt.Sprintf("fetchWait %s: at least 10ms", o.FetchWait))
	}
	if o.LagInterval < 10*time.Millisecond {
		probs = append(probs, fmt.Sprintf("lagInterval %s: at least 10ms", o.LagInterval))
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: consumer %s: %s", ErrConfig, o.Durable, strings.Join(probs, "; "))
	}
	return nil
}

// consumerConfig is the server's consumer. MaxDeliver is unlimited on the
// server: the client alone decides when to give up on a message, so a
// message is never dropped without its dead letter stored.
func (o *ConsumerOptions) consumerConfig() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       o.Durable,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: o.MaxAckPending,
	}
	if len(o.FilterSubjects) == 1 {
		cfg.FilterSubject = o.FilterSubjects[0]
	} else {
		cfg.FilterSubjects = o.FilterSubjects
	}
	return cfg
}

// Consume creates or updates the durable consumer opts declares (the one
// place consumers are created, idempotently: the same declaration leaves an
// existing consumer as it is, keeping its deliver policy and start
// sequence) and starts running h over it; ctx bounds the creation only.
// The caller must end the Consumer with Drain. Errors wrap ErrConfig for
// bad options and ErrStreamNotFound when the stream does not exist; a
// change the server cannot apply to an existing consumer is returned as the
// server's error.
//
// A durable consumer deleted on the server while the Consumer runs is
// detected (logged at Error, reported through Degrade until repaired) and
// recreated with the same configuration, starting after the last message
// this Consumer or the server knows to be acknowledged: nothing
// acknowledged is handed to the handler again and nothing unacknowledged
// is skipped.
func (c *Conn) Consume(ctx context.Context, opts ConsumerOptions, h Handler) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: consumer %s: nil handler", ErrConfig, opts.Durable)
	}
	return c.consume(ctx, opts, h, nil)
}

func (c *Conn) consume(ctx context.Context, opts ConsumerOptions, h Handler, bh BatchHandler) (*Consumer, error) {
	opts.setDefaults(c)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newConsMetrics(opts.Registerer, opts.Durable)
	if err != nil {
		return nil, err
	}
	k := &Consumer{
		conn:          c,
		opts:          opts,
		h:             h,
		bh:            bh,
		log:           opts.Logger.With("component", "consumer", "id", opts.Durable, "stream", opts.Stream),
		m:             m,
		progressEvery: max(opts.AckWait/3, 5*time.Millisecond),
		stopCh:        make(chan struct{}),
		fetchDone:     make(chan struct{}),
		dlqFailed:     map[uint64]string{},
	}
	cons, err := k.declare(ctx, 0)
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	if opts.Ordered && info.NumAckPending > 0 {
		// An earlier instance died holding messages: without a reset they
		// would come back after AckWait, behind later ones. Reset the
		// durable to its ack floor so they come first, in order.
		r, err := c.js.ResetConsumer(ctx, opts.Stream, opts.Durable)
		if err != nil {
			k.log.Warn("resetting the ordered consumer to its ack floor failed; messages held by an earlier instance come back after AckWait, out of order",
				"ack_pending", info.NumAckPending, "err", err)
		} else {
			k.log.Warn("reset the ordered consumer to its ack floor: messages held by an earlier instance come back first",
				"ack_pending", info.NumAckPending, "resume_at", r.ResetSeq)
			if r.ConsumerInfo != nil {
				info = r.ConsumerInfo
			}
		}
	}
	k.cons = cons
	k.track = newTracker(info.AckFloor.Stream, info.Delivered.Stream)
	k.created = k.streamCreated(ctx)
	k.hardCtx, k.hardCancel = context.WithCancel(context.Background())
	k.stopCtx, k.stopCancel = context.WithCancel(k.hardCtx)
	k.bg.Add(1)
	go k.pollLag()
	if opts.Ordered {
		k.q = newOrderedQueue(min(2*opts.BatchSize, opts.MaxAckPending))
		k.handlers.Add(2)
		go k.fetchOrdered()
		go k.runOrdered()
		go k.keepQueueAlive()
	} else {
		k.sem = make(chan struct{}, opts.Concurrency)
		go k.fetch()
	}
	return k, nil
}

// consumer is the current server-side consumer (it changes when it is
// recreated).
func (k *Consumer) consumer() jetstream.Consumer {
	k.consMu.Lock()
	defer k.consMu.Unlock()
	return k.cons
}

// ConsumerState is the server's view of a durable consumer.
type ConsumerState struct {
	// Pending messages match the consumer and were never delivered.
	Pending uint64
	// AckPending messages were delivered and not yet acknowledged.
	AckPending int
	// Redelivered messages are delivered more than once and not yet
	// acknowledged.
	Redelivered int
	// Waiting pull requests wait on the server for messages.
	Waiting int
}

// State asks the server for the consumer's backlog.
func (k *Consumer) State(ctx context.Context) (ConsumerState, error) {
	info, err := k.consumer().Info(ctx)
	if err != nil {
		return ConsumerState{}, fmt.Errorf("consumer %s state: %w", k.opts.Durable, err)
	}
	return ConsumerState{Pending: info.NumPending, AckPending: info.NumAckPending, Redelivered: info.NumRedelivered, Waiting: info.NumWaiting}, nil
}

// Name is the durable consumer's name.
func (k *Consumer) Name() string { return k.opts.Durable }

// Stop stops fetching new messages (the pull in progress is abandoned);
// handler calls already running finish, and an ordered consumer does not
// start another attempt. It does not wait: call Drain for that. Safe to
// call more than once.
func (k *Consumer) Stop() {
	k.stopOnce.Do(func() {
		close(k.stopCh)
		k.stopCancel()
	})
}

// Drain stops fetching and waits, within ctx, for the running handlers to
// finish and settle their messages (a Drain that returns nil has its acks
// confirmed by the server). Messages fetched but not handled are handed
// back to the server for immediate redelivery, in stream order. When ctx
// ends first, the handlers' context is cancelled, Drain waits for them to
// return, and every message whose handler did not succeed is handed back
// too; the error then wraps ctx.Err(). Nothing is lost either way, and an
// acknowledged message is never handled again. Drain must be called to
// release the consumer's goroutines; later calls return the first result.
// The durable consumer stays on the server.
func (k *Consumer) Drain(ctx context.Context) error {
	k.drainOnce.Do(func() {
		k.Stop()
		done := make(chan struct{})
		go func() { // owned by Drain: it waits for done below on every path
			<-k.fetchDone
			k.handlers.Wait()
			k.bg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			k.hardCancel()
			<-done
			k.drainErr = fmt.Errorf("draining consumer %s: %d messages interrupted and left for redelivery: %w",
				k.opts.Durable, k.interrupted.Load(), ctx.Err())
		}
		k.hardCancel()
	})
	return k.drainErr
}

func (k *Consumer) stopped() bool {
	select {
	case <-k.stopCh:
		return true
	default:
		return false
	}
}

// degrade reports a problem (reason "" clears it) through
// ConsumerOptions.Degrade.
func (k *Consumer) degrade(cause, reason string) {
	if k.opts.Degrade != nil {
		k.opts.Degrade(k.opts.Durable+" "+cause, reason)
	}
}

// fetch pulls as many messages as there are free handler slots and starts
// a handler for each (unordered consumers).
func (k *Consumer) fetch() {
	defer close(k.fetchDone)
	bo := retry.NewBackOff(100*time.Millisecond, 5*time.Second)
	for {
		// Wait for one free slot, then take every other free one.
		select {
		case k.sem <- struct{}{}:
		case <-k.stopCh:
			return
		}
		n := 1
	more:
		for n < k.opts.Concurrency {
			select {
			case k.sem <- struct{}{}:
				n++
			default:
				break more
			}
		}
		if k.lost.Load() && k.stillLost() {
			// Recreate only once every handler is done: their acks went to
			// the deleted consumer, and the tracker remembers them.
			for n < k.opts.Concurrency {
				select {
				case k.sem <- struct{}{}:
					n++
				case <-k.stopCh:
					for range n {
						<-k.sem
					}
					return
				}
			}
			k.repairConsumer()
			for range n {
				<-k.sem
			}
			continue
		}
		got, err := k.fetchBatch(n)
		for range n - got {
			<-k.sem
		}
		if !k.fetchFailed(err, bo) {
			return
		}
	}
}

// fetchFailed handles the result of one pull; it reports whether the fetch
// loop goes on.
func (k *Consumer) fetchFailed(err error, bo *backoff.ExponentialBackOff) bool {
	switch {
	case err == nil:
		bo.Reset()
	case errors.Is(err, nats.ErrConnectionClosed):
		k.log.Error("consumer stopped: the NATS connection is closed")
		return false
	case k.stopCtx.Err() != nil:
		return false
	default:
		if k.checkConsumer() {
			return !k.stopped() // recreated on the next round
		}
		wait := bo.NextBackOff()
		k.log.Warn("fetching messages failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-k.stopCh:
			return false
		}
	}
	return !k.stopped()
}

// fetchBatch pulls up to n messages and starts their handlers, each
// holding one of the n slots the caller took. It returns how many it
// started (the caller releases the other slots).
func (k *Consumer) fetchBatch(n int) (int, error) {
	ctx, cancel := context.WithTimeout(k.stopCtx, k.opts.FetchWait)
	defer cancel()
	batch, err := k.consumer().Fetch(n, jetstream.FetchContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("pulling from consumer %s: %w", k.opts.Durable, err)
	}
	got := 0
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			k.log.Error("message without JetStream metadata; returning it", "subject", msg.Subject(), "err", err)
			_ = msg.Nak()
			continue
		}
		if k.track.delivered(md.Sequence.Stream, md.Timestamp) {
			k.ackSkipped(msg, md)
			continue
		}
		if k.stopped() {
			// Stopping: hand it straight back for the next consumer.
			if err := msg.Nak(); err != nil {
				k.log.Debug("returning a message after stop failed; it is redelivered after AckWait", "err", err)
			}
			continue
		}
		got++
		k.handlers.Add(1)
		go k.handle(msg, md)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return got, fmt.Errorf("pulling from consumer %s: %w", k.opts.Durable, err)
	}
	return got, nil
}

// ackSkipped acknowledges a redelivery of a message this Consumer already
// settled (its consumer was recreated, or an ack was lost) without handing
// it to the handler again.
func (k *Consumer) ackSkipped(m jetstream.Msg, md *jetstream.MsgMetadata) {
	k.log.Debug("acknowledging a redelivery of a message already settled", "stream_seq", md.Sequence.Stream)
	if err := m.Ack(); err != nil {
		k.log.Warn("acknowledging a settled message failed", "stream_seq", md.Sequence.Stream, "err", err)
	}
	k.m.skipped.Inc()
}

func newDelivery(m jetstream.Msg, md *jetstream.MsgMetadata) *Delivery {
	d := &Delivery{
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Subject:      m.Subject(),
		Data:         m.Data(),
		Header:       make(map[string]string, len(m.Headers())),
		StreamSeq:    md.Sequence.Stream,
		ConsumerSeq:  md.Sequence.Consumer,
		NumDelivered: md.NumDelivered,
		Attempt:      md.NumDelivered,
		Time:         md.Timestamp,
	}
	for k, v := range m.Headers() {
		if len(v) > 0 {
			d.Header[k] = v[0]
		}
	}
	d.ID = m.Headers().Get(jetstream.MsgIDHeader)
	return d
}

// handle runs the handler for one message and settles the message
// (unordered consumers).
func (k *Consumer) handle(m jetstream.Msg, md *jetstream.MsgMetadata) {
	defer k.handlers.Done()
	defer func() { <-k.sem }()
	d := newDelivery(m, md)
	if d.NumDelivered > 1 {
		k.m.redeliveries.Inc()
	}
	k.m.inFlight.Inc()
	defer k.m.inFlight.Dec()
	stopProgress := k.keepAlive(m)
	defer stopProgress()

	start := time.Now()
	herr, panicked := k.callTimed(d)
	k.m.duration.Observe(time.Since(start).Seconds())
	k.settle(m, d, herr, panicked)
}

// callTimed runs the handler under HandlerTimeout.
func (k *Consumer) callTimed(d *Delivery) (error, bool) {
	ctx, cancel := k.attemptContext()
	defer cancel()
	err, panicked := k.call(ctx, d)
	return k.timedOut(ctx, err), panicked
}

// attemptContext is the context of one handler call: it ends at
// HandlerTimeout or Drain's deadline.
func (k *Consumer) attemptContext() (context.Context, context.CancelFunc) {
	if k.opts.HandlerTimeout > 0 {
		return context.WithTimeoutCause(k.hardCtx, k.opts.HandlerTimeout, errHandlerTimeout)
	}
	return context.WithCancel(k.hardCtx)
}

var errHandlerTimeout = errors.New("handler timed out")

// timedOut turns the failure of a call cut off by HandlerTimeout into a
// retryable error saying so.
func (k *Consumer) timedOut(ctx context.Context, err error) error {
	if err != nil && k.hardCtx.Err() == nil && errors.Is(context.Cause(ctx), errHandlerTimeout) {
		return fmt.Errorf("handler timed out after %s: %v", k.opts.HandlerTimeout, err)
	}
	return err
}

// call runs the handler, turning a panic into an error.
func (k *Consumer) call(ctx context.Context, d *Delivery) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			err = fmt.Errorf("handler panic: %v", r)
			k.log.Error("handler panicked", "stream_seq", d.StreamSeq, "subject", d.Subject,
				"delivery", d.NumDelivered, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	return k.h(ctx, d), false
}

// keepAlive tells the server every progressEvery that m is being worked
// on, until the returned stop is called (which waits for the goroutine).
func (k *Consumer) keepAlive(m jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(k.progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := m.InProgress(); err != nil {
					k.log.Debug("sending in-progress failed", "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

func (k *Consumer) settle(m jetstream.Msg, d *Delivery, herr error, panicked bool) {
	switch {
	case herr == nil:
		k.ack(m, d)
		k.m.handled.WithLabelValues(outcomeAck).Inc()
	case k.hardCtx.Err() != nil:
		// Drain's deadline interrupted the handler: give the message back
		// at once, but only once the fetch loop has ended (the deadline
		// cancels its pull), or the server would hand it straight back to
		// this stopped consumer's pull, spending deliveries.
		k.interrupted.Add(1)
		<-k.fetchDone
		if err := m.Nak(); err != nil {
			k.log.Debug("returning an interrupted message failed; it is redelivered after AckWait", "err", err)
		}
		k.m.handled.WithLabelValues(outcomeRetry).Inc()
	case IsPermanent(herr):
		k.deadLetter(m, d, herr.Error())
	case k.lastDelivery(d):
		k.deadLetter(m, d, fmt.Sprintf("gave up after %d deliveries: %v", d.NumDelivered, herr))
	default:
		delay := k.retryDelay(d.NumDelivered)
		if err := k.nakWithDelay(m, d); err != nil {
			k.log.Debug("nak failed; the message is redelivered after AckWait", "err", err)
		}
		outcome := outcomeRetry
		if panicked {
			outcome = outcomePanic
		} else {
			k.log.Debug("handler failed; retrying", "stream_seq", d.StreamSeq, "delivery", d.NumDelivered, "retry_in", delay, "err", herr)
		}
		k.m.handled.WithLabelValues(outcome).Inc()
	}
}

// ack acknowledges m and waits (within AckWait, or until Drain's deadline)
// for the server to confirm it, so that a Drain that returns has its acks
// stored. Past Drain's deadline the ack is sent without waiting.
func (k *Consumer) ack(m jetstream.Msg, d *Delivery) {
	defer k.settled(d.StreamSeq)
	if k.hardCtx.Err() != nil {
		if err := m.Ack(); err != nil {
			k.log.Warn("acknowledgement failed; the message will be delivered again", "stream_seq", d.StreamSeq, "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(k.hardCtx, k.opts.AckWait)
	defer cancel()
	if err := m.DoubleAck(ctx); err != nil {
		k.log.Warn("acknowledgement not confirmed; the message may be delivered again", "stream_seq", d.StreamSeq, "err", err)
	}
}

// settled records that the message at seq is acknowledged or terminated.
func (k *Consumer) settled(seq uint64) {
	k.track.settle(seq)
	k.deadLetterResolved(seq)
}

func (k *Consumer) lastDelivery(d *Delivery) bool {
	return k.opts.MaxDeliver > 0 && d.NumDelivered >= uint64(k.opts.MaxDeliver)
}

// retryDelay is the wait before delivery n+1 after delivery n failed.
func (k *Consumer) retryDelay(n uint64) time.Duration {
	if n < 1 {
		n = 1
	}
	if len(k.opts.BackOff) > 0 {
		return k.opts.BackOff[min(n-1, uint64(len(k.opts.BackOff)-1))]
	}
	return min(time.Second<<min(n-1, 6), time.Minute)
}

// retryBounds are the first and the largest wait of an ordered consumer's
// retries in place.
func (k *Consumer) retryBounds() (initial, maxWait time.Duration) {
	if b := k.opts.BackOff; len(b) > 0 {
		return b[0], max(b[0], b[len(b)-1])
	}
	return time.Second, time.Minute
}

// nakWithDelay has m redelivered retryDelay(d.NumDelivered) from now. (The
// consumer has no server-side BackOff, under which the server would read a
// Nak's delay differently and would use BackOff[0] as AckWait.)
func (k *Consumer) nakWithDelay(m jetstream.Msg, d *Delivery) error {
	return m.NakWithDelay(k.retryDelay(d.NumDelivered))
}

// deadLetter stores d in the dead-letter stream, then terminates m. If the
// dead letter cannot be stored, m is kept: redelivered after a delay, never
// dropped, and the failure reported (Degrade, metric) until a dead letter
// is stored.
func (k *Consumer) deadLetter(m jetstream.Msg, d *Delivery, reason string) {
	if err := k.storeDeadLetter(k.hardCtx, d, reason); err != nil {
		if err := k.nakWithDelay(m, d); err != nil {
			k.log.Debug("nak failed; the message is redelivered after AckWait", "err", err)
		}
		k.m.handled.WithLabelValues(outcomeRetry).Inc()
		return
	}
	k.terminate(m, d, reason)
}

// terminate ends m after its dead letter was stored.
func (k *Consumer) terminate(m jetstream.Msg, d *Delivery, reason string) {
	if err := m.TermWithReason(truncate(cleanReason(reason), 200)); err != nil {
		k.log.Warn("terminating a dead-lettered message failed; it may be delivered again (its dead letter is deduplicated)", "stream_seq", d.StreamSeq, "err", err)
	}
	k.settled(d.StreamSeq)
	k.log.Warn("message dead-lettered", "stream_seq", d.StreamSeq, "subject", d.Subject, "deliveries", d.NumDelivered, "reason", reason)
	k.m.handled.WithLabelValues(outcomeDeadLetter).Inc()
}

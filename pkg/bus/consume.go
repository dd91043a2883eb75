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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	// NumDelivered is 1 on the first delivery and grows with each
	// redelivery.
	NumDelivered uint64
	Time         time.Time // when the stream stored the message
}

// Handler processes one delivery. Its result decides what happens to the
// message: nil acknowledges it (confirmed by the server); an error marked
// with Permanent terminates it and stores it in the dead-letter stream; any
// other error redelivers it after a delay that grows with the delivery
// count, until the MaxDeliver-th delivery, which is dead-lettered too. A
// panic is recovered, logged with its stack and treated like a retryable
// error.
//
// The context ends when Drain's deadline passes: the handler must then
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
	// DeadLetterSubject is where messages the consumer gives up on are
	// published (a subject of a dead-letter stream). Required.
	DeadLetterSubject string
	// AckWait is how long the server waits for an acknowledgement before
	// redelivering (while a handler runs, InProgress is sent every third of
	// it). It also bounds the wait for the server's confirmation of an
	// ack. Default 30s.
	AckWait time.Duration
	// MaxDeliver bounds deliveries per message; the last one dead-letters
	// a message whose handler still fails. -1 means unlimited (a retryable
	// error then retries forever). Default 20.
	MaxDeliver int
	// MaxAckPending bounds the messages delivered and not yet acknowledged
	// (backpressure). Default 1000.
	MaxAckPending int
	// BackOff are the retry delays by delivery count (the last one
	// repeats): after a retryable error, delivery n+1 comes BackOff[n-1]
	// after delivery n failed (NakWithDelay). Empty: 1s, 2s, 4s, ... up to
	// 1 min. They are deliberately not the server's consumer BackOff, which
	// would replace AckWait with BackOff[0] for messages in progress too.
	// A message never acknowledged (a crashed process) comes back after
	// AckWait.
	BackOff []time.Duration
	// Concurrency is how many handlers run at once. Default 1, which
	// handles messages one at a time in stream order.
	Concurrency int
	// FetchWait is how long one pull request waits for messages; Stop takes
	// effect within it. Default 2s.
	FetchWait time.Duration
	// Logger and Registerer default to the connection's.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Consumer runs a Handler over a durable pull consumer. It fetches only as
// many messages as it has free handler slots, so no message waits in a
// client buffer while its AckWait runs. Create it with Conn.Consume; end it
// with Drain, which waits for the goroutines it owns.
type Consumer struct {
	conn          *Conn
	opts          ConsumerOptions
	h             Handler
	log           *slog.Logger
	m             *consMetrics
	cons          jetstream.Consumer
	progressEvery time.Duration

	sem        chan struct{} // one token per running handler
	stopCh     chan struct{}
	stopOnce   sync.Once
	hardCtx    context.Context // ends at Drain's deadline
	hardCancel context.CancelFunc
	fetchDone  chan struct{}
	handlers   sync.WaitGroup
	drainOnce  sync.Once
	drainErr   error

	interrupted atomic.Int64
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
	if o.FetchWait == 0 {
		o.FetchWait = 2 * time.Second
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
	if o.FetchWait < 10*time.Millisecond {
		probs = append(probs, fmt.Sprintf("fetchWait %s: at least 10ms", o.FetchWait))
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: consumer %s: %s", ErrConfig, o.Durable, strings.Join(probs, "; "))
	}
	return nil
}

func (o *ConsumerOptions) consumerConfig() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       o.Durable,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
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
// existing consumer as it is) and starts running h over it; ctx bounds the
// creation only. The caller must end the Consumer with Drain. Errors wrap
// ErrConfig for bad options and ErrStreamNotFound when the stream does not
// exist; a change the server cannot apply to an existing consumer (e.g. a
// different delivery policy) is returned as the server's error.
func (c *Conn) Consume(ctx context.Context, opts ConsumerOptions, h Handler) (*Consumer, error) {
	opts.setDefaults(c)
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%w: consumer %s: nil handler", ErrConfig, opts.Durable)
	}
	m, err := newConsMetrics(opts.Registerer, opts.Durable)
	if err != nil {
		return nil, err
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, opts.Stream, opts.consumerConfig())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("consumer %s: stream %s: %w", opts.Durable, opts.Stream, ErrStreamNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("creating or updating consumer %s on stream %s: %w", opts.Durable, opts.Stream, err)
	}
	hardCtx, hardCancel := context.WithCancel(context.Background())
	k := &Consumer{
		conn:          c,
		opts:          opts,
		h:             h,
		log:           opts.Logger.With("component", "consumer", "id", opts.Durable, "stream", opts.Stream),
		m:             m,
		cons:          cons,
		progressEvery: max(opts.AckWait/3, 5*time.Millisecond),
		sem:           make(chan struct{}, opts.Concurrency),
		stopCh:        make(chan struct{}),
		hardCtx:       hardCtx,
		hardCancel:    hardCancel,
		fetchDone:     make(chan struct{}),
	}
	go k.fetch()
	return k, nil
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
}

// State asks the server for the consumer's backlog.
func (k *Consumer) State(ctx context.Context) (ConsumerState, error) {
	info, err := k.cons.Info(ctx)
	if err != nil {
		return ConsumerState{}, fmt.Errorf("consumer %s state: %w", k.opts.Durable, err)
	}
	return ConsumerState{Pending: info.NumPending, AckPending: info.NumAckPending, Redelivered: info.NumRedelivered}, nil
}

// Name is the durable consumer's name.
func (k *Consumer) Name() string { return k.opts.Durable }

// Stop stops fetching new messages (within FetchWait); handlers already
// running finish. It does not wait: call Drain for that. Safe to call more
// than once.
func (k *Consumer) Stop() {
	k.stopOnce.Do(func() { close(k.stopCh) })
}

// Drain stops fetching and waits, within ctx, for the running handlers to
// finish and settle their messages. When ctx ends first, the handlers'
// context is cancelled, Drain waits for them to return, and every message
// whose handler did not succeed is handed back to the server for immediate
// redelivery (to this durable's next consumer); the error then wraps
// ctx.Err(). Nothing is lost either way, and an acknowledged message is
// never handled again. Drain must be called to release the consumer's
// goroutines; later calls return the first result. The durable consumer
// stays on the server.
func (k *Consumer) Drain(ctx context.Context) error {
	k.drainOnce.Do(func() {
		k.Stop()
		done := make(chan struct{})
		go func() { // owned by Drain: it waits for done below on every path
			<-k.fetchDone
			k.handlers.Wait()
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

// fetch pulls as many messages as there are free handler slots and starts
// a handler for each.
func (k *Consumer) fetch() {
	defer close(k.fetchDone)
	bo := newBackOff(100*time.Millisecond, 5*time.Second)
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
		got, err := k.fetchBatch(n)
		for range n - got {
			<-k.sem
		}
		switch {
		case err == nil:
			bo.Reset()
		case errors.Is(err, nats.ErrConnectionClosed):
			k.log.Error("consumer stopped: the NATS connection is closed")
			return
		case k.hardCtx.Err() != nil:
			return
		default:
			wait := bo.NextBackOff()
			k.log.Warn("fetching messages failed; retrying", "err", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-k.stopCh:
				return
			}
		}
		if k.stopped() {
			return
		}
	}
}

// fetchBatch pulls up to n messages and starts their handlers, each
// holding one of the n slots the caller took. It returns how many it
// started (the caller releases the other slots).
func (k *Consumer) fetchBatch(n int) (int, error) {
	ctx, cancel := context.WithTimeout(k.hardCtx, k.opts.FetchWait)
	defer cancel()
	batch, err := k.cons.Fetch(n, jetstream.FetchContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("pulling from consumer %s: %w", k.opts.Durable, err)
	}
	got := 0
	for msg := range batch.Messages() {
		if k.stopped() {
			// Stopping: hand it straight back for the next consumer.
			if err := msg.Nak(); err != nil {
				k.log.Debug("returning a message after stop failed; it is redelivered after AckWait", "err", err)
			}
			continue
		}
		got++
		k.handlers.Add(1)
		go k.handle(msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return got, fmt.Errorf("pulling from consumer %s: %w", k.opts.Durable, err)
	}
	return got, nil
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

// handle runs the handler for one message and settles the message.
func (k *Consumer) handle(m jetstream.Msg) {
	defer k.handlers.Done()
	defer func() { <-k.sem }()
	md, err := m.Metadata()
	if err != nil {
		k.log.Error("message without JetStream metadata; returning it", "subject", m.Subject(), "err", err)
		_ = m.Nak()
		return
	}
	d := newDelivery(m, md)
	if d.NumDelivered > 1 {
		k.m.redeliveries.Inc()
	}
	k.m.inFlight.Inc()
	defer k.m.inFlight.Dec()
	stopProgress := k.keepAlive(m)
	defer stopProgress()

	ctx, cancel := context.WithCancel(k.hardCtx)
	start := time.Now()
	herr, panicked := k.call(ctx, d)
	cancel()
	k.m.duration.Observe(time.Since(start).Seconds())
	k.settle(m, d, herr, panicked)
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

// nakWithDelay has m redelivered retryDelay(d.NumDelivered) from now. (The
// consumer has no server-side BackOff, under which the server would read a
// Nak's delay differently and would use BackOff[0] as AckWait.)
func (k *Consumer) nakWithDelay(m jetstream.Msg, d *Delivery) error {
	return m.NakWithDelay(k.retryDelay(d.NumDelivered))
}

// deadLetter stores d in the dead-letter stream, then terminates m. If the
// dead letter cannot be stored, m is redelivered instead, never dropped.
func (k *Consumer) deadLetter(m jetstream.Msg, d *Delivery, reason string) {
	if err := k.publishDeadLetter(k.hardCtx, d, reason); err != nil {
		k.log.Error("dead-lettering failed; returning the message", "stream_seq", d.StreamSeq, "reason", reason, "err", err)
		if err := k.nakWithDelay(m, d); err != nil {
			k.log.Debug("nak failed", "err", err)
		}
		k.m.handled.WithLabelValues(outcomeRetry).Inc()
		return
	}
	if err := m.TermWithReason(truncate(cleanReason(reason), 200)); err != nil {
		k.log.Warn("terminating a dead-lettered message failed; it may be delivered again (its dead letter is deduplicated)", "stream_seq", d.StreamSeq, "err", err)
	}
	k.log.Warn("message dead-lettered", "stream_seq", d.StreamSeq, "subject", d.Subject, "deliveries", d.NumDelivered, "reason", reason)
	k.m.handled.WithLabelValues(outcomeDeadLetter).Inc()
}

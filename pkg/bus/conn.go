package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/logging"
	"github.com/tributary/tributary/internal/retry"
	"github.com/tributary/tributary/streams"
)

// Embedded is the URL that selects an in-process nats-server with JetStream.
const Embedded = "embedded"

// SyncMode says when the embedded server fsyncs JetStream writes.
type SyncMode string

const (
	// SyncAlways fsyncs every write before the PubAck (default). A single
	// node holds the only copy of the data, so an acknowledged write must
	// survive a power loss. Atomic batches make this fast: one fsync per
	// batch.
	SyncAlways SyncMode = "always"
	// SyncInterval fsyncs every SyncInterval (nats-server's default is 2
	// minutes). Faster for per-message publishing, but acknowledged writes of
	// the last interval are lost if the machine (not the process) fails.
	SyncInterval SyncMode = "interval"
)

// TLSOptions configures TLS to an external NATS server.
type TLSOptions struct {
	CAFile   string // PEM CA bundle to verify the server
	CertFile string // client certificate (with KeyFile)
	KeyFile  string
}

// ConnectOptions says how to reach NATS. The zero value (plus a StoreDir)
// is a valid embedded setup.
type ConnectOptions struct {
	// URL is Embedded (or empty) for an in-process server, otherwise one or
	// more comma-separated server URLs (nats://, tls://).
	URL string
	// StoreDir is the embedded server's JetStream directory. Required for
	// Embedded: the OS temp default would lose data on reboot.
	StoreDir string
	// Listen, when set (e.g. "127.0.0.1:4222"), makes the embedded server
	// accept client connections from other processes too. Empty: in-process
	// only.
	Listen string
	// Sync and SyncInterval set the embedded server's fsync policy.
	Sync         SyncMode
	SyncInterval time.Duration
	// MaxBatch is the largest atomic batch, in messages, that the servers
	// accept. The embedded server is configured with it (default
	// DefaultEmbeddedMaxBatch); with remote servers it must not exceed
	// their JetStream limit max_batch_size (default DefaultMaxBatch, which
	// is then the default here). At most MaxBatchLimit.
	MaxBatch int

	// Name is the client connection name shown by the server.
	Name string

	// Authentication for an external server; at most one of credentials
	// file, NKey seed file, user/password and token.
	CredentialsFile string
	NKeySeedFile    string
	User, Password  string
	Token           string
	TLS             TLSOptions

	// ConnectTimeout bounds the initial connection (with retries) and each
	// dial. Default 10s.
	ConnectTimeout time.Duration
	// ReconnectWait is the first reconnect delay, doubled per failed attempt
	// up to MaxReconnectWait, with jitter. Reconnection never gives up.
	// Defaults 250ms and 10s.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration

	// Logger receives connection events (never secrets). Default: discard.
	Logger *slog.Logger
	// Registerer receives the connection metrics. Default: a private
	// registry.
	Registerer prometheus.Registerer
	// OnStatus, when set, is called on every connection status change, from
	// the NATS client's callback goroutine. It must not block.
	OnStatus func(Status)
}

// Status is a connection status change.
type Status struct {
	State StatusState
	// Err is why the connection was lost, when known.
	Err error
}

// StatusState is the state of the connection to NATS.
type StatusState string

// Connection states reported through ConnectOptions.OnStatus.
const (
	StatusConnected    StatusState = "connected"
	StatusDisconnected StatusState = "disconnected"
	StatusReconnected  StatusState = "reconnected"
	StatusClosed       StatusState = "closed"
)

// ErrConfig is wrapped by errors about invalid connection options.
var ErrConfig = errors.New("invalid bus options")

// Conn is a connection to NATS JetStream, with the embedded server it owns
// when URL is Embedded. Close it exactly once with Close.
type Conn struct {
	opts    ConnectOptions
	log     *slog.Logger
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	metrics *connMetrics
	// topology is the one EnsureTopology last applied: consumers recreate
	// a missing dead-letter stream from it.
	topology atomic.Pointer[streams.Topology]

	mu        sync.Mutex
	connected bool
	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func (o *ConnectOptions) setDefaults() {
	if o.URL == "" {
		o.URL = Embedded
	}
	if o.Sync == "" {
		o.Sync = SyncAlways
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 2 * time.Minute
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
		if o.URL == Embedded {
			o.MaxBatch = DefaultEmbeddedMaxBatch
		}
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
	if o.MaxReconnectWait == 0 {
		o.MaxReconnectWait = 10 * time.Second
	}
	if o.Name == "" {
		o.Name = "tributary"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
}

func (o *ConnectOptions) validate() error {
	var probs []string
	if o.URL == Embedded {
		if o.StoreDir == "" {
			probs = append(probs, "storeDir: required for the embedded server (the OS temp dir would lose data)")
		}
		if o.CredentialsFile != "" || o.NKeySeedFile != "" || o.User != "" || o.Token != "" {
			probs = append(probs, "credentials: not used by the embedded server")
		}
	}
	switch o.Sync {
	case SyncAlways, SyncInterval:
	default:
		probs = append(probs, fmt.Sprintf("sync: %q is not always or interval", o.Sync))
	}
	auth := 0
	for _, s := range []string{o.CredentialsFile, o.NKeySeedFile, o.User, o.Token} {
		if s != "" {
			auth++
		}
	}
	if auth > 1 {
		probs = append(probs, "auth: set only one of credentials, nkey, user/password, token")
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		probs = append(probs, "tls: cert and key go together")
	}
	if o.MaxReconnectWait < o.ReconnectWait {
		probs = append(probs, "maxReconnectWait: smaller than reconnectWait")
	}
	if o.MaxBatch < 1 || o.MaxBatch > MaxBatchLimit {
		probs = append(probs, fmt.Sprintf("maxBatch: %d is outside 1..%d", o.MaxBatch, MaxBatchLimit))
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrConfig, strings.Join(probs, "; "))
	}
	return nil
}

// Connect starts the embedded server when asked to, connects to NATS and
// returns once JetStream answers. The initial connection is retried with
// capped exponential backoff until ConnectTimeout or ctx ends; afterwards
// the client reconnects forever. On error nothing is left running.
func Connect(ctx context.Context, opts ConnectOptions) (_ *Conn, err error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	// c is not the named result: a failed Connect returns nil and still
	// shuts down what c started.
	c := &Conn{opts: opts, log: opts.Logger}
	c.metrics, err = newConnMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.shutdown()
		}
	}()

	url := opts.URL
	if url == Embedded {
		if err := c.startEmbedded(); err != nil {
			return nil, err
		}
	}

	natsOpts, err := c.clientOptions()
	if err != nil {
		return nil, err
	}
	if c.srv != nil {
		natsOpts = append(natsOpts, nats.InProcessServer(c.srv))
		url = ""
	}

	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	bo := retry.NewBackOff(opts.ReconnectWait, opts.MaxReconnectWait)
	attempt := 0
	nc, err := backoff.Retry(cctx, func() (*nats.Conn, error) {
		attempt++
		nc, err := nats.Connect(url, natsOpts...)
		if err != nil {
			c.log.Warn("connecting to NATS failed; retrying", "attempt", attempt, "err", err)
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
				return nil, backoff.Permanent(err)
			}
		}
		return nc, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", c.describe(), err)
	}
	c.nc = nc
	c.setConnected(true)

	c.js, err = jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	if _, err := c.js.AccountInfo(cctx); err != nil {
		return nil, fmt.Errorf("JetStream is not available at %s: %w", c.describe(), err)
	}
	c.log.Info("connected to NATS", "server", c.describe(), "embedded", c.srv != nil)
	c.notify(Status{State: StatusConnected})
	return c, nil
}

// describe names the server without secrets.
func (c *Conn) describe() string {
	if c.opts.URL == Embedded {
		return "embedded server (" + c.opts.StoreDir + ")"
	}
	return logging.RedactURL(c.opts.URL)
}

func (c *Conn) clientOptions() ([]nats.Option, error) {
	o := c.opts
	bo := retry.NewBackOff(o.ReconnectWait, o.MaxReconnectWait)
	var boMu sync.Mutex
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.ConnectTimeout),
		nats.MaxReconnects(-1),
		// No reconnect buffer: while disconnected, publishes and requests
		// fail at once instead of being parked and flushed after the
		// reconnect. Their owners re-send them, and a Publisher's re-sends
		// then keep position order (a parked message would overtake the
		// earlier ones lost with the old connection).
		nats.ReconnectBufSize(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			boMu.Lock()
			defer boMu.Unlock()
			if attempts <= 1 {
				bo.Reset()
			}
			return bo.NextBackOff()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.setConnected(false)
			if c.closing.Load() {
				return // our own Close, not a lost connection
			}
			c.metrics.disconnects.Inc()
			c.log.Warn("disconnected from NATS; reconnecting", "err", err)
			c.notify(Status{State: StatusDisconnected, Err: err})
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.setConnected(true)
			c.metrics.reconnects.Inc()
			c.log.Info("reconnected to NATS", "server", logging.RedactURL(nc.ConnectedUrlRedacted()))
			c.notify(Status{State: StatusReconnected})
		}),
		nats.ClosedHandler(func(_ *nats.Conn) {
			c.setConnected(false)
			c.notify(Status{State: StatusClosed})
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			c.log.Error("NATS asynchronous error", "subject", subj, "err", err)
		}),
	}
	if o.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredentialsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey: reading seed file: %v", ErrConfig, err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.TLS.CAFile))
	}
	if o.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.TLS.CertFile, o.TLS.KeyFile))
	}
	if o.TLS.CAFile != "" || o.TLS.CertFile != "" {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

func (c *Conn) startEmbedded() error {
	o := c.opts
	sopts := &server.Options{
		ServerName:      "tributary-embedded",
		JetStream:       true,
		StoreDir:        o.StoreDir,
		NoSigs:          true,
		SyncAlways:      o.Sync == SyncAlways,
		SyncInterval:    o.SyncInterval,
		DontListen:      o.Listen == "",
		NoSystemAccount: false,
		JetStreamLimits: server.JSLimitOpts{MaxBatchSize: o.MaxBatch},
	}
	if o.Listen != "" {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return fmt.Errorf("%w: listen: %v", ErrConfig, err)
		}
		sopts.Host, sopts.Port = host, port
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return fmt.Errorf("creating the embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(&serverLogger{log: c.log.With("component", "nats-server")}, false, false, false)
	go srv.Start() // owned by srv: Shutdown stops it and WaitForShutdown waits for it.
	c.srv = srv
	if !srv.ReadyForConnections(o.ConnectTimeout) {
		return fmt.Errorf("the embedded NATS server did not become ready within %s (store %s)", o.ConnectTimeout, o.StoreDir)
	}
	if !srv.JetStreamEnabled() {
		return fmt.Errorf("the embedded NATS server started without JetStream (store %s): see its log", o.StoreDir)
	}
	return nil
}

// ClientURL returns the URL other processes use to reach the embedded server
// when Listen is set, and "" otherwise.
func (c *Conn) ClientURL() string {
	if c.srv == nil || c.opts.Listen == "" {
		return ""
	}
	return c.srv.ClientURL()
}

// MaxBatch is the largest atomic batch, in messages, that PublishBatch and
// StageBatch accept (ConnectOptions.MaxBatch).
func (c *Conn) MaxBatch() int { return c.opts.MaxBatch }

func (c *Conn) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
	if v {
		c.metrics.connected.Set(1)
	} else {
		c.metrics.connected.Set(0)
	}
}

// Connected reports whether the client is connected right now.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

func (c *Conn) notify(s Status) {
	if c.opts.OnStatus != nil {
		c.opts.OnStatus(s)
	}
}

// Close drains the client connection (pending publishes and acks are
// flushed) within ctx, then shuts the embedded server down and waits for it.
// It is safe to call more than once; later calls return the first result.
func (c *Conn) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		if c.nc != nil && !c.nc.IsClosed() {
			done := make(chan struct{})
			var once sync.Once
			c.nc.SetClosedHandler(func(*nats.Conn) {
				c.setConnected(false)
				c.notify(Status{State: StatusClosed})
				once.Do(func() { close(done) })
			})
			if err := c.nc.Drain(); err != nil {
				c.nc.Close()
			} else {
				select {
				case <-done:
				case <-ctx.Done():
					c.closeErr = fmt.Errorf("draining the NATS connection: %w", ctx.Err())
					c.nc.Close()
				}
			}
		}
		c.shutdown()
	})
	return c.closeErr
}

// shutdown closes the client and stops the embedded server, waiting for it.
func (c *Conn) shutdown() {
	if c.nc != nil {
		c.nc.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}

type serverLogger struct{ log *slog.Logger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  {}
func (l *serverLogger) Tracef(format string, v ...any)  {}

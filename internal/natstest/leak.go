package natstest

import "go.uber.org/goleak"

// LeakIgnores are goleak options for goroutines nats-server 2.15 may leave
// behind after Shutdown, which no client can stop: the store of an atomic
// batch staged while the server shuts down (its stream stops the stores of
// the batches it knows, but a batch whose first message is processed during
// the shutdown gets a store afterwards), and the store's shared access-time
// ticker. Seen in pkg/bus when a server restarted right after a batch was
// staged. Everything else a test leaks, including a whole server, is still
// reported.
func LeakIgnores() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*msgBlock).flushLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
	}
}

// Package bus is the only package of Tributary that talks to NATS.
//
// It owns the connection (an embedded in-process nats-server with JetStream,
// or an external NATS cluster), the application of the declarative topology
// in package streams, publishing (deterministic message ids, re-publish on
// timeout or disconnect, atomic batches, fenced writes that the server
// refuses once a newer single-active writer claimed the fence: fence.go),
// consuming (durable pull consumers
// with explicit acks, retry with delay, dead letters) and the key-value
// buckets the lifecycle uses.
//
// It must never know what the messages mean: envelopes, results and states
// are opaque bytes here. Nothing outside this package imports nats.go.
package bus

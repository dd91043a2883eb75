// Package streams declares Tributary's bus topology: every JetStream stream,
// the consumer defaults and every key-value bucket, with the subjects that
// address them. Each binary applies it at start through bus.EnsureTopology,
// idempotently.
//
// It holds definitions only: it must never talk to NATS (that is package
// bus) and never know message contents.
package streams

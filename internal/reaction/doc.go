// Package reaction delivers query results to the outside world. Each
// reaction kind implements Reaction; Attach runs one over a durable
// consumer of the results stream, acknowledging a result only after the
// reaction's effect succeeded.
//
// It must never acknowledge a result whose effect failed, and never drop
// one: a failure is retried with backoff, a result that cannot be decoded
// or handled goes to the dead-letter stream with the reason.
package reaction

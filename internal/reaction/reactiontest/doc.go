// Package reactiontest is the conformance suite every reaction kind must
// pass: results applied in order per query, a redelivered result applied
// safely (once, or again under the same idempotency key), target failures
// classified as permanent or retryable, and the context respected.
//
// A kind's test supplies a Kind whose New builds the reaction over a fresh
// real target (an HTTP server on loopback, a Postgres database, a NATS
// stream, an SSE client) and reports what the target saw. It is test
// support: production code must not import it.
//
// It must never use mocks of the targets, sleep to wait for a condition
// (it polls with internal/testwait), or skip a check it can run.
package reactiontest

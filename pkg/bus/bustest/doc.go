// Package bustest is the conformance suite for consuming from the bus: a
// Consumer with a given concurrency, ordered or not, on any connection and
// stream a Factory provides, must pass every check of Run (at-least-once
// delivery, retry then success, permanent errors and exhausted retries in
// the dead letter stream with their headers, panics redelivered,
// MaxAckPending respected, drain semantics, handler timeouts, nothing lost
// on a message's last delivery; for ordered consumers, no overtaking and
// no dead letters for retryable failures).
//
// It lives in a normal file so that every package running handlers on the
// bus can run it against its own setup. It must never be imported by
// production code (it imports package testing).
package bustest

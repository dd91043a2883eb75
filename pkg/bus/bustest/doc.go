// Package bustest is the conformance suite for consuming from the bus: a
// Consumer with a given concurrency, on any connection and stream a
// Factory provides, must pass every check of Run (at-least-once delivery,
// retry then success, permanent errors and exhausted retries in the dead
// letter stream with their headers, panics redelivered, MaxAckPending
// respected, drain semantics).
//
// It lives in a normal file so that every package running handlers on the
// bus can run it against its own setup. It must never be imported by
// production code (it imports package testing).
package bustest

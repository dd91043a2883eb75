// Package queryservice runs one continuous query as a durable service on
// the bus: it feeds the query (package engine) from the changes stream and
// publishes the result diffs on the query's results subject, exactly once
// through restarts.
//
// Progress lives in the output. Every result message carries the query's
// gap-free seq and, in the Tributary-Input-Seq header, the changes-stream
// sequence it covers. A query that starts (under its lifecycle lease)
// reads the last message on its results subject (seq N, input S), rebuilds
// the engine by replaying its change subjects from the stream's start up to
// max(S, the durable consumer's ack floor) without publishing, then
// consumes live from its durable consumer, acknowledging without work what
// the replay covered and publishing from N+1. A query without results yet
// replays the history up to the stream's last sequence and publishes one
// message whose added holds the whole initial result set. An input change
// is acknowledged only after JetStream acknowledged the results it
// produced.
//
// The package owns the query's consumer, its result publishing and its
// metrics. It never evaluates Cypher itself (package engine does), never
// talks to NATS except through pkg/bus, and never decides who runs a query
// (the lifecycle component's lease does).
package queryservice

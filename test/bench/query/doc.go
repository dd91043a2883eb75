// Command query is the query-engine benchmark of issue 9. In one run on the
// machine, on embedded nats-servers with Tributary's default durability
// (fsync on every write, the store in a temporary directory; -sync interval
// for lazy fsync, to see what fsync costs), it measures
// for a filter query and a grouped aggregation query, each on its own:
//
//   - throughput over history: N changes published (atomic batches) before
//     the query starts; changes/s from the query's start until its durable
//     consumer has nothing pending and its last result message covers the
//     last change. A new query replays history silently (the bootstrap) and
//     publishes one initial message, so this is the replay path;
//   - throughput live: the query started on an empty stream, then N changes
//     published as fast as the bus takes them; changes/s from the first
//     publish until the last result is acknowledged;
//   - the two limits of the issue, on the same N changes in the same run:
//     an ordered batch consumer of the query's subjects that only
//     acknowledges (bus.Conn.ConsumeBatches with a no-op handler), and the
//     engine's in-process Apply of the changes (decoded beforehand);
//   - restart: a second instance of the query started on the N changes of
//     history and the query's results; the time until it consumes live.
//     There are no checkpoints yet: it replays, so this is the rebuild;
//
// and then the live latency of the filter query: changes published at a
// fixed rate, from the publish call to the result message being stored.
//
// The query runs in this process (internal/queryservice with a lifecycle
// component, as `query-engine run` runs it), not as a separate binary; so
// do the embedded server and the publishers. Tables go to stdout as
// markdown, progress to stderr.
//
// Run it with scripts/bench-query.sh or
//
//	go run ./test/bench/query [-n 1000000] [-quick] [-cpuprofile FILE]
//
// It owns the servers and temporary directories it creates and removes them
// on return, on error and on Ctrl-C. It exits non-zero on an error (a wrong
// result count included), not on a missed target: a miss is in the table.
package main

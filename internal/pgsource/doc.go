// Package pgsource streams the row changes of a set of Postgres tables into
// the changes stream, through one logical replication slot (pgoutput, proto
// version 1), with an optional initial snapshot that is exact with respect to
// the stream.
//
// It owns: the publication and the slot of one source (created when missing
// and allowed), the decoding of pgoutput messages and of Postgres text values
// into change envelopes, batching changes into atomic JetStream batches,
// confirming WAL positions to Postgres, heartbeats that keep idle slots from
// pinning WAL, reconnection with backoff, and the graceful stop.
//
// Guarantees, and how they are kept:
//   - Nothing is lost: a WAL position is confirmed to Postgres only when every
//     change of every transaction up to it was acknowledged by JetStream. The
//     confirmed position never moves backwards, not even below what the server
//     had confirmed when the session started.
//   - Nothing is stored twice: every change carries a position
//     (commit LSN, index in its transaction; see change.FormatPGPosition) and a
//     message id "<source>:<position>". At the start of every session the
//     position of the newest stored message of this source is read back from
//     the stream and changes at or below it are skipped, so that a replayed
//     transaction (even one that was stored only in part) is not stored again,
//     however long the restart took.
//   - No gaps: atomic batches are committed strictly one after the other
//     (the next one is only staged on the server meanwhile, see publishq.go),
//     so the stream never holds a change whose predecessors are missing;
//     the skip rule above relies on it.
//   - The initial snapshot is taken from the snapshot exported by a temporary
//     slot; the permanent slot is made (as a copy of the temporary one) only
//     once every snapshot row was acknowledged, so the existence of the slot
//     records durably that the snapshot is complete. See snapshot.go.
//
// Use (cmd/source-pg wires it this way, after taking the source's lease):
//
//	fence, err := conn.ClaimFence(ctx, topology.Changes.Name, topology.SourceFence(bus.Token(id)), instance, leaseToken)
//	...
//	src, err := pgsource.New(cfg, pgsource.BusPublisher(publisher, bus.WithFence(fence)), conn, topology, pgsource.Options{
//		Logger: log, Registerer: reg, OnStatus: report})
//	...
//	err = src.Run(ctx) // until ctx is cancelled (graceful stop), a fatal error or bus.ErrFenced
//
// where publisher is a *bus.Publisher and conn the *bus.Conn (PositionStore).
// With the fence, every batch is refused once another instance claimed the
// source: Run then returns an error wrapping bus.ErrFenced at once, having
// confirmed nothing more to Postgres.
//
// Wire format: one message per change on
// <prefix>.changes.<source>.<label>.<row key> (bus.Token-escaped; truncates
// use the key token "%truncate"), message id "<source>:<position>", header
// Tributary-Position: <position>, payload a change.Envelope whose values
// follow the table in values.go.
//
// Postgres needs: version 14 or later (pgoutput messages, numeric
// infinity), wal_level logical, a role with REPLICATION and SELECT on the
// tables (and ownership of them when the source creates the publication),
// and EXECUTE on pg_logical_emit_message for heartbeats (their failures are
// logged and counted, not fatal; without them an idle source pins WAL).
//
// It must never: acknowledge a position that is not durable downstream, send
// an LSN below the server's confirmed position, invent row ids (a table
// without a primary key or configured key columns is refused), talk to NATS
// other than through the Publisher and PositionStore interfaces, or log a
// connection string.
package pgsource

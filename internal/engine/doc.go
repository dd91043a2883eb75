// Package engine evaluates continuous Cypher queries incrementally: after
// every change its result set equals evaluating the query from scratch on
// the current data, and it reports exactly which rows were added, updated
// and deleted.
//
// A Query owns an element index (every element of the change stream with
// its current and previous version, tombstones, and the label, property,
// adjacency and join-key indexes its plan needs), the incremental state of
// each WITH/RETURN part (groups with exact accumulators, DISTINCT counts),
// and the result set.
//
// Per change (Apply, or ApplyBatch for a transaction) the engine writes the
// envelopes into the store, keeps the old state of every written element as
// an overlay, and computes the MATCH delta anchored at the written
// elements only: every match containing a written element, in the old and
// in the new state, deduplicated by identity (the matched elements). With
// OPTIONAL MATCH the affected rows of the required part are recomputed with
// all their extensions (or the one null-extended row). The delta then flows
// through the parts: projections and WHERE map (old, new) pairs, aggregating
// parts retract and add rows to their groups, DISTINCT counts value classes.
// Identities: matched element ids before aggregation, canonical grouping-key
// bytes after, canonical value bytes under DISTINCT.
//
// Evaluation errors (a type error in an expression) never abort a change:
// the value counts as null, the predicate as false, and the message is
// returned in Diff.Warnings. The state is a pure function of the elements,
// which is what checkpoints rely on (see Checkpoint).
//
// The package never does I/O, starts no goroutines and knows nothing of
// NATS: the query-engine service wraps it. It uses package cypher for
// parsing, analysis and expression evaluation and must not evaluate Cypher
// any other way.
package engine

// Package scenario loads and runs scenario files: a continuous query, an
// optional expected initial result, and steps of changes (one envelope, or
// a batch applied as one transaction) each with the complete list of diffs
// it must produce, compared as a multiset (105 equals 105.0).
//
// File format (YAML, unknown keys are errors):
//
//	name: optional name
//	description: optional text
//	query: MATCH (n:A) RETURN n.x AS x
//	joins: [{id: REL, keys: [{label: A, property: x}, {label: B, property: y}]}]
//	parameters: {min: 3}
//	initial: [row, ...]
//	steps:
//	  - change: <change envelope>
//	    expect: [{added: row} | {updated: {before: row, after: row}} | {deleted: row}]
//	  - batch: [<envelope>, <envelope>]   # one transaction
//	    expect: [...]
//	  - change: <envelope>
//	    error: substring of the expected error
//
// It owns the file format, the comparison and the human report; the
// evaluation itself belongs to package engine. It must never touch NATS or
// any service state: it is the offline `query-engine test` command.
package scenario

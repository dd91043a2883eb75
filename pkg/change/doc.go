// Package change holds the wire contracts that cross process boundaries: the
// change envelope (one message per element change, produced by sources and by
// other producers) and the result message (one per query result diff).
//
// It owns encoding (byte-identical to encoding/json, without reflection),
// decoding, validation and position ordering of those formats. It must
// never know about NATS, Postgres or query evaluation: it is imported by all of
// them. The formats are documented in docs/formats.md; a change there is a
// contract change.
package change

// Package cypher is Tributary's Cypher subset: lexer, parser, semantic
// analysis, the value model and expression evaluation.
//
// It owns:
//   - the value model (Value, temporal types, the Element interface the
//     engine implements) and its three relations: Compare (one total order),
//     Equal (Cypher's =, with null) and AppendKey (canonical key bytes,
//     consistent with Compare);
//   - Parse (text to AST, *SyntaxError with line and column), Analyze and
//     Compile (checked Program: row slots, pattern slots, grouping keys,
//     aggregate calls);
//   - Eval and EvalPredicate: evaluating one expression against an Env.
//
// It must never match patterns, keep aggregation state or compute diffs:
// that is internal/engine's job. It starts no goroutines, performs no I/O
// (except reading the time zone database once per named zone, as in
// datetime('...[Europe/Paris]'); the database is also embedded), keeps no
// state between calls apart from bounded caches of compiled regular
// expressions and zones, and never reads the clock: a continuous query must
// be deterministic, so functions that read the current time or randomness
// are rejected by Analyze.
package cypher

// Command query-engine runs continuous queries.
//
// `query-engine run --config FILE` is the service: it runs each query of
// the config as a lifecycle component (one active owner per query through
// its lease; several processes share a config's queries), feeds it from the
// changes stream and publishes its result diffs exactly once (see
// internal/queryservice). `query-engine test FILE...` evaluates scenario
// files offline and exits 1 when any step's diff differs from the expected
// one (see internal/scenario for the format). `query-engine check --config
// FILE` (or `run --check`) validates a config, checks that every source a
// query names is declared, and compiles every query in it.
//
// main only parses the command line and wires packages together: all logic
// lives in internal packages that tests import. It must never hold query or
// scenario logic itself.
package main

// Command query-engine runs continuous queries. `query-engine test FILE...`
// evaluates scenario files offline and exits 1 when any step's diff differs
// from the expected one (see internal/scenario for the format).
// `query-engine check --config FILE` validates a config and compiles every
// query in it. The service subcommand (run) comes beside them.
//
// main only parses the command line and wires packages together: all logic
// lives in internal packages that tests import. It must never hold query or
// scenario logic itself.
package main

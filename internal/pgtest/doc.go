// Package pgtest runs private, real Postgres clusters for tests.
//
// It owns: finding the server binaries (FindBinDir), creating a throw-away
// cluster in a temporary directory with logical replication enabled (Start,
// StartT), one cluster per test package (Main, WithServer), per-test
// databases that are dropped at cleanup (CreateDatabase), the faults tests
// inject into Postgres (Restart, Kill), and removing everything afterwards.
// When the test runs as root it runs Postgres as the "postgres" OS user,
// because Postgres refuses to run as root.
//
// A typical package:
//
//	var pg *pgtest.Server
//
//	func TestMain(m *testing.M) { pgtest.Main(m, &pg, pgtest.Options{}) }
//
//	func TestX(t *testing.T) {
//		dsn := pg.CreateDatabase(t.Context(), t, "")
//		...
//	}
//
// Missing binaries or a missing postgres user are errors that point to
// scripts/install-deps.sh: tests fail, they never skip.
//
// It must never: touch a cluster it did not create (it only ever stops data
// directories it made, or orphans of earlier pgtest runs whose owning process
// is gone), listen on anything but 127.0.0.1, or be imported by production
// code (cmd/, pkg/, the components in internal/); tests and test tooling
// (test/, such as the benchmarks) may import it.
package pgtest

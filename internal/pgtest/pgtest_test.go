package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
)

var pg *Server

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(WithServer(m, &pg, Options{}))
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, pg.LogTail(20))
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(t.Context(), "SHOW "+setting).Scan(&v); err != nil {
		t.Fatalf("SHOW %s: %v", setting, err)
	}
	return v
}

func TestServerIsReadyForLogicalReplication(t *testing.T) {
	conn := connect(t, pg.DSN("postgres"))
	for setting, want := range map[string]string{
		"wal_level":             "logical",
		"max_replication_slots": "20",
		"max_wal_senders":       "20",
		"listen_addresses":      "127.0.0.1",
		"fsync":                 "off",
		"synchronous_commit":    "on",
		"server_encoding":       "UTF8",
		"port":                  strconv.Itoa(pg.Port()),
	} {
		if got := show(t, conn, setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if !strings.HasPrefix(pg.DataDir(), os.TempDir()) {
		t.Errorf("DataDir %q not under %s", pg.DataDir(), os.TempDir())
	}
	if _, err := os.Stat(filepath.Join(pg.BinDir(), "pg_ctl")); err != nil {
		t.Errorf("BinDir %q: %v", pg.BinDir(), err)
	}
}

func TestCreateDatabaseIsDroppedWithItsSlots(t *testing.T) {
	const name = "pgtest_create"
	var repl *pgconn.PgConn
	t.Run("use", func(t *testing.T) {
		dsn := pg.CreateDatabase(t.Context(), t, name)
		if dsn != pg.DSN(name) {
			t.Fatalf("DSN = %q, want %q", dsn, pg.DSN(name))
		}
		conn := connect(t, dsn)
		for _, sql := range []string{
			`CREATE TABLE t (id int PRIMARY KEY)`,
			`CREATE PUBLICATION p FOR TABLE t`,
			`SELECT pg_create_logical_replication_slot('idle_slot', 'pgoutput')`,
		} {
			if _, err := conn.Exec(t.Context(), sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		// An active slot held by a live replication connection must not
		// keep the database from being dropped.
		var err error
		repl, err = pgconn.Connect(t.Context(), pg.ReplicationDSN(name))
		if err != nil {
			t.Fatalf("replication connect: %v", err)
		}
		if _, err := pglogrepl.CreateReplicationSlot(t.Context(), repl, "active_slot", "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{}); err != nil {
			t.Fatalf("create slot: %v", err)
		}
		if err := pglogrepl.StartReplication(t.Context(), repl, "active_slot", 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'p'"}}); err != nil {
			t.Fatalf("start replication: %v", err)
		}
	})
	if repl != nil {
		repl.Close(context.Background())
	}
	conn := connect(t, pg.DSN("postgres"))
	var dbs, slots int
	if err := conn.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM pg_database WHERE datname = $1),
		(SELECT count(*) FROM pg_replication_slots)`, name).Scan(&dbs, &slots); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || slots != 0 {
		t.Fatalf("after cleanup: %d databases named %s, %d slots", dbs, name, slots)
	}
}

func TestCreateDatabaseDerivesUniqueNames(t *testing.T) {
	a := pg.CreateDatabase(t.Context(), t, "")
	b := pg.CreateDatabase(t.Context(), t, "")
	if a == b || !strings.Contains(a, "/t_testcreatedatabasederivesuniquenames_") {
		t.Fatalf("DSNs %q and %q", a, b)
	}
	connect(t, a)
	connect(t, b)
}

func TestRestartAndKillKeepCommittedData(t *testing.T) {
	dsn := pg.CreateDatabase(t.Context(), t, "pgtest_restart")
	port := pg.Port()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), `CREATE TABLE t (id int); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := conn.Ping(t.Context()); err == nil {
		t.Fatal("old connection survived a restart")
	}
	conn.Close(context.Background())
	if pg.Port() != port || !pg.Running() {
		t.Fatalf("port %d -> %d, running %v", port, pg.Port(), pg.Running())
	}
	conn = connect(t, dsn)
	if _, err := conn.Exec(t.Context(), `INSERT INTO t VALUES (2)`); err != nil {
		t.Fatal(err)
	}

	if err := pg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if pg.Running() {
		t.Fatal("Running after Kill")
	}
	if err := pg.Kill(); !errors.Is(err, ErrStopped) {
		t.Fatalf("second Kill = %v, want ErrStopped", err)
	}
	if err := pg.Restart(t.Context()); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	conn = connect(t, dsn)
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d rows after restart and crash recovery, want 2", n)
	}
}

func TestStopRemovesEverything(t *testing.T) {
	s, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Dir(s.DataDir())
	if _, err := os.Stat(filepath.Join(s.DataDir(), "PG_VERSION")); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there after Stop: %v", base, err)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Restart(t.Context()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Restart after Stop = %v, want ErrStopped", err)
	}
	if c, err := pgx.Connect(t.Context(), s.DSN("postgres")); err == nil {
		c.Close(t.Context())
		t.Fatal("connected to a stopped server")
	}
}

func TestStartFailureShowsServerLog(t *testing.T) {
	_, err := Start(t.Context(), Options{Settings: map[string]string{"wal_level": "bogus"}})
	if err == nil {
		t.Fatal("Start with a bad setting succeeded")
	}
	if !strings.Contains(err.Error(), `"wal_level"`) || !strings.Contains(err.Error(), "server log:") {
		t.Fatalf("error lacks the server log: %v", err)
	}
}

func TestOrphanedClusterIsReaped(t *testing.T) {
	orphan, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = orphan.Stop(context.Background()) })
	// Pretend its owner died: give it the pid of a finished process.
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	base := filepath.Dir(orphan.DataDir())
	if err := os.WriteFile(filepath.Join(base, ownerFile), []byte(strconv.Itoa(done.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	StartT(t, Options{}) // reaps on start
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan %s not removed: %v", base, err)
	}
	if c, err := pgx.Connect(t.Context(), orphan.DSN("postgres")); err == nil {
		c.Close(t.Context())
		t.Fatal("orphan server still accepts connections")
	}
	// The package's own cluster (owner alive) is untouched.
	connect(t, pg.DSN("postgres"))
}

func TestBin(t *testing.T) {
	for _, name := range []string{"psql", "pg_recvlogical", "postgres"} {
		p, err := pg.Bin(name)
		if err != nil {
			t.Fatalf("Bin(%s): %v", name, err)
		}
		if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
			t.Fatalf("%s --version: %v %s", p, err, out)
		}
	}
	if _, err := pg.Bin("no-such-tool"); err == nil || !strings.Contains(err.Error(), "scripts/install-deps.sh") {
		t.Fatalf("Bin(no-such-tool) = %v", err)
	}
}

func TestMissingBinariesPointToInstallScript(t *testing.T) {
	t.Setenv("PG_BIN", t.TempDir())
	_, err := FindBinDir()
	if !errors.Is(err, ErrNoPostgres) || !strings.Contains(err.Error(), "scripts/install-deps.sh") {
		t.Fatalf("FindBinDir = %v", err)
	}
	if _, err := Start(t.Context(), Options{}); !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("Start = %v, want ErrNoPostgres", err)
	}
}

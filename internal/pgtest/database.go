package pgtest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var dbNameRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates database name and returns its DSN; the database
// is dropped when t's cleanup runs (its replication slots and connections
// are terminated first). An empty name derives a unique one from t.Name().
// name must be lower-case letters, digits and '_'. Failures end the test
// with t.Fatal.
func (s *Server) CreateDatabase(ctx context.Context, t testing.TB, name string) string {
	t.Helper()
	if name == "" {
		name = s.uniqueName(t.Name())
	}
	if !dbNameRe.MatchString(name) {
		t.Fatalf("pgtest: database name %q: want lower-case letters, digits and _, at most 63", name)
	}
	if err := s.exec(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			return // stopped or killed: Stop removes everything
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.dropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

func (s *Server) uniqueName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	base := b.String()
	if len(base) > 48 {
		base = base[:48]
	}
	s.mu.Lock()
	s.dbSeq++
	n := s.dbSeq
	s.mu.Unlock()
	return fmt.Sprintf("t_%s_%d", base, n)
}

// exec runs one statement in the postgres database.
func (s *Server) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return err
	}
	return nil
}

// dropDatabase drops name after ending its sessions and dropping its
// replication slots (a logical slot keeps a database from being dropped).
func (s *Server) dropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := conn.Exec(ctx,
			`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
			return fmt.Errorf("terminating sessions: %w", err)
		}
		// A slot can be dropped once its walsender is gone; a slot that
		// became active again in between makes the drop fail: try again.
		_, dropErr := conn.Exec(ctx,
			`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		var active int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&active); err != nil {
			return fmt.Errorf("listing replication slots: %w", err)
		}
		if active == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replication slots of %s still in use (last drop error: %v): %w", name, dropErr, ctx.Err())
		case <-tick.C:
		}
	}
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
		return err
	}
	return nil
}

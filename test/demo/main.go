// Command demo runs Tributary's main job end to end on this machine, with
// nothing set up beforehand: a throwaway Postgres (started here, removed at
// the end), source-pg with its embedded NATS server, row changes written to
// Postgres, and the change envelopes read back from JetStream as they
// arrive. It checks what it prints: every change once, in commit order, and
// a clean stop (exit 0, the slot confirmed up to the last commit).
//
// scripts/demo.sh builds the binaries and runs it; see README.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tributary/tributary/internal/pgtest"
	"github.com/tributary/tributary/pkg/change"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the source-pg binary (scripts/build.sh)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *bin)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("demo: "+format+"\n", args...) }

// The changes written while source-pg streams. With the initial snapshot
// of the 3 rows there before it starts (a truncate of the label, then an
// insert per row) they make 11 envelopes: the transaction holds 3 row
// changes and the key change 2 (a delete and an insert).
var changes = []string{
	`INSERT INTO orders VALUES (4, 'new', 12.50)`,
	`BEGIN; UPDATE orders SET status = 'paid' WHERE id IN (1, 4); DELETE FROM orders WHERE id = 2; COMMIT`,
	`UPDATE orders SET id = 30 WHERE id = 3`,
	`TRUNCATE orders`,
}

var want = []string{
	"truncate ", "insert orders:1", "insert orders:2", "insert orders:3", // the snapshot
	"insert orders:4",
	"update orders:1", "update orders:4", "delete orders:2",
	"delete orders:3", "insert orders:30",
	"truncate ",
}

func run(ctx context.Context, binDir string) (err error) {
	sourcePG, err := filepath.Abs(filepath.Join(binDir, "source-pg"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(sourcePG); err != nil {
		return fmt.Errorf("%s is missing: run scripts/build.sh first (%w)", sourcePG, err)
	}
	work, err := os.MkdirTemp("", "tributary-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	say("starting a throwaway Postgres (wal_level=logical)")
	pg, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		return fmt.Errorf("starting Postgres: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, pg.Stop(cctx))
	}()
	dsn := pg.DSN("postgres")
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to Postgres: %w", err)
	}
	defer db.Close(context.WithoutCancel(ctx))
	if _, err := db.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount numeric(10,2));
		INSERT INTO orders VALUES (1, 'new', 9.99), (2, 'new', 20.00), (3, 'shipped', 5.25)`); err != nil {
		return fmt.Errorf("creating the orders table: %w", err)
	}

	natsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(work, "tributary.yaml")
	cfg := fmt.Sprintf(`nats:
  storeDir: %s
  listen: %s
sources:
  - kind: postgres
    id: shop
    connectionString: %q
    tables: [orders]
    create: true
    snapshot: initial
`, filepath.Join(work, "nats"), natsAddr, dsn)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}

	say("starting source-pg (embedded NATS on %s, metrics on %s)", natsAddr, metricsAddr)
	var logs bytes.Buffer
	cmd := exec.Command(sourcePG, "--config", cfgPath, "--metrics", metricsAddr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting source-pg: %w", err)
	}
	// exited is closed once source-pg is gone, with waitErr set.
	exited := make(chan struct{})
	var waitErr error
	go func() { // owned by run: every path below waits for exited
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Kill() // no-op once it exited
		<-exited
		if err != nil {
			fmt.Fprintf(os.Stderr, "--- source-pg log ---\n%s", logs.String())
		}
	}()
	if err := waitReady(ctx, "http://"+metricsAddr+"/readyz", exited); err != nil {
		return err
	}
	say("source-pg is ready; writing changes")
	for _, sql := range changes {
		say("  postgres> %s", sql)
		if _, err := db.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}

	say("the changes stream, as JetStream holds it:")
	if err := readChanges(ctx, "nats://"+natsAddr); err != nil {
		return err
	}

	say("stopping source-pg (SIGTERM)")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-exited:
		if waitErr != nil {
			return fmt.Errorf("source-pg did not stop cleanly: %w", waitErr)
		}
	case <-time.After(60 * time.Second):
		return errors.New("source-pg did not stop within 60s of SIGTERM")
	}
	var confirmed string
	var active bool
	if err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = 'tributary_shop'`).Scan(&confirmed, &active); err != nil {
		return fmt.Errorf("reading the slot: %w", err)
	}
	if active {
		return errors.New("the slot is still active after source-pg stopped")
	}
	say("stopped with exit 0; slot tributary_shop kept, inactive, confirmed up to %s", confirmed)
	say("ok: %d changes, each once, in commit order", len(want))
	return nil
}

// readChanges prints every change of source "shop" as it arrives and
// checks them against want, positions strictly increasing.
func readChanges(ctx context.Context, url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(rctx, "TRIBUTARY_CHANGES", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"tributary.changes.shop.>"}})
	if err != nil {
		return fmt.Errorf("reading the changes stream: %w", err)
	}
	prev := ""
	for n := 0; n < len(want); n++ {
		m, err := cons.Next(jetstream.FetchContext(rctx))
		if err != nil {
			return fmt.Errorf("after %d of %d changes: %w", n, len(want), err)
		}
		env, err := change.Decode(m.Data())
		if err != nil {
			return fmt.Errorf("change %d: %w", n+1, err)
		}
		if prev != "" && change.ComparePositions(env.Position, prev) <= 0 {
			return fmt.Errorf("change %d at position %s does not follow %s", n+1, env.Position, prev)
		}
		prev = env.Position
		if got := string(env.Op) + " " + env.Element.ID; got != want[n] {
			return fmt.Errorf("change %d is %q, want %q", n+1, got, want[n])
		}
		say("  %-8s %-10s position %s  %s", env.Op, env.Element.ID, env.Position, props(env))
	}
	return nil
}

func props(env *change.Envelope) string {
	if env.Op == change.OpTruncate {
		return fmt.Sprint("labels ", env.Element.Labels)
	}
	if env.Op == change.OpDelete {
		return fmt.Sprint("before ", env.Before)
	}
	return fmt.Sprint(env.Element.Properties)
}

// waitReady polls url until it answers 200, the process exits or a minute
// passes.
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("source-pg not ready within a minute (%s)", url)
		}
		select {
		case <-exited:
			return errors.New("source-pg exited before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

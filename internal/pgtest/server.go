package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoPostgresUser means the test runs as root and there is no "postgres"
// OS user to run the server as.
var ErrNoPostgresUser = errors.New(`pgtest: running as root, Postgres must run as the "postgres" OS user, which does not exist: run scripts/install-deps.sh`)

// ErrStopped is returned by methods that need a running server after Stop
// or Kill.
var ErrStopped = errors.New("pgtest: server is not running")

// Options tune a cluster. The zero value is what most tests want.
type Options struct {
	// Fsync turns fsync on. Default off: faster, and the tests exercise
	// Postgres restarts, not OS crashes. synchronous_commit stays on either
	// way, so a committed transaction is in the WAL before COMMIT returns.
	Fsync bool
	// Settings are extra server settings (name -> value) written to
	// postgresql.conf after the defaults, so they override them.
	Settings map[string]string
	// BaseDir is where the cluster's temporary directory is made; it must be
	// traversable by the postgres user. Default os.TempDir().
	BaseDir string
	// StartTimeout bounds initdb and each server start or stop. Default 60s.
	StartTimeout time.Duration
}

// defaultSettings make every cluster ready for logical replication.
var defaultSettings = map[string]string{
	"listen_addresses":      "127.0.0.1",
	"wal_level":             "logical",
	"max_replication_slots": "20",
	"max_wal_senders":       "20",
	"synchronous_commit":    "on",
	"fsync":                 "off",
	"full_page_writes":      "off",
	"log_min_messages":      "warning",
}

// Server is one private cluster. Its methods are safe for concurrent use.
type Server struct {
	binDir  string
	base    string // temporary directory holding everything below
	dataDir string
	sockDir string
	logFile string
	cred    *syscall.Credential // nil: run as the current user
	timeout time.Duration

	// opMu serializes the lifecycle operations (Stop, Kill, Restart) so
	// that they never run pg_ctl concurrently on the same data directory.
	opMu sync.Mutex
	// mu guards the fields below; it is never held while pg_ctl runs.
	mu      sync.Mutex
	port    int
	running bool
	removed bool
	dbSeq   int
}

// Start creates a cluster in a fresh temporary directory (initdb as user
// postgres with trust authentication, UTF8, no locale), starts it on a free
// 127.0.0.1 port with wal_level=logical and waits until it accepts
// connections. A failed start removes everything it made and returns an
// error holding the tail of the server log. Errors wrap ErrNoPostgres or
// ErrNoPostgresUser when the machine lacks them. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	reapOrphans(ctx, binDir, opts.BaseDir, cred)

	base, err := os.MkdirTemp(opts.BaseDir, "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: creating the cluster directory: %w", err)
	}
	s := &Server{
		binDir:  binDir,
		base:    base,
		dataDir: filepath.Join(base, "data"),
		sockDir: filepath.Join(base, "sock"),
		logFile: filepath.Join(base, "server.log"),
		cred:    cred,
		timeout: opts.StartTimeout,
	}
	if s.timeout <= 0 {
		s.timeout = 60 * time.Second
	}
	if err := s.create(ctx, opts); err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	if err := s.startOnFreePort(ctx); err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	return s, nil
}

// serverCredential returns the postgres user's credential when running as
// root, nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoPostgresUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: postgres user has a non-numeric uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// create makes the directories, runs initdb and writes the settings.
func (s *Server) create(ctx context.Context, opts Options) error {
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return fmt.Errorf("pgtest: creating the socket directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.base, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("pgtest: writing the owner file: %w", err)
	}
	for _, dir := range []string{s.base, s.sockDir} {
		if err := s.chown(dir); err != nil {
			return err
		}
	}
	args := []string{"-D", s.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"}
	if !opts.Fsync {
		args = append(args, "--no-sync")
	}
	if out, err := s.run(ctx, "initdb", args...); err != nil {
		return fmt.Errorf("pgtest: initdb failed: %w\n%s", err, tail(out, 30))
	}

	settings := map[string]string{}
	for k, v := range defaultSettings {
		settings[k] = v
	}
	settings["unix_socket_directories"] = s.sockDir
	if opts.Fsync {
		settings["fsync"] = "on"
		settings["full_page_writes"] = "on"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	var conf strings.Builder
	conf.WriteString("\n# pgtest\n")
	for _, k := range names {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: opening postgresql.conf: %w", err)
	}
	_, werr := f.WriteString(conf.String())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("pgtest: writing postgresql.conf: %w", werr)
	}
	return nil
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("pgtest: giving %s to the postgres user: %w", path, err)
	}
	return nil
}

// run executes a server binary as the server's user and returns its output.
func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	cmd.Dir = s.base
	cmd.Env = childEnv()
	cmd.WaitDelay = 5 * time.Second
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

// childEnv is the environment without PG* variables, which would otherwise
// steer pg_ctl and initdb (PGDATA, PGPORT, ...).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// startOnFreePort starts the server on a free port, retrying with another
// port when the chosen one was taken in the meantime.
func (s *Server) startOnFreePort(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var port int
		port, err = freePort()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.port = port
		s.mu.Unlock()
		if err = s.start(ctx); err == nil || !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

var errPortInUse = errors.New("port in use")

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pgtest: finding a free port: %w", err)
	}
	return port, nil
}

// start runs pg_ctl start -w on s.port. The server runs detached from this
// process; Stop or Kill ends it.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	logStart := fileSize(s.logFile)
	out, err := s.run(ctx, "pg_ctl", "-D", s.dataDir, "-l", s.logFile, "-w",
		"-t", strconv.Itoa(int(s.timeout/time.Second)), "-o", "-p "+strconv.Itoa(port), "start")
	if err != nil {
		log := s.logSince(logStart)
		if strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use") {
			// The server may still be shutting down after failing to bind.
			_, _ = s.run(context.WithoutCancel(ctx), "pg_ctl", "-D", s.dataDir, "-m", "immediate", "-w", "stop")
			return fmt.Errorf("pgtest: starting on port %d: %w", port, errPortInUse)
		}
		// A start that timed out may have left a server running.
		_, _ = s.run(context.WithoutCancel(ctx), "pg_ctl", "-D", s.dataDir, "-m", "immediate", "-w", "stop")
		return fmt.Errorf("pgtest: pg_ctl start failed: %w\n%s\nserver log:\n%s", err, tail(out, 10), tail([]byte(log), 30))
	}
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the server log from byte offset off.
func (s *Server) logSince(off int64) string {
	data, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	if off > int64(len(data)) {
		off = 0
	}
	return string(data[off:])
}

// LogTail returns the last n lines of the server log, for test failure
// messages.
func (s *Server) LogTail(n int) string {
	return tail([]byte(s.logSince(0)), n)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop runs pg_ctl stop in mode (fast or immediate).
func (s *Server) stop(ctx context.Context, mode string) error {
	out, err := s.run(ctx, "pg_ctl", "-D", s.dataDir, "-m", mode, "-w",
		"-t", strconv.Itoa(int(s.timeout/time.Second)), "stop")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop -m %s failed: %w\n%s", mode, err, tail(out, 10))
	}
	return nil
}

// Stop stops the server (fast mode, falling back to immediate) and removes
// its directory. It is safe to call more than once and after Kill; later
// calls return nil.
func (s *Server) Stop(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	removed, running := s.removed, s.running
	s.mu.Unlock()
	if removed {
		return nil
	}
	var errs []error
	if running {
		if err := s.stop(ctx, "fast"); err != nil {
			errs = append(errs, err)
			if err := s.stop(context.WithoutCancel(ctx), "immediate"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(s.base); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: removing %s: %w", s.base, err))
	}
	s.mu.Lock()
	s.running, s.removed = false, true
	s.mu.Unlock()
	return errors.Join(errs...)
}

// Kill stops the server in immediate mode: backends are killed without a
// shutdown checkpoint, as after a crash. Restart recovers it. Kill on a
// stopped server returns ErrStopped.
func (s *Server) Kill() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if !s.Running() {
		return ErrStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	err := s.stop(ctx, "immediate")
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	return err
}

// Restart stops the server (fast mode) if it is running and starts it again
// on the same data directory and port; tests use it to restart Postgres
// under a live replication stream. After Stop it returns ErrStopped.
func (s *Server) Restart(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	removed, running := s.removed, s.running
	s.mu.Unlock()
	if removed {
		return ErrStopped
	}
	if running {
		if err := s.stop(ctx, "fast"); err != nil {
			return err
		}
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}
	return s.start(ctx)
}

// Running reports whether the server is up (not stopped or killed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// Port is the server's TCP port on 127.0.0.1; it never changes.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// BinDir is the directory initdb, pg_ctl and postgres were found in.
func (s *Server) BinDir() string { return s.binDir }

// Bin returns the path of a Postgres tool such as psql or pg_recvlogical,
// looked up next to the server binaries, then on PATH. The error says to run
// scripts/install-deps.sh.
func (s *Server) Bin(name string) (string, error) { return findTool(s.binDir, name) }

// DSN returns a connection string for database db as the superuser
// postgres (trust authentication, no TLS).
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port(), db)
}

// ReplicationDSN is DSN with replication=database, for a logical
// replication connection.
func (s *Server) ReplicationDSN(db string) string {
	return s.DSN(db) + "&replication=database"
}

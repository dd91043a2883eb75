package pgtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFile in a cluster's directory holds the pid of the test process
// that made it.
const ownerFile = "owner.pid"

// reapOrphans stops and removes clusters left behind by test processes that
// died without cleaning up (a test binary killed by -timeout, say). A
// cluster is an orphan when its owner process no longer exists; clusters of
// live processes, including other test packages running right now, are left
// alone. Best effort: a cluster that cannot be reaped stays for the next run.
func reapOrphans(ctx context.Context, binDir, baseDir string, cred *syscall.Credential) {
	if baseDir == "" {
		baseDir = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(baseDir, "pgtest-*"))
	for _, dir := range dirs {
		if !isOrphan(dir) {
			continue
		}
		s := &Server{binDir: binDir, base: dir, dataDir: filepath.Join(dir, "data"), cred: cred, timeout: 30 * time.Second}
		if _, err := os.Stat(filepath.Join(s.dataDir, "postmaster.pid")); err == nil {
			if err := s.stop(ctx, "immediate"); err != nil {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func isOrphan(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		// Being created right now, or not ours: only very old ones go.
		fi, serr := os.Stat(dir)
		return errors.Is(err, os.ErrNotExist) && serr == nil && time.Since(fi.ModTime()) > time.Hour
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return false
	}
	err = syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoPostgres means the Postgres server binaries were not found.
var ErrNoPostgres = errors.New("pgtest: Postgres server binaries (initdb, pg_ctl, postgres) not found: run scripts/install-deps.sh (or set PG_BIN to their directory)")

// serverBins must all be in the directory FindBinDir returns.
var serverBins = []string{"initdb", "pg_ctl", "postgres"}

// FindBinDir returns the directory holding initdb, pg_ctl and postgres,
// searching in order: $PG_BIN (if set, it must hold them), the directory of
// initdb on $PATH, /usr/local/bin, and /usr/lib/postgresql/<version>/bin
// (highest version first). The error wraps ErrNoPostgres.
func FindBinDir() (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		if missing := missingBins(dir); len(missing) > 0 {
			return "", fmt.Errorf("%w: PG_BIN=%s lacks %s", ErrNoPostgres, dir, strings.Join(missing, ", "))
		}
		return dir, nil
	}
	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	candidates = append(candidates, "/usr/local/bin")
	candidates = append(candidates, debianBinDirs()...)
	for _, dir := range candidates {
		if len(missingBins(dir)) == 0 {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: searched %s", ErrNoPostgres, strings.Join(candidates, ", "))
}

func missingBins(dir string) []string {
	var missing []string
	for _, b := range serverBins {
		if !isExecutable(filepath.Join(dir, b)) {
			missing = append(missing, b)
		}
	}
	return missing
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// debianBinDirs lists /usr/lib/postgresql/*/bin, highest version first.
func debianBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs
}

// findTool finds a client tool such as psql or pg_recvlogical: next to
// initdb in binDir, next to the file initdb links to (Debian keeps the full
// set in /usr/lib/postgresql/N/bin), then on $PATH.
func findTool(binDir, name string) (string, error) {
	dirs := []string{binDir}
	if real, err := filepath.EvalSymlinks(filepath.Join(binDir, "initdb")); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("pgtest: %s not found in %s or on PATH: run scripts/install-deps.sh", name, strings.Join(dirs, ", "))
}

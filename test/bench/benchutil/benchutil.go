// Package benchutil holds what the bench commands under test/bench share:
// the machine's load for their reports, and progress lines on stderr.
package benchutil

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// LoadAvg is the first three fields of /proc/loadavg ("unknown" when it
// cannot be read).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// Progress writes a progress line to stderr (the tables go to stdout).
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

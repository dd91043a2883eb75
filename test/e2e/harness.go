package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tributary/tributary/internal/testwait"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds cmd/... once per test process and returns the directory
// holding source-pg, query-engine and reactor.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tributary-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./cmd/...")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the binaries: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Process is one running binary; its output goes to a log file in the
// test's temp dir, shown when the test fails.
type Process struct {
	t       testing.TB
	Name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// Start runs bin (a name inside Binaries) with args.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	dir := Binaries(t)
	logPath := filepath.Join(t.TempDir(), bin+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, bin), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &Process{t: t, Name: bin, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { // owned by p: Wait/Kill/cleanup wait for done
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", bin, p.LogTail(60))
		}
	})
	return p
}

// Log returns the process's whole output so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// LogTail returns the last n lines of the output.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and waits up to timeout for the exit; it returns
// the exit code (-1 when killed by a signal).
func (p *Process) Terminate(timeout time.Duration) (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(timeout)
}

// Pause stops the process with SIGSTOP (a long GC pause, a frozen VM):
// it keeps its connections and timers but runs nothing until Resume.
func (p *Process) Pause() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Fatalf("SIGSTOP %s: %v", p.Name, err)
	}
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		p.t.Fatalf("SIGCONT %s: %v", p.Name, err)
	}
}

// Wait waits up to timeout for the process to exit and returns its code.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s did not exit within %s", p.Name, timeout)
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// metricsAddrRE finds the address the process serves /metrics, /healthz
// and /readyz on, in its log line.
var metricsAddrRE = regexp.MustCompile(`msg="serving /metrics, /healthz, /readyz" .*addr=(\S+)`)

// MetricsAddr waits until the process logs the address of its /metrics,
// /healthz and /readyz server (started with --metrics 127.0.0.1:0) and
// returns it.
func (p *Process) MetricsAddr(t testing.TB) string {
	t.Helper()
	var addr string
	testwait.Until(t, 30*time.Second, p.Name+" serving /metrics", func() bool {
		if m := metricsAddrRE.FindStringSubmatch(p.Log()); m != nil {
			addr = m[1]
			return true
		}
		return p.Exited()
	})
	if addr == "" {
		t.Fatalf("%s exited before serving /metrics:\n%s", p.Name, p.LogTail(20))
	}
	return addr
}

// changeCount is how many changes of source the changes stream holds: its
// messages but the source's fence claims (on tributary.changes.<source>,
// see streams.Topology.SourceFence). The stream must hold no other
// source's messages.
func changeCount(ctx context.Context, js jetstream.JetStream, source string) (uint64, error) {
	s, err := js.Stream(ctx, "TRIBUTARY_CHANGES")
	if err != nil {
		return 0, err
	}
	fence := "tributary.changes." + source
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(fence))
	if err != nil {
		return 0, err
	}
	return info.State.Msgs - info.State.Subjects[fence], nil
}

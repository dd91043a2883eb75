package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one of the binaries, started in its own process group so that a
// Ctrl-C at the terminal reaches the demo only (the demo stops them in
// order), with its stderr (the slog lines) kept for a failure report.
type proc struct {
	name    string
	metrics string // its --metrics address
	cmd     *exec.Cmd
	log     lockedBuffer
	exited  chan struct{} // closed once Wait returned, with waitErr set
	waitErr error
}

// lockedBuffer is a bytes.Buffer safe for the exec copy goroutine and the
// demo's reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startProc starts path with args and env added to the demo's environment.
// stdout, when not nil, receives the process's standard output (else it
// goes to the kept log too). The caller must call stop or kill, then wait
// for exited.
func startProc(name, path, metrics string, env []string, stdout *os.File, args ...string) (*proc, error) {
	p := &proc{name: name, metrics: metrics, exited: make(chan struct{})}
	p.cmd = exec.Command(path, append(args, "--metrics", metrics)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.log
	if stdout != nil {
		p.cmd.Stdout = stdout
	} else {
		p.cmd.Stdout = &p.log
	}
	// Its own process group: the terminal's Ctrl-C goes to the demo only,
	// and the group lets the demo check that nothing of it is left. If the
	// demo itself dies, the kernel sends the binary SIGTERM.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { // owned by the demo: every path waits for exited
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady polls the process's /readyz until it answers 200, the process
// exits or within passes.
func (p *proc) waitReady(ctx context.Context, client *http.Client, within time.Duration) error {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	url := "http://" + p.metrics + "/readyz"
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (%s)", p.name, within, url)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits up to within for the process to exit; it
// is an error unless it exits 0.
func (p *proc) stop(within time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM to %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("%s did not stop cleanly on SIGTERM: %w", p.name, p.waitErr)
		}
		return nil
	case <-time.After(within):
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, within)
	}
}

// kill ends the process if it still runs (SIGTERM, then after 10s
// SIGKILL to its whole group) and waits for it, then reports whether
// anything of its group is still alive.
func (p *proc) kill() error {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // ESRCH once the group is gone
	<-p.exited
	// The group is empty once every member was reaped; poll briefly for
	// a grandchild the kernel is still tearing down.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(-pgid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a process of %s's group %d is still alive (%v)", p.name, pgid, err)
		}
		time.Sleep(50 * time.Millisecond) // pacing of the poll above
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

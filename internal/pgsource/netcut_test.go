package pgsource

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tributary/tributary/internal/testwait"
)

// cutProxy forwards TCP connections to a target and can cut them the way a
// network partition does: silently, without closing anything. It is the
// injected fault, not a stand-in for Postgres (every byte it forwards comes
// from the real server).
type cutProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool                      // new connections forward nothing
	conns map[*proxiedConn]struct{} // open connections
	wg    sync.WaitGroup
}

type proxiedConn struct {
	client, server net.Conn
	mu             sync.Mutex
	dead           bool // cut: bytes are read and dropped
}

func (c *proxiedConn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func startCutProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, conns: map[*proxiedConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxiedConn{client: client, server: server}
		p.mu.Lock()
		c.dead = p.cut
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, client, server)
		go p.pipe(c, server, client)
	}
}

// pipe copies from src to dst until either side closes; on a dead
// connection it reads and drops, so that neither end notices anything.
func (p *cutProxy) pipe(c *proxiedConn, src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		c.client.Close()
		c.server.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.isDead() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// setCut cuts every open connection for good, and new ones while on; off,
// new connections forward again (the cut ones stay dead, as they would
// after a partition: their peers gave up on them).
func (p *cutProxy) setCut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = on
	if on {
		for c := range p.conns {
			c.mu.Lock()
			c.dead = true
			c.mu.Unlock()
		}
	}
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.client.Close()
		c.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestSilentNetworkCutIsDetectedAndRecovered: the replication connection
// goes silent (a partition: nothing is closed, nothing arrives). The source
// takes it for dead within Timeouts.Idle, reports Degraded while it cannot
// reconnect, and once the network is back resumes where it stopped: every
// change committed meanwhile is stored once, in order.
func TestSilentNetworkCutIsDetectedAndRecovered(t *testing.T) {
	e := newEnv(t)
	e.exec(`CREATE TABLE t (id int PRIMARY KEY, v int)`)
	u, err := url.Parse(e.dsn)
	if err != nil || u.Host == "" {
		t.Fatalf("the test DSN %q has no host:port (%v)", e.dsn, err)
	}
	proxy := startCutProxy(t, u.Host)
	u.Host = proxy.addr()
	via := u.String()

	cfg := e.config("cut", "t")
	cfg.ConnString = via
	cfg.Snapshot = SnapshotNever
	cfg.StatusInterval = 200 * time.Millisecond
	cfg.Timeouts.Idle = 2 * time.Second
	cfg.Timeouts.Connect = time.Second
	cfg.Timeouts.Stop = 3 * time.Second
	r := e.start(cfg)
	testwait.Until(t, 20*time.Second, "streaming", func() bool { return r.src.Status().State == StateStreaming })

	e.burst(1, 100)
	testwait.Until(t, 20*time.Second, "the first changes", func() bool { return e.streamCount() >= 100 })

	proxy.setCut(true)
	cutAt := time.Now()
	e.burst(101, 100) // committed during the partition (directly, not through the proxy)
	testwait.Until(t, 30*time.Second, "the source to notice the dead connection", func() bool {
		return r.src.Status().State == StateDegraded
	})
	noticed := time.Since(cutAt)
	t.Logf("dead connection noticed %s after the cut (idle timeout %s)", noticed.Round(time.Millisecond), cfg.Timeouts.Idle)
	if e.streamCount() != 100 {
		t.Fatalf("the stream holds %d changes during the partition, want 100", e.streamCount())
	}

	proxy.setCut(false)
	testwait.Until(t, 60*time.Second, "every change after the partition", func() bool { return e.streamCount() >= 200 })
	if err := r.stop(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	msgs := e.messages()
	checkStreamInvariants(t, msgs)
	if len(msgs) != 200 {
		t.Fatalf("the stream holds %d changes, want 200", len(msgs))
	}
}

package natstest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tributary/tributary/internal/testwait"
)

// Cluster is a three-node JetStream cluster on loopback. Every node has its
// own name, store directory, client port and cluster port, kept across
// restarts, so a restarted node rejoins as the same peer with its data.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	opts server.Options
	srv  *server.Server // nil while killed
}

// clusterSize is the number of nodes of a test cluster.
const clusterSize = 3

// waitTimeout bounds every wait of the cluster helpers.
const waitTimeout = 30 * time.Second

// StartCluster starts a three-node JetStream cluster for the test, waits
// until it has a meta leader, and shuts it down at cleanup.
func StartCluster(t testing.TB, o ...Options) *Cluster {
	t.Helper()
	var opt Options
	if len(o) > 0 {
		opt = o[0]
	}
	c := &Cluster{t: t}
	t.Cleanup(c.Shutdown)
	clusterPorts := freePorts(t, clusterSize)
	clientPorts := freePorts(t, clusterSize)
	var routes []string
	for _, p := range clusterPorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	name := fmt.Sprintf("test-cluster-%d", time.Now().UnixNano())
	base := t.TempDir()
	for i := range clusterSize {
		c.nodes = append(c.nodes, &clusterNode{opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   filepath.Join(base, fmt.Sprintf("n%d", i)),
			NoSigs:     true,
			NoLog:      true,
			SyncAlways: opt.SyncAlways,
			Cluster: server.ClusterOpts{
				Name: name,
				Host: "127.0.0.1",
				Port: clusterPorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}})
	}
	// Start every node before waiting: a clustered JetStream node is of
	// no use before it sees its peers.
	for i := range c.nodes {
		c.startNode(i)
	}
	for i := range c.nodes {
		c.waitReady(i)
	}
	c.WaitForMetaLeader()
	return c
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: finding a free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func (c *Cluster) startNode(i int) {
	c.t.Helper()
	n := c.nodes[i]
	opts := n.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("natstest: creating node %d: %v", i, err)
	}
	go srv.Start() // owned by srv: Shutdown stops it and waits.
	c.mu.Lock()
	n.srv = srv
	c.mu.Unlock()
}

func (c *Cluster) waitReady(i int) {
	c.t.Helper()
	srv := c.node(i)
	if !srv.ReadyForConnections(waitTimeout) {
		c.t.Fatalf("natstest: node %d not ready within %s", i, waitTimeout)
	}
	if !srv.JetStreamEnabled() {
		c.t.Fatalf("natstest: node %d started without JetStream", i)
	}
}

func (c *Cluster) node(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		c.t.Fatalf("natstest: no node %d", i)
	}
	return c.nodes[i].srv
}

// running returns the running nodes by index.
func (c *Cluster) running() map[int]*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[int]*server.Server)
	for i, n := range c.nodes {
		if n.srv != nil {
			m[i] = n.srv
		}
	}
	return m
}

// URLs returns the client URLs of all nodes, comma-separated (running or
// not: clients reconnect to whichever is up).
func (c *Cluster) URLs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port))
	}
	return strings.Join(urls, ",")
}

// Server returns node i's server, nil while it is killed.
func (c *Cluster) Server(i int) *server.Server { return c.node(i) }

// WaitForMetaLeader waits until a running node is the JetStream meta
// leader, every running node is current with the meta group, and the leader
// counts every running node as an online peer. Without the last condition a
// replicated stream created at once can be refused with "no suitable peers
// for placement, peer offline": the leader learns that a peer is online from
// its statistics, which arrive some time after the peer joined the group.
func (c *Cluster) WaitForMetaLeader() {
	c.t.Helper()
	c.waitFor("a meta leader that sees every running node online", func() bool {
		var leader *server.Server
		leaders, current := 0, 0
		nodes := c.running()
		for _, s := range nodes {
			if s.JetStreamIsLeader() {
				leaders++
				leader = s
			}
			if s.JetStreamIsCurrent() {
				current++
			}
		}
		return leaders == 1 && current == len(nodes) &&
			len(leader.JetStreamClusterPeers()) == len(nodes)
	})
}

// StreamLeader returns the index of the node leading stream (in the
// global account), or -1 when no running node does.
func (c *Cluster) StreamLeader(stream string) int {
	for i, s := range c.running() {
		if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitForStreamLeader waits until a running node other than the ones in
// not leads stream, and returns its index.
func (c *Cluster) WaitForStreamLeader(stream string, not ...int) int {
	c.t.Helper()
	leader := -1
	c.waitFor("a leader of stream "+stream, func() bool {
		leader = c.StreamLeader(stream)
		if leader < 0 {
			return false
		}
		for _, n := range not {
			if leader == n {
				return false
			}
		}
		return true
	})
	return leader
}

// WaitForStreamCurrent waits until node i is current with stream's group
// (e.g. after Restart).
func (c *Cluster) WaitForStreamCurrent(i int, stream string) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("node %d current with stream %s", i, stream), func() bool {
		s := c.node(i)
		return s != nil && s.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream)
	})
}

// Kill shuts node i down and waits for it, as a crash of that machine
// (its store stays for Restart).
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	srv := c.node(i)
	if srv == nil {
		c.t.Fatalf("natstest: node %d is not running", i)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	c.mu.Lock()
	c.nodes[i].srv = nil
	c.mu.Unlock()
}

// Restart starts node i again on its ports and store, after Kill (or
// kills it first), and waits until it is ready.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.node(i) != nil {
		c.Kill(i)
	}
	c.startNode(i)
	c.waitReady(i)
}

// Shutdown stops every running node and waits for them. Safe to call
// twice.
func (c *Cluster) Shutdown() {
	for i, s := range c.running() {
		s.Shutdown()
		s.WaitForShutdown()
		c.mu.Lock()
		c.nodes[i].srv = nil
		c.mu.Unlock()
	}
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func (c *Cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	testwait.Until(c.t, waitTimeout, "natstest: "+what, cond)
}

// RestartAfter stops the server, keeps it down for down (the injected
// outage: longer than a client's timeouts, unlike Restart) and starts it
// again on the same port and store.
func (s *Server) RestartAfter(down time.Duration) {
	s.t.Helper()
	s.Shutdown()
	time.Sleep(down)
	s.start()
}

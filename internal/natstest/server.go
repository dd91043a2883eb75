package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is one real nats-server with JetStream, listening on loopback.
type Server struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// Options tune a test server.
type Options struct {
	// SyncAlways fsyncs every JetStream write (the production default).
	SyncAlways bool
	// Configure, when set, adjusts the server options before the start
	// (authentication, TLS, limits).
	Configure func(*server.Options)
}

// Start runs a one-node JetStream server for the test on a random loopback
// port with its store in t.TempDir(), and shuts it down at cleanup.
func Start(t testing.TB, o ...Options) *Server {
	t.Helper()
	var opt Options
	if len(o) > 0 {
		opt = o[0]
	}
	s := &Server{t: t, opts: server.Options{
		ServerName: "test-" + fmt.Sprint(time.Now().UnixNano()),
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoSigs:     true,
		NoLog:      true,
		SyncAlways: opt.SyncAlways,
	}}
	if opt.Configure != nil {
		opt.Configure(&s.opts)
	}
	s.start()
	// Keep the port for restarts, so clients reconnect to the same URL.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("natstest: creating server: %v", err)
	}
	go srv.Start() // owned by srv: Shutdown stops it and waits.
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatalf("natstest: server not ready within 10s")
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		s.t.Fatalf("natstest: server started without JetStream")
	}
	s.srv = srv
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.srv.ClientURL() }

// StoreDir is the server's JetStream directory.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Server is the running nats-server, for monitoring calls (Jsz, Varz).
func (s *Server) Server() *server.Server { return s.srv }

// Shutdown stops the server and waits for it. Safe to call twice.
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port and store,
// as a crash-and-restart of a NATS node. Clients reconnect by themselves.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Package natstest runs real nats-server instances with JetStream inside
// tests: one node, or a three-node cluster on loopback with helpers to find,
// kill and restart a stream leader. Every server gets its own t.TempDir()
// store and a random loopback port, and is shut down when the test ends.
//
// It is test support: production code (cmd/, pkg/, the components in
// internal/) must never import it; tests and test tooling (test/) may.
package natstest

// Package lifecycle runs Tributary's components: their states, leases,
// goroutines and start/stop sequence.
//
// It owns:
//   - the state machine (Stopped, Starting, Running, Degraded, Stopping,
//     Error) and its transition table;
//   - the Store: one key per component in the lifecycle bucket, every
//     transition a compare-and-swap on the key's revision, every revision a
//     stored lifecycle event (Store.History reads them; `nats kv watch`
//     follows them);
//   - the Lease: at most one active instance per component across
//     processes, renewed well inside its TTL, whose loss cancels the work at
//     once and whose revision is a fencing token;
//   - the Supervisor: every long-running worker of a component is started
//     through it, panics and errors are reported and restarted with capped
//     backoff, a run of failures ends the process (goroutines inside the
//     handles a worker uses, such as bus consumers, belong to those handles,
//     whose Drain or Close waits for them);
//   - the Starter: all-or-nothing start steps with undo in reverse order;
//   - the Component, which ties these together.
//
// It must never talk to NATS except through package bus, never decide
// component-specific behaviour (what a source or query does), and never
// start a goroutine it does not wait for.
package lifecycle

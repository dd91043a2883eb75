// Package obs serves a process's operational HTTP endpoints: /metrics
// (Prometheus, from the registry it is given), /healthz (the process is
// alive) and /readyz (the process's components are ready).
//
// It owns the listener and the HTTP server goroutine, and waits for it on
// Shutdown. It must never use the global Prometheus registry, never expose
// anything but these endpoints, and never decide readiness itself: the
// caller's ready function does.
package obs

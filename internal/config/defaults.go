package config

import (
	"strings"
	"time"
)

// Every default lives in this file; the field comments repeat them.

// ApplyDefaults fills every unset (zero) field that has a default. Parse and
// Load call it before Validate; code that builds a Config by hand calls it
// too. It is idempotent and never overwrites a set value.
func (c *Config) ApplyDefaults() {
	c.NATS.applyDefaults()
	for i := range c.Sources {
		if s := c.Sources[i].Spec; s != nil {
			s.applyDefaults(c.Sources[i].ID)
		}
	}
	for i := range c.Queries {
		if c.Queries[i].QueryLanguage == "" {
			c.Queries[i].QueryLanguage = LanguageCypher
		}
	}
	for i := range c.Reactions {
		setString(&c.Reactions[i].OnGap, OnGapStop)
		if r := c.Reactions[i].Spec; r != nil {
			r.applyDefaults()
		}
	}
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDuration(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}

func (n *NATSConfig) applyDefaults() {
	setString(&n.URL, EmbeddedURL)
	setString(&n.StoreDir, "./data/nats")
	setString(&n.Sync, SyncAlways)
	if n.Sync == SyncInterval {
		setDuration(&n.SyncInterval, 2*time.Minute)
	}
	setString(&n.SubjectPrefix, "tributary")
	setInt(&n.Replicas, 1)
	setDuration(&n.LeaseTTL, 10*time.Second)
	setDuration(&n.ConnectTimeout, 10*time.Second)
	setDuration(&n.ReconnectWait, 250*time.Millisecond)
	setDuration(&n.MaxReconnectWait, 10*time.Second)
}

// DefaultObjectName returns "tributary_<id>" with "-" replaced by "_" and
// lower-cased: the default publication and slot name of a postgres source.
// (Lower-cased because slot names must be lower case.)
func DefaultObjectName(id string) string {
	return "tributary_" + strings.ToLower(strings.ReplaceAll(id, "-", "_"))
}

func (p *PostgresSource) applyDefaults(id string) {
	if p.ConnectionString == "" {
		setString(&p.Host, "127.0.0.1")
		setInt(&p.Port, 5432)
		setString(&p.SSLMode, "prefer")
	}
	setString(&p.PublicationName, DefaultObjectName(id))
	setString(&p.SlotName, DefaultObjectName(id))
	setString(&p.Snapshot, SnapshotInitial)
	setDuration(&p.HeartbeatInterval, 30*time.Second)
	setDuration(&p.StatusInterval, 10*time.Second)
	// MaxInFlight and Batch.MaxMessages stay 0 unless set: the source
	// derives them from the bus's batch limit (nats.maxBatch) at start.
	setDuration(&p.Batch.MaxDelay, 10*time.Millisecond)
	setDuration(&p.Timeouts.Connect, 10*time.Second)
	setDuration(&p.Timeouts.Query, 30*time.Second)
	setDuration(&p.Timeouts.Snapshot, 30*time.Minute)
	setDuration(&p.Timeouts.SnapshotStep, 5*time.Minute)
	setDuration(&p.Timeouts.Stop, 30*time.Second)
	setDuration(&p.Timeouts.Idle, max(12*p.StatusInterval.D(), 60*time.Second))
	setDuration(&p.Backoff.Initial, 500*time.Millisecond)
	setDuration(&p.Backoff.Max, 30*time.Second)
	// Backoff.MaxElapsed: 0 = retry forever.
}

func (r *RetryConfig) applyDefaults() {
	setDuration(&r.Initial, 200*time.Millisecond)
	setDuration(&r.Max, 30*time.Second)
	setInt(&r.MaxDeliver, 20)
}

func (l *LogReaction) applyDefaults() {
	setString(&l.Format, "json")
	if l.File != "" {
		setString(&l.Sync, LogSyncAlways)
	}
}

func (h *HTTPReaction) applyDefaults() {
	setDuration(&h.Timeout, 10*time.Second)
	for _, route := range h.Routes {
		for _, call := range []*HTTPCall{route.Added, route.Updated, route.Deleted} {
			if call != nil {
				setString(&call.Method, "POST")
			}
		}
	}
	h.Retry.applyDefaults()
}

func (p *PostgresReaction) applyDefaults() {
	setString(&p.OffsetTable, DefaultOffsetTable)
	setDuration(&p.Timeout, 30*time.Second)
	p.Retry.applyDefaults()
}

func (n *NATSReaction) applyDefaults() {
	setString(&n.Mode, NATSModeJetStream)
	setDuration(&n.Timeout, 10*time.Second)
}

func (s *SSEReaction) applyDefaults() { setString(&s.Path, "/events") }

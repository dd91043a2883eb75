package pgsource

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published       *prometheus.CounterVec
	skipped         prometheus.Counter
	publishSeconds  prometheus.Histogram
	confirmedLSN    prometheus.Gauge
	lagBytes        prometheus.Gauge
	heartbeatAge    prometheus.Gauge
	heartbeatErrors prometheus.Counter
	reconnects      prometheus.Counter
	snapshotRows    *prometheus.CounterVec
	state           *prometheus.GaugeVec
	uncaptured      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, source string) (*metrics, error) {
	cl := prometheus.Labels{"source": source}
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_pgsource_changes_published_total", ConstLabels: cl,
			Help: "Row changes stored in the changes stream (acknowledged by JetStream), by table label and op.",
		}, []string{"table", "op"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_pgsource_changes_skipped_total", ConstLabels: cl,
			Help: "Replayed row changes not published again because the stream already held them.",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tributary_pgsource_publish_duration_seconds", ConstLabels: cl,
			Help:    "Time from handing an atomic batch to the publisher to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		confirmedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_pgsource_confirmed_lsn_bytes", ConstLabels: cl,
			Help: "WAL position last confirmed to Postgres (every change up to it is durable in JetStream).",
		}),
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_pgsource_replication_lag_bytes", ConstLabels: cl,
			Help: "Server WAL end minus the confirmed position: WAL the slot still holds for this source.",
		}),
		heartbeatAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_pgsource_heartbeat_age_seconds", ConstLabels: cl,
			Help: "Seconds since a heartbeat message last came back through the replication stream.",
		}),
		heartbeatErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_pgsource_heartbeat_errors_total", ConstLabels: cl,
			Help: "Heartbeat statements that failed.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_pgsource_reconnects_total", ConstLabels: cl,
			Help: "Sessions that ended with an error and were retried after a backoff.",
		}),
		snapshotRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_pgsource_snapshot_rows_total", ConstLabels: cl,
			Help: "Rows read by initial snapshots, by table label.",
		}, []string{"table"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_pgsource_state", ConstLabels: cl,
			Help: "1 for the source's current state, 0 for the others.",
		}, []string{"state"}),
		uncaptured: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_pgsource_uncaptured_tables", ConstLabels: cl,
			Help: "Watched tables whose changes are not captured although the source streams (dropped, created again, or removed from the publication); checked with every heartbeat.",
		}),
	}
	var err error
	m.published, err = registerOrReuse(reg, m.published)
	if err != nil {
		return nil, err
	}
	m.skipped, err = registerOrReuse(reg, m.skipped)
	if err != nil {
		return nil, err
	}
	m.publishSeconds, err = registerOrReuse(reg, m.publishSeconds)
	if err != nil {
		return nil, err
	}
	m.confirmedLSN, err = registerOrReuse(reg, m.confirmedLSN)
	if err != nil {
		return nil, err
	}
	m.lagBytes, err = registerOrReuse(reg, m.lagBytes)
	if err != nil {
		return nil, err
	}
	m.heartbeatAge, err = registerOrReuse(reg, m.heartbeatAge)
	if err != nil {
		return nil, err
	}
	m.heartbeatErrors, err = registerOrReuse(reg, m.heartbeatErrors)
	if err != nil {
		return nil, err
	}
	m.reconnects, err = registerOrReuse(reg, m.reconnects)
	if err != nil {
		return nil, err
	}
	m.snapshotRows, err = registerOrReuse(reg, m.snapshotRows)
	if err != nil {
		return nil, err
	}
	m.state, err = registerOrReuse(reg, m.state)
	if err != nil {
		return nil, err
	}
	m.uncaptured, err = registerOrReuse(reg, m.uncaptured)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// registerOrReuse registers c, or returns the collector already registered
// under the same description (a source re-created in the same process with
// the same registry keeps counting in the same series).
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

var allStates = []State{StateStarting, StateSnapshotting, StateStreaming, StateDegraded, StateStopping, StateStopped, StateFailed}

func (m *metrics) setState(s State) {
	for _, st := range allStates {
		v := 0.0
		if st == s {
			v = 1
		}
		m.state.WithLabelValues(string(st)).Set(v)
	}
}

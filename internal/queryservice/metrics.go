package queryservice

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary/tributary/internal/obs"
)

// metrics are one query's series of the service's families.
type metrics struct {
	applied   prometheus.Counter
	published prometheus.Counter
	skipped   prometheus.Counter
	invalid   prometheus.Counter
	warnings  prometheus.Counter
	replayed  prometheus.Counter
	applySec  prometheus.Observer
	elements  prometheus.Gauge
	inputSeq  prometheus.Gauge
	// bootstrapLeft is how many stream sequences the running bootstrap
	// still has to replay (0 when none runs).
	bootstrapLeft prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, query string) (*metrics, error) {
	counter := func(name, help string) (*prometheus.CounterVec, error) {
		return obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"query"}))
	}
	gauge := func(name, help string) (*prometheus.GaugeVec, error) {
		return obs.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"query"}))
	}
	applied, err := counter("tributary_query_changes_applied_total", "Changes applied to the query live (not counting replays).")
	if err != nil {
		return nil, err
	}
	published, err := counter("tributary_query_results_published_total", "Result messages the query published and JetStream acknowledged.")
	if err != nil {
		return nil, err
	}
	skipped, err := counter("tributary_query_changes_skipped_total", "Live deliveries acknowledged without work: the state already covered them (a restart's replay, a redelivery).")
	if err != nil {
		return nil, err
	}
	invalid, err := counter("tributary_query_changes_invalid_total", "Changes that failed validation and went to the dead-letter stream.")
	if err != nil {
		return nil, err
	}
	warnings, err := counter("tributary_query_warnings_total", "Evaluation warnings (an expression that failed counts as null).")
	if err != nil {
		return nil, err
	}
	replayed, err := counter("tributary_query_changes_replayed_total", "Changes replayed from history to rebuild the query's state.")
	if err != nil {
		return nil, err
	}
	applySec, err := obs.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tributary_query_apply_seconds",
		Help:    "Time to apply one live change to the query and compute its diff.",
		Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10),
	}, []string{"query"}))
	if err != nil {
		return nil, err
	}
	elements, err := gauge("tributary_query_elements", "Elements (tombstones included) the query's index holds.")
	if err != nil {
		return nil, err
	}
	inputSeq, err := gauge("tributary_query_input_sequence", "Changes-stream sequence the query's state covers.")
	if err != nil {
		return nil, err
	}
	left, err := gauge("tributary_query_bootstrap_remaining_sequences", "Changes-stream sequences the query's bootstrap still has to replay (0 when it consumes live).")
	if err != nil {
		return nil, err
	}
	return &metrics{
		bootstrapLeft: left.WithLabelValues(query),
		applied:       applied.WithLabelValues(query), published: published.WithLabelValues(query),
		skipped: skipped.WithLabelValues(query), invalid: invalid.WithLabelValues(query),
		warnings: warnings.WithLabelValues(query), replayed: replayed.WithLabelValues(query),
		applySec: applySec.WithLabelValues(query), elements: elements.WithLabelValues(query),
		inputSeq: inputSeq.WithLabelValues(query),
	}, nil
}

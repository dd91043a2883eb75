package bus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerShared registers c, or returns the collector already registered
// with the same description, so that several publishers or consumers in one
// process share one labelled family.
func registerShared[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		var zero T
		return zero, fmt.Errorf("registering bus metrics: %w", err)
	}
	return c, nil
}

type pubMetrics struct {
	published prometheus.Counter
	retries   prometheus.Counter
	latency   prometheus.Observer
	batchLat  prometheus.Observer
	inFlight  prometheus.Gauge
	batches   prometheus.Counter
	// streamFull is 1 while a full stream refuses the publisher's messages.
	streamFull prometheus.Gauge
}

func newPubMetrics(reg prometheus.Registerer, name string) (*pubMetrics, error) {
	published, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_published_messages_total",
		Help: "Messages the stream acknowledged (duplicates of stored messages included once).",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	retries, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_publish_retries_total",
		Help: "Re-sends after a timeout, disconnect or transient server error.",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	latency, err := registerShared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tributary_bus_publish_latency_seconds",
		Help:    "Time from sending a message (or batch) to its acknowledgement.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"publisher", "kind"}))
	if err != nil {
		return nil, err
	}
	inFlight, err := registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tributary_bus_publish_in_flight",
		Help: "Messages handed to Publish and not yet acknowledged.",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	batches, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_published_batches_total",
		Help: "Atomic batches the stream acknowledged.",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	streamFull, err := registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tributary_bus_publish_stream_full",
		Help: "1 while a full stream (or exhausted JetStream storage) refuses the publisher's messages; it re-sends until space is freed.",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	return &pubMetrics{
		published:  published.WithLabelValues(name),
		retries:    retries.WithLabelValues(name),
		latency:    latency.WithLabelValues(name, "message"),
		batchLat:   latency.WithLabelValues(name, "batch"),
		inFlight:   inFlight.WithLabelValues(name),
		batches:    batches.WithLabelValues(name),
		streamFull: streamFull.WithLabelValues(name),
	}, nil
}

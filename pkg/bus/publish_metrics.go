package bus

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/obs"
)

// registerShared is the package's old name for obs.Register, kept while
// the consumer metrics still call it.
func registerShared[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	return obs.Register(reg, c)
}

type pubMetrics struct {
	published prometheus.Counter
	retries   prometheus.Counter
	latency   prometheus.Observer
	batchLat  prometheus.Observer
	batches   prometheus.Counter
	// streamFull is 1 while a full stream refuses the publisher's messages.
	streamFull prometheus.Gauge
}

func newPubMetrics(reg prometheus.Registerer, name string) (*pubMetrics, error) {
	published, err := obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_published_messages_total",
		Help: "Messages the stream acknowledged (duplicates of stored messages included once).",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	retries, err := obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_publish_retries_total",
		Help: "Re-sends after a timeout, disconnect or transient server error.",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	latency, err := obs.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tributary_bus_publish_latency_seconds",
		Help:    "Time from sending a message (or batch) to its acknowledgement.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"publisher", "kind"}))
	if err != nil {
		return nil, err
	}
	batches, err := obs.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_published_batches_total",
		Help: "Atomic batches the stream acknowledged.",
	}, []string{"publisher"}))
	if err != nil {
		return nil, err
	}
	streamFull, err := obs.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
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
		batches:    batches.WithLabelValues(name),
		streamFull: streamFull.WithLabelValues(name),
	}, nil
}

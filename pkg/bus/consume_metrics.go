package bus

import "github.com/prometheus/client_golang/prometheus"

// Handler outcomes, the values of the "outcome" metric label.
const (
	outcomeAck        = "ack"
	outcomeRetry      = "retry"
	outcomeDeadLetter = "dead_letter"
	outcomePanic      = "panic"
)

type consMetrics struct {
	handled      *prometheus.CounterVec // by outcome, curried with the consumer
	duration     prometheus.Observer
	redeliveries prometheus.Counter
	inFlight     prometheus.Gauge
}

func newConsMetrics(reg prometheus.Registerer, name string) (*consMetrics, error) {
	handled, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_handled_messages_total",
		Help: "Messages a consumer's handler finished, by outcome (ack, retry, dead_letter, panic).",
	}, []string{"consumer", "outcome"}))
	if err != nil {
		return nil, err
	}
	duration, err := registerShared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tributary_bus_handler_duration_seconds",
		Help:    "Time a consumer's handler took per message.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 11),
	}, []string{"consumer"}))
	if err != nil {
		return nil, err
	}
	redeliveries, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_bus_redeliveries_total",
		Help: "Messages delivered to a consumer more than once.",
	}, []string{"consumer"}))
	if err != nil {
		return nil, err
	}
	inFlight, err := registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tributary_bus_handler_in_flight",
		Help: "Messages a consumer's handlers are working on.",
	}, []string{"consumer"}))
	if err != nil {
		return nil, err
	}
	h, err := handled.CurryWith(prometheus.Labels{"consumer": name})
	if err != nil {
		return nil, err
	}
	for _, o := range []string{outcomeAck, outcomeRetry, outcomeDeadLetter, outcomePanic} {
		h.WithLabelValues(o) // export zeros, so rates work from the start
	}
	return &consMetrics{
		handled:      h,
		duration:     duration.WithLabelValues(name),
		redeliveries: redeliveries.WithLabelValues(name),
		inFlight:     inFlight.WithLabelValues(name),
	}, nil
}

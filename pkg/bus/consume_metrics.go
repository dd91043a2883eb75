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
	handled            *prometheus.CounterVec // by outcome, curried with the consumer
	duration           prometheus.Observer
	redeliveries       prometheus.Counter
	inFlight           prometheus.Gauge
	deadLetterFailures prometheus.Counter
	recreated          prometheus.Counter
	skipped            prometheus.Counter
	pending            prometheus.Gauge
	ackPending         prometheus.Gauge
	oldestAge          prometheus.Gauge
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
		Help:    "Time a consumer's handler took per call: one message, or one batch of a batch handler.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 11),
	}, []string{"consumer"}))
	if err != nil {
		return nil, err
	}
	counter := func(cname, help string) (prometheus.Counter, error) {
		v, err := registerShared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: cname, Help: help}, []string{"consumer"}))
		if err != nil {
			return nil, err
		}
		return v.WithLabelValues(name), nil
	}
	gauge := func(gname, help string) (prometheus.Gauge, error) {
		v, err := registerShared(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: gname, Help: help}, []string{"consumer"}))
		if err != nil {
			return nil, err
		}
		return v.WithLabelValues(name), nil
	}
	m := &consMetrics{duration: duration.WithLabelValues(name)}
	if m.handled, err = handled.CurryWith(prometheus.Labels{"consumer": name}); err != nil {
		return nil, err
	}
	for _, o := range []string{outcomeAck, outcomeRetry, outcomeDeadLetter, outcomePanic} {
		m.handled.WithLabelValues(o) // export zeros, so rates work from the start
	}
	for _, c := range []struct {
		dst        *prometheus.Counter
		name, help string
	}{
		{&m.redeliveries, "tributary_bus_redeliveries_total", "Messages delivered to a consumer more than once."},
		{&m.deadLetterFailures, "tributary_bus_dead_letter_failures_total", "Dead letters a consumer could not store; the original message was kept for a later attempt."},
		{&m.recreated, "tributary_bus_consumer_recreations_total", "Durable consumers found deleted on the server and recreated."},
		{&m.skipped, "tributary_bus_settled_redeliveries_total", "Redeliveries of messages the consumer had already settled, acknowledged without calling the handler."},
	} {
		if *c.dst, err = counter(c.name, c.help); err != nil {
			return nil, err
		}
	}
	for _, g := range []struct {
		dst        *prometheus.Gauge
		name, help string
	}{
		{&m.inFlight, "tributary_bus_handler_in_flight", "Messages a consumer's handlers are working on."},
		{&m.pending, "tributary_bus_consumer_pending_messages", "Messages matching a consumer that were not delivered yet (from the server, refreshed every LagInterval)."},
		{&m.ackPending, "tributary_bus_consumer_ack_pending_messages", "Messages delivered to a consumer and not yet acknowledged (from the server, refreshed every LagInterval)."},
		{&m.oldestAge, "tributary_bus_consumer_oldest_unacked_age_seconds", "Age (since the stream stored it) of the oldest message delivered to a consumer and not yet acknowledged; 0 when there is none."},
	} {
		if *g.dst, err = gauge(g.name, g.help); err != nil {
			return nil, err
		}
	}
	return m, nil
}

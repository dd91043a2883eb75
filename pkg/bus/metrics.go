package bus

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tributary/tributary/internal/obs"
)

type connMetrics struct {
	connected   prometheus.Gauge
	disconnects prometheus.Counter
	reconnects  prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	var m connMetrics
	var err error
	// Several connections in one process share a registry: they share the
	// series too (obs.Register returns the collector registered first).
	if m.connected, err = obs.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tributary_bus_connected",
		Help: "1 while the client is connected to NATS, 0 otherwise.",
	})); err != nil {
		return nil, err
	}
	if m.disconnects, err = obs.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tributary_bus_disconnects_total",
		Help: "Connections to NATS lost.",
	})); err != nil {
		return nil, err
	}
	if m.reconnects, err = obs.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tributary_bus_reconnects_total",
		Help: "Connections to NATS re-established after a loss.",
	})); err != nil {
		return nil, err
	}
	return &m, nil
}

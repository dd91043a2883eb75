package bus

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type connMetrics struct {
	connected   prometheus.Gauge
	disconnects prometheus.Counter
	reconnects  prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_bus_connected",
			Help: "1 while the client is connected to NATS, 0 otherwise.",
		}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_bus_disconnects_total",
			Help: "Connections to NATS lost.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_bus_reconnects_total",
			Help: "Connections to NATS re-established after a loss.",
		}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.disconnects, m.reconnects} {
		if err := register(reg, c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers c, or reuses the collector already registered under
// the same description (several connections or publishers in one process
// share a registry).
func register(reg prometheus.Registerer, c prometheus.Collector) error {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil
		}
		return err
	}
	return nil
}

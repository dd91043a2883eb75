package bus

import "github.com/nats-io/nats.go"

// NATS returns the underlying client connection, for components that
// publish to subjects outside the topology (the nats reaction). It must not
// be closed or drained by them: Close does that.
func (c *Conn) NATS() *nats.Conn { return c.nc }

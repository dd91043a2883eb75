package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pollLag refreshes the lag metrics every LagInterval until Stop: pending
// and ack-pending counts from the server's consumer info, the age of the
// oldest unacknowledged message from the client's tracker. It also keeps
// the tracker's copy of the server's ack floor current and notices a
// deleted durable consumer.
func (k *Consumer) pollLag() {
	defer k.bg.Done()
	t := time.NewTicker(k.opts.LagInterval)
	defer t.Stop()
	for {
		k.updateLag()
		select {
		case <-t.C:
		case <-k.stopCh:
			return
		}
	}
}

func (k *Consumer) updateLag() {
	if oldest := k.track.oldestOpen(); oldest.IsZero() {
		k.m.oldestAge.Set(0)
	} else {
		k.m.oldestAge.Set(max(0, time.Since(oldest).Seconds()))
	}
	ctx, cancel := context.WithTimeout(k.stopCtx, max(k.opts.LagInterval, time.Second))
	defer cancel()
	info, err := k.consumer().Info(ctx)
	switch {
	case err == nil:
		k.m.pending.Set(float64(info.NumPending))
		k.m.ackPending.Set(float64(info.NumAckPending))
		k.track.setServerFloor(info.AckFloor.Stream)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		k.markLost()
	case k.stopCtx.Err() == nil:
		k.log.Debug("reading consumer info for the lag metrics failed", "err", err)
	}
}

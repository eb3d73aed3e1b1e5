package takeover

import (
	"context"
	"time"
)

// backoff is a doubling wait bounded by ctx, used between retries of etcd operations.
type backoff struct {
	cur, max time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{cur: min, max: max} }

// next returns the current interval and doubles it for the time after.
func (b *backoff) next() time.Duration {
	d := b.cur
	if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return d
}

// sleep waits for the current interval and doubles it; false when ctx ended first.
func (b *backoff) sleep(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

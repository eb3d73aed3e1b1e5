package fence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// DefaultWatchInterval is how often the watchdog reads its own key.
const DefaultWatchInterval = time.Second

// Watchdog reads the node's own key every Interval and reports, at once,
// when the key is gone (another node fenced us) or the device answers
// RESERVATION CONFLICT. It is the SCSI half of self-demotion: it does not
// depend on etcd being reachable.
//
// Each check is READ KEYS (is the key registered at all?) and then, unless
// NoWriteProbe, a zero-length WRITE(16) on every path (is THIS I_T nexus
// registered?). READ KEYS alone can be fooled: a target keeps the
// registration of a dead session, so after a reconnect the key is still
// listed while the new nexus is not registered and every write fails (tgtd
// does exactly this). A zero-length write transfers nothing, and the
// target checks the reservation before anything else, so it answers
// RESERVATION CONFLICT exactly when a real write would. A target that
// rejects zero-length writes (ILLEGAL REQUEST) turns the probe off.
type Watchdog struct {
	Device   *Device
	Key      Key
	Interval time.Duration // default DefaultWatchInterval
	// MaxFailures is how many consecutive failed reads (transport errors,
	// unexpected SCSI errors) are reported as an error: the node can no
	// longer tell whether it was fenced. Default 3.
	MaxFailures int
	// NoWriteProbe skips the zero-length WRITE(16) probe.
	NoWriteProbe bool
	Log          *zap.Logger

	probeOff bool // owned by the Run goroutine
}

// Watch is shorthand for (&Watchdog{Device: dev, Key: key, Interval: interval}).Run(ctx).
func Watch(ctx context.Context, dev *Device, key Key, interval time.Duration) <-chan error {
	return (&Watchdog{Device: dev, Key: key, Interval: interval}).Run(ctx)
}

// Run starts the watchdog goroutine and returns its channel. The channel
// receives at most one error -- ErrKeyGone (wrapped), an error matching
// scsi.ErrReservationConflict, or the last of MaxFailures consecutive read
// errors -- and is closed when the goroutine exits: after reporting, or
// when ctx is done (then without a value). The caller owns the goroutine
// through ctx and waits for it by draining the channel. Call Run once per
// Watchdog value.
func (w *Watchdog) Run(ctx context.Context) <-chan error {
	ch := make(chan error, 1)
	go func() {
		defer close(ch)
		if err := w.loop(ctx); err != nil {
			ch <- err
		}
	}()
	return ch
}

func (w *Watchdog) loop(ctx context.Context) error {
	interval, maxFail := w.Interval, w.MaxFailures
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if maxFail <= 0 {
		maxFail = 3
	}
	log := w.logger()
	t := time.NewTicker(interval)
	defer t.Stop()
	failures := 0
	for {
		err := w.check(ctx, interval)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			failures = 0
		case errors.Is(err, ErrKeyGone), errors.Is(err, scsi.ErrReservationConflict):
			log.Warn("watchdog: fenced", zap.Stringer("key", w.Key), zap.Error(err))
			return err
		default:
			failures++
			log.Warn("watchdog: cannot read keys", zap.Int("failures", failures), zap.Error(err))
			if failures >= maxFail {
				return fmt.Errorf("fence: watchdog on device %s: %d consecutive failed reads: %w", w.Device.Name, failures, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check reads the keys once, bounded by one interval so that a hung path
// cannot stall the watchdog for longer than it promises.
func (w *Watchdog) check(ctx context.Context, interval time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, interval)
	defer cancel()
	r, err := w.Device.Keys(cctx)
	if err != nil {
		return err
	}
	if !r.Has(w.Key) {
		return fmt.Errorf("fence: watchdog on device %s: key %v (generation %d): %w", w.Device.Name, w.Key, r.Generation, ErrKeyGone)
	}
	if w.NoWriteProbe || w.probeOff {
		return nil
	}
	for i := range w.Device.Paths {
		_, err := w.Device.do(cctx, i, "write probe", w.Key, scsi.Write16(0, 0, false, nil))
		if errors.Is(err, scsi.ErrIllegalRequest) {
			w.probeOff = true
			w.logger().Warn("watchdog: device rejects zero-length WRITE(16); relying on READ KEYS only", zap.Error(err))
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (w *Watchdog) logger() *zap.Logger {
	if w.Log == nil {
		return zap.NewNop()
	}
	return w.Log
}

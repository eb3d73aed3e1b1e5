package fence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// Fence cuts victim off the device: PREEMPT AND ABORT victim's key (type 5)
// through one path (PREEMPT where the target rejects PREEMPT AND ABORT),
// then proves it worked:
//
//  1. READ KEYS on every path must answer and must not list victim. A path
//     that cannot be read makes the fence unverified: that path could lead
//     to an array that did not get the preempt.
//  2. A reservation must exist (without one, an unregistered initiator may
//     write): if there is none, Fence reserves type 5 with self.
//
// Fencing a key that is not registered is success once verified (PREEMPT
// answers RESERVATION CONFLICT then; the verification decides). Anything
// short of verification returns an error matching ErrFenceUnverified that
// also carries the preempt's own error: do not touch the storage then.
//
// self must be registered (Unfence at join). Fence never registers self:
// if self was itself fenced, registering again here would undo that fence
// behind the back of whoever made it.
func (d *Device) Fence(ctx context.Context, self, victim Key) error {
	switch {
	case victim == 0 || self == 0:
		return fmt.Errorf("fence: fence %v on device %s: %w: key 0", victim, d.Name, ErrInvalidKey)
	case self == victim:
		return fmt.Errorf("fence: fence %v on device %s: %w", victim, d.Name, ErrSelfFence)
	}
	start := time.Now()
	perr := d.preemptAbort(ctx, self, victim)
	if err := d.verifyFenced(ctx, self, victim); err != nil {
		return fmt.Errorf("fence: fence %v on device %s: %w: %w", victim, d.Name, ErrFenceUnverified, errors.Join(err, perr))
	}
	d.logger().Info("fenced", zap.String("device", d.Name), zap.Stringer("victim", victim),
		zap.Stringer("self", self), zap.Duration("took", time.Since(start)), zap.NamedError("preempt", perr))
	return nil
}

// verifyFenced checks victim is absent on every path and a reservation
// that excludes it exists.
func (d *Device) verifyFenced(ctx context.Context, self, victim Key) error {
	if len(d.Paths) == 0 {
		return ErrNoPaths
	}
	var errs []error
	for i := range d.Paths {
		r, err := d.KeysOnPath(ctx, i)
		switch {
		case err != nil:
			errs = append(errs, err)
		case r.Has(victim):
			errs = append(errs, fmt.Errorf("fence: verify on device %s path %d: key %v still registered", d.Name, i, victim))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return d.ensureReservation(ctx, self, victim)
}

// preemptAbort sends PREEMPT AND ABORT, or PREEMPT on targets that reject
// it with ILLEGAL REQUEST (tgtd 1.0.85 does not implement PREEMPT AND
// ABORT). The fallback removes the victim's registrations all the same; it
// only cannot abort commands the victim already queued in the target. It
// is remembered per Device so later fences skip the rejected attempt.
func (d *Device) preemptAbort(ctx context.Context, self, victim Key) error {
	if !d.noAbort.Load() {
		err := d.Preempt(ctx, self, victim, true)
		if !errors.Is(err, scsi.ErrIllegalRequest) {
			return err
		}
		d.noAbort.Store(true)
		d.logger().Warn("device rejects PREEMPT AND ABORT; using PREEMPT (queued commands of the victim are not aborted)",
			zap.String("device", d.Name), zap.Error(err))
	}
	return d.Preempt(ctx, self, victim, false)
}

package fence

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// ReservationType is the only type understudy creates: Write Exclusive -
// Registrants Only. Every registered node may write (the holder changes
// hands with PREEMPT); a preempted node can still read but its writes fail
// with RESERVATION CONFLICT.
const ReservationType = scsi.TypeWriteExclusiveRegistrantsOnly

func prOut(sa scsi.PROutAction, key, sark Key) scsi.Command {
	return scsi.PersistentReserveOut(sa, scsi.ScopeLU, ReservationType, scsi.PROutParams{Key: uint64(key), SARK: uint64(sark)})
}

// Register registers key on every path with REGISTER AND IGNORE EXISTING
// KEY, which succeeds whatever the nexus had registered before (idempotent).
// All paths are tried; the error joins the failed ones.
func (d *Device) Register(ctx context.Context, key Key) error {
	if key == 0 {
		return fmt.Errorf("fence: register on device %s: %w: key 0", d.Name, ErrInvalidKey)
	}
	return d.each(ctx, "register", key, prOut(scsi.PROutRegisterAndIgnoreExisting, 0, key))
}

// Unregister removes key from every path with REGISTER (RESERVATION KEY =
// key, SERVICE ACTION RESERVATION KEY = 0). A path whose nexus is not
// registered with key answers RESERVATION CONFLICT; that is the desired end
// state and counts as success.
//
// WARNING: if key holds the (type 5) reservation, unregistering releases it
// and, until some registrant reserves again, every initiator -- registered
// or not -- may write. Unfence and Fence reserve again when they find no
// reservation; a node leaving for good should let another registrant
// reserve first.
func (d *Device) Unregister(ctx context.Context, key Key) error {
	if key == 0 {
		return fmt.Errorf("fence: unregister on device %s: %w: key 0", d.Name, ErrInvalidKey)
	}
	if len(d.Paths) == 0 {
		return fmt.Errorf("fence: unregister on device %s: %w", d.Name, ErrNoPaths)
	}
	var errs []error
	for i := range d.Paths {
		_, err := d.do(ctx, i, "unregister", key, prOut(scsi.PROutRegister, key, 0))
		if err != nil && !errors.Is(err, scsi.ErrReservationConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reserve creates the type 5 reservation held by key (which must be
// registered on the path used). Reserving again as holder is a no-op;
// another holder makes it fail with scsi.ErrReservationConflict.
func (d *Device) Reserve(ctx context.Context, key Key) error {
	return d.firstAccepted(ctx, "reserve", key, prOut(scsi.PROutReserve, key, 0))
}

// Release releases the type 5 reservation if key holds it (a registered
// non-holder's RELEASE is a no-op in SPC-4).
//
// WARNING: with no reservation every initiator may write; see Unregister.
func (d *Device) Release(ctx context.Context, key Key) error {
	return d.firstAccepted(ctx, "release", key, prOut(scsi.PROutRelease, key, 0))
}

// Clear removes every registration and the reservation (key must be
// registered).
//
// WARNING: this unfences every node that was fenced and leaves the LU
// writable by anyone until nodes register and reserve again. For repair by
// an operator who has made sure no fenced node is still running.
func (d *Device) Clear(ctx context.Context, key Key) error {
	return d.firstAccepted(ctx, "clear", key, prOut(scsi.PROutClear, key, 0))
}

// Preempt removes victim's registrations (on every nexus, LU-wide) and, if
// victim holds the reservation, moves it to self with type 5. abort=true
// uses PREEMPT AND ABORT, which also aborts the victim's queued commands
// (so a write already in the target's queue cannot land after the fence).
// self must be registered. It is sent through one path: PR state is per LU.
func (d *Device) Preempt(ctx context.Context, self, victim Key, abort bool) error {
	sa, op := scsi.PROutPreempt, "preempt"
	if abort {
		sa, op = scsi.PROutPreemptAndAbort, "preempt and abort"
	}
	return d.firstAccepted(ctx, op, victim, prOut(sa, self, victim))
}

// Unfence joins key to the device: REGISTER AND IGNORE EXISTING KEY on
// every path, then, if no reservation exists, RESERVE type 5. A node is
// unfenced when it joins (before it may hold a role) and may write as soon
// as this returns nil. Any path failing to register fails Unfence (after
// all paths were tried), as does a reservation of another type.
func (d *Device) Unfence(ctx context.Context, key Key) error {
	if err := d.Register(ctx, key); err != nil {
		return err
	}
	return d.ensureReservation(ctx, key, 0)
}

// ensureReservation makes sure a type 5 reservation exists, reserving with
// key when there is none. A reservation held by victim (possible only with
// all-registrants types) or of an unexpected type is an error.
func (d *Device) ensureReservation(ctx context.Context, key, victim Key) error {
	for attempt := 0; attempt < 2; attempt++ {
		r, err := d.Reservation(ctx)
		if err != nil {
			return err
		}
		if r.Held {
			if r.Type != ReservationType {
				return fmt.Errorf("fence: reservation on device %s: %w: %v held by %v, want %v", d.Name, ErrReservationType, r.Type, r.Key, ReservationType)
			}
			if victim != 0 && r.Key == victim {
				return fmt.Errorf("fence: reservation on device %s: still held by %v", d.Name, victim)
			}
			return nil
		}
		err = d.Reserve(ctx, key)
		if err == nil {
			d.logger().Info("reserved", zap.String("device", d.Name), zap.Stringer("key", key))
			return nil
		}
		if !errors.Is(err, scsi.ErrReservationConflict) {
			return err
		}
		// Someone reserved between our read and our RESERVE: read again.
	}
	return fmt.Errorf("fence: reservation on device %s: could not establish one: %w", d.Name, scsi.ErrReservationConflict)
}

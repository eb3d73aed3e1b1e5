package fence

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// Device is one logical unit reached through one or more paths (multipath:
// every path is a different I_T nexus). SCSI registrations belong to an
// I_T nexus, so operations that register apply to every path -- fence_scsi's
// lesson: a key registered on one path only lets I/O on the other paths fail
// after a path switch, and a "fenced" node keeps writing through a path
// nobody preempted on arrays that do not share PR state. Reads of PR state
// use the first path that answers, except where noted.
//
// A Device is safe for concurrent use if its Transports are; its fields
// must not change after first use.
type Device struct {
	// Name names the LU in errors and logs ("/dev/mapper/data",
	// "iscsi://127.0.0.1/iqn.../1").
	Name string
	// Paths are the transports; Paths[i] is "path i" in errors.
	Paths []Transport
	// Retry bounds retries per command and path (zero = DefaultRetryPolicy).
	Retry RetryPolicy
	// Log receives retries and PR changes; nil = no logging.
	Log *zap.Logger

	noAbort atomic.Bool // the target rejected PREEMPT AND ABORT once
}

func (d *Device) logger() *zap.Logger {
	if d.Log == nil {
		return zap.NewNop()
	}
	return d.Log
}

// opError wraps err as "fence: <op>[ key K] on device NAME path I: err".
func (d *Device) opError(op string, key Key, path int, err error) error {
	k := ""
	if key != 0 {
		k = " key " + key.String()
	}
	return fmt.Errorf("fence: %s%s on device %s path %d: %w", op, k, d.Name, path, err)
}

// do runs cmd on path i under the retry policy.
func (d *Device) do(ctx context.Context, i int, op string, key Key, cmd scsi.Command) (scsi.Response, error) {
	resp, err := execute(ctx, d.Paths[i], cmd, d.Retry, d.logger().With(zap.String("device", d.Name), zap.Int("path", i), zap.String("op", op)))
	if err != nil {
		return resp, d.opError(op, key, i, err)
	}
	return resp, nil
}

// first runs cmd on the first path whose transport works: a SCSI answer
// (GOOD or not) ends the search, a transport failure tries the next path.
func (d *Device) first(ctx context.Context, op string, key Key, cmd scsi.Command) (scsi.Response, int, error) {
	if len(d.Paths) == 0 {
		return scsi.Response{}, -1, fmt.Errorf("fence: %s on device %s: %w", op, d.Name, ErrNoPaths)
	}
	var errs []error
	for i := range d.Paths {
		resp, err := d.do(ctx, i, op, key, cmd)
		if err == nil {
			if len(errs) > 0 {
				d.logger().Warn("path failed, used next path", zap.String("device", d.Name), zap.Int("path", i), zap.Error(errors.Join(errs...)))
			}
			return resp, i, nil
		}
		var te *transportError
		if !errors.As(err, &te) || ctx.Err() != nil {
			return resp, i, err // a SCSI answer (or we are out of time): no other path
		}
		errs = append(errs, err)
	}
	return scsi.Response{}, -1, errors.Join(errs...)
}

// firstAccepted runs a PR OUT cmd through one path: like first, but a
// RESERVATION CONFLICT also moves on to the next path, because
// registrations belong to I_T nexuses and this path's nexus may have lost
// its registration (e.g. a reconnect) while another path's has not. The
// error joins every path's answer when none accepted the command.
func (d *Device) firstAccepted(ctx context.Context, op string, key Key, cmd scsi.Command) error {
	if len(d.Paths) == 0 {
		return fmt.Errorf("fence: %s on device %s: %w", op, d.Name, ErrNoPaths)
	}
	var errs []error
	for i := range d.Paths {
		_, err := d.do(ctx, i, op, key, cmd)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		var te *transportError
		if ctx.Err() != nil || !(errors.As(err, &te) || errors.Is(err, scsi.ErrReservationConflict)) {
			break
		}
	}
	return errors.Join(errs...)
}

// each runs cmd on every path (all are tried) and joins the failures.
func (d *Device) each(ctx context.Context, op string, key Key, cmd scsi.Command) error {
	if len(d.Paths) == 0 {
		return fmt.Errorf("fence: %s on device %s: %w", op, d.Name, ErrNoPaths)
	}
	var errs []error
	for i := range d.Paths {
		if _, err := d.do(ctx, i, op, key, cmd); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Registrations is READ KEYS: one key per registered I_T nexus.
type Registrations struct {
	Generation uint32
	Keys       []Key
}

// Has reports whether k is registered through at least one I_T nexus.
func (r Registrations) Has(k Key) bool {
	for _, x := range r.Keys {
		if x == k {
			return true
		}
	}
	return false
}

// Keys reads the registered keys (READ KEYS) through the first working path.
func (d *Device) Keys(ctx context.Context) (Registrations, error) {
	return d.readKeys(ctx, -1)
}

// KeysOnPath reads the registered keys through path i only.
func (d *Device) KeysOnPath(ctx context.Context, i int) (Registrations, error) {
	if i < 0 || i >= len(d.Paths) {
		return Registrations{}, fmt.Errorf("fence: read keys on device %s: path %d out of range [0,%d)", d.Name, i, len(d.Paths))
	}
	return d.readKeys(ctx, i)
}

// readKeys reads on path (or the first working path when path < 0),
// growing the allocation length when the list did not fit.
func (d *Device) readKeys(ctx context.Context, path int) (Registrations, error) {
	data, err := d.readPRIn(ctx, path, "read keys", scsi.PRInReadKeys, 1024)
	if err != nil {
		return Registrations{}, err
	}
	rk, err := scsi.ParseReadKeys(data)
	if err != nil {
		return Registrations{}, fmt.Errorf("fence: read keys on device %s: %w", d.Name, err)
	}
	r := Registrations{Generation: rk.Generation, Keys: make([]Key, len(rk.Keys))}
	for i, k := range rk.Keys {
		r.Keys[i] = Key(k)
	}
	return r, nil
}

// readPRIn issues PERSISTENT RESERVE IN sa and, when the device reports
// more data than fitted, once more with the announced length.
func (d *Device) readPRIn(ctx context.Context, path int, op string, sa scsi.PRInAction, alloc uint16) ([]byte, error) {
	for range 2 {
		var resp scsi.Response
		var err error
		if path < 0 {
			resp, _, err = d.first(ctx, op, 0, scsi.PersistentReserveIn(sa, alloc))
		} else {
			resp, err = d.do(ctx, path, op, 0, scsi.PersistentReserveIn(sa, alloc))
		}
		if err != nil {
			return nil, err
		}
		need := prInNeed(resp.DataIn)
		if need <= int(alloc) || alloc == 0xffff {
			return resp.DataIn, nil
		}
		alloc = uint16(min(need, 0xffff))
	}
	return nil, fmt.Errorf("fence: %s on device %s: %w", op, d.Name, scsi.ErrTruncated)
}

// prInNeed is the total length a PR IN header (gen + additional length)
// announces; 0 when there is no such header.
func prInNeed(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	return 8 + int(uint32(b[4])<<24|uint32(b[5])<<16|uint32(b[6])<<8|uint32(b[7]))
}

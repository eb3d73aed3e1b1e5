package fence

import "errors"

// Sentinel errors of package fence. Operations wrap them (and the
// fence/scsi sentinels, e.g. scsi.ErrReservationConflict) with the
// operation, key, device and path: callers use errors.Is.
var (
	// ErrFenceUnverified: PREEMPT AND ABORT was sent but READ KEYS could
	// not prove on every path that the victim's key is gone. A fence that
	// is not verified has failed: do not touch the storage.
	ErrFenceUnverified = errors.New("fence: fence not verified")
	// ErrKeyGone: our own key is no longer registered: another node fenced
	// us. The watchdog reports it; the holder must stop writing at once.
	ErrKeyGone = errors.New("fence: own key no longer registered")
	// ErrReservationType: Unfence found a reservation of an unexpected
	// type (someone else manages this LU differently).
	ErrReservationType = errors.New("fence: reservation has an unexpected type")
	// ErrPathMismatch: two paths of a Device lead to different LUs
	// (different VPD 0x83 identity).
	ErrPathMismatch = errors.New("fence: paths of one device lead to different logical units")
	// ErrPathFailed: SG_IO reported a host adapter or driver error (path
	// down, command timed out in the kernel): a transport error, retried.
	ErrPathFailed = errors.New("fence: path failed (host/driver error)")
	// ErrNotSCSI: the path does not take SCSI commands (SG_IO on a file
	// that is not a SCSI device: ENOTTY/EINVAL). Not retried.
	ErrNotSCSI = errors.New("fence: path does not accept SCSI commands")
	// ErrNoPaths: a Device without transports.
	ErrNoPaths = errors.New("fence: device has no paths")
	// ErrSelfFence: Fence was asked to preempt the caller's own key.
	ErrSelfFence = errors.New("fence: refusing to fence own key")
	// ErrInvalidKey: key 0 (means "no key" in SPC-4) or a malformed key.
	ErrInvalidKey = errors.New("fence: invalid key")
	// ErrAgent: a fence agent program failed (exit code, timeout, or its
	// status did not confirm the action).
	ErrAgent = errors.New("fence: fence agent failed")
	// ErrNotSupported: the operation is not available on this platform.
	ErrNotSupported = errors.New("fence: not supported on this platform")
)

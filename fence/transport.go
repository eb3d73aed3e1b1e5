package fence

import (
	"context"
	"errors"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// Transport is one path to one logical unit: an SG_IO file descriptor on
// /dev/sdX or /dev/sgN, or a userspace iSCSI session (fence/iscsi.Session).
//
// Execute sends cmd and returns the device server's answer. The error is
// non-nil only for a transport failure (connection lost, timeout, host or
// driver error, ctx done), when the command may or may not have reached the
// device; every status the device returned, including CHECK CONDITION and
// RESERVATION CONFLICT, comes back as a Response with a nil error (use
// Response.Err).
//
// Implementations must be safe for concurrent use and must not retry on
// their own: retry policy lives in this package (retry.go), and a transport
// that silently re-registers or reconnects-and-retries could undo a fence.
type Transport interface {
	Execute(ctx context.Context, cmd scsi.Command) (scsi.Response, error)
}

// CloseAll closes every transport that has a Close method (SGIO's
// Close() error, iSCSI's Close(ctx) error is not covered: close those
// yourself) and joins the errors.
func CloseAll(ts []Transport) error {
	var errs []error
	for _, t := range ts {
		if c, ok := t.(interface{ Close() error }); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

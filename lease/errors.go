package lease

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Sentinel errors of package lease. Callers test them with errors.Is; every error returned
// by this package wraps one of these, or an etcd client error, with the operation and the
// object it was about.
var (
	// ErrNotHolder: the claim the caller held is gone (expired, released or replaced).
	ErrNotHolder = errors.New("lease: not the holder of the claim")
	// ErrSpecConflict: PutSpec's expected revision no longer matches the stored spec.
	ErrSpecConflict = errors.New("lease: spec changed since it was read")
	// ErrSessionLost: the session's lease expired, was revoked or the session was closed.
	ErrSessionLost = errors.New("lease: session lost")
	// ErrNoSpec: no cluster spec has been applied yet.
	ErrNoSpec = errors.New("lease: no cluster spec applied")
	// ErrLeaseGone: the lease asked about does not exist (expired or revoked).
	ErrLeaseGone = errors.New("lease: lease expired or revoked")
	// ErrInvalidName: a node or role name cannot be used as a key component.
	ErrInvalidName = errors.New("lease: invalid name")
	// ErrInvalidSpec: the cluster spec does not parse or does not validate.
	ErrInvalidSpec = errors.New("lease: invalid cluster spec")
	// ErrInvalidArgument: any other bad input (TTL, command kind, ...).
	ErrInvalidArgument = errors.New("lease: invalid argument")

	// errKeyExists is internal: a create-only put found its key taken.
	errKeyExists = errors.New("lease: key exists")
)

// wrapLeaseErr wraps an etcd error of an operation that attached a lease, so that a
// missing lease reads as ErrSessionLost to callers while keeping the etcd cause.
func wrapLeaseErr(op, obj string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("lease: %s %q: %w: %w", op, obj, ErrSessionLost, err)
	}
	return fmt.Errorf("lease: %s %q: %w", op, obj, err)
}

package takeover

import "errors"

// Sentinel errors of the takeover package: the agent, its resources and its configuration.
// Callers match them with errors.Is; the messages carry the details.
var (
	// ErrNotConnected: the agent has not reached etcd yet (Events before the first session).
	ErrNotConnected = errors.New("takeover: not connected to etcd yet")
	// ErrRemoved: Run returns it when the operator removed this node from the cluster.
	ErrRemoved = errors.New("takeover: node removed from the cluster")
	// ErrExecExited: the executable exited during Start's grace period.
	ErrExecExited = errors.New("takeover: exec exited during start")
	// ErrExecRestartsExhausted: the executable kept dying while the role was held;
	// sent on Exec.Failed so the agent releases the role.
	ErrExecRestartsExhausted = errors.New("takeover: exec restarts exhausted")
	// ErrExecRunning: Start was called on an Exec that is already running.
	ErrExecRunning = errors.New("takeover: exec already running")
	// ErrUnsupported: the operation needs Linux.
	ErrUnsupported = errors.New("takeover: not supported on this operating system")
	// ErrInvalidConfig: the agent configuration failed validation; the joined
	// errors name each field.
	ErrInvalidConfig = errors.New("takeover: invalid agent configuration")

	// The storage resource.
	// ErrStorageNotFound: no device matches storage.device.
	ErrStorageNotFound = errors.New("takeover: storage device not found")
	// ErrStorageAmbiguous: several distinct devices match storage.device (a cloned
	// file system, or paths of one LU without a multipath device on top).
	ErrStorageAmbiguous = errors.New("takeover: storage device ambiguous")
	// ErrStorageFSType: the device's file system signature is not storage.fstype.
	ErrStorageFSType = errors.New("takeover: storage file system type mismatch")
	// ErrStorageFsck: the fsck policy found problems it may not or could not repair.
	ErrStorageFsck = errors.New("takeover: storage fsck failed")
	// ErrStorageMounted: Start found the mountpoint or the device already mounted.
	ErrStorageMounted = errors.New("takeover: storage already mounted")
	// ErrStorageLazyUnmount: the file system was still busy at Stop's deadline and
	// was detached lazily (MNT_DETACH). It stays in use by this node until its last
	// holder exits, so the role must NOT be released as clean: the next holder has
	// to fence this node.
	ErrStorageLazyUnmount = errors.New("takeover: storage unmounted lazily; the file system may still be in use")

	// The health check.
	// ErrHealthCheckFailed: the check did not pass within start_timeout (Start), or
	// failed failure_threshold times in a row while the role was held (Failed).
	ErrHealthCheckFailed = errors.New("takeover: health check failed")
	// ErrHealthRunning: Start was called on a HealthCheck that is already monitoring.
	ErrHealthRunning = errors.New("takeover: health check already running")

	// The vip resource.
	// ErrInvalidVIP: the role's vip spec cannot be used; the joined errors name
	// each field (vip.address, vip.interface, vip.label).
	ErrInvalidVIP = errors.New("takeover: invalid vip spec")
	// ErrVIPInterface: the interface is missing, down, without carrier or without
	// an Ethernet address.
	ErrVIPInterface = errors.New("takeover: vip interface not usable")
	// ErrVIPAnswered: another host already answers for the address. The error is
	// an *AnsweredError carrying the MACs.
	ErrVIPAnswered = errors.New("takeover: vip address answered by another host")
	// ErrVIPInUse: the address is configured on this node but not by understudy
	// (another label or another interface); it is left alone.
	ErrVIPInUse = errors.New("takeover: vip address configured outside understudy")
	// ErrVIPRunning: Start was called on a VIP that is already started.
	ErrVIPRunning = errors.New("takeover: vip already started")
)

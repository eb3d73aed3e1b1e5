package takeover

import "errors"

// Sentinel errors of the takeover package: the agent, its resources and its configuration.
// Callers match them with errors.Is; the messages carry the details.
var (
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
)

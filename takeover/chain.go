package takeover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/lease"
)

// rollbackTimeout bounds the rollback of a failed Start. The rollback runs on its own
// context because the usual reason for a failed Start is a cancelled ctx, and
// stopping with a dead ctx would skip every graceful stop (SIGKILL instead of
// SIGTERM, lazy unmount instead of a clean one).
const rollbackTimeout = 60 * time.Second

// rollbackPrefix names the steps recorded while rolling back a failed Start, so the
// timeline shows what the failure cost: "rollback/storage".
const rollbackPrefix = "rollback/"

// preparer is a resource that can begin a slow, independent check before its turn:
// Prepare begins it (sockets opened in the caller's goroutine) and returns at once;
// Start waits for its result; Abort ends it when Start will not run.
type preparer interface {
	Prepare(ctx context.Context, rc RoleContext)
	Abort()
}

// Chain runs a role's resources in order (fence, storage, exec, vip, health),
// recording one lease.Step per resource, and undoes them in reverse.
//
// A Chain is owned by one goroutine (the role's); its methods are serialised by an
// internal lock, so a Stop issued while Start runs waits until Start returns
// (cancel Start's ctx to make that quick).
type Chain struct {
	mu  sync.Mutex // serialises Start and Stop
	res []Resource
}

// NewChain returns a chain that starts res in the given order and stops them in
// reverse.
func NewChain(res ...Resource) *Chain {
	return &Chain{res: append([]Resource(nil), res...)}
}

// Start starts every resource in order and returns one step per resource attempted,
// each with its duration measured on the monotonic clock.
//
// On failure the failed resource's step carries Err, the resources started before it
// are stopped in reverse order (steps named "rollback/<name>", on a context of their
// own bounded by rollbackTimeout), and the error names the failed resource. Start
// never leaves a resource running when it returns an error.
func (c *Chain) Start(ctx context.Context, rc RoleContext) ([]lease.Step, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Checks that wait a fixed time and need nothing from the resources before them
	// (the VIP's duplicate-address probe) run while those start.
	for _, r := range c.res {
		if p, ok := r.(preparer); ok {
			p.Prepare(ctx, rc)
			defer p.Abort() // a no-op once Start took the result
		}
	}
	steps := make([]lease.Step, 0, len(c.res))
	for i, r := range c.res {
		err := ctx.Err()
		t0 := time.Now()
		if err == nil {
			err = r.Start(ctx, rc)
		}
		step := lease.Step{Name: r.Name(), Duration: time.Since(t0)}
		if err == nil {
			steps = append(steps, step)
			continue
		}
		err = fmt.Errorf("takeover: start %s for role %q: %w", r.Name(), rc.Role, err)
		step.Err = err.Error()
		steps = append(steps, step)
		rbSteps, rbErr := c.rollback(ctx, c.res[:i])
		return append(steps, rbSteps...), errors.Join(err, rbErr)
	}
	return steps, nil
}

// rollback stops started in reverse on a context that survives ctx's cancellation
// (see rollbackTimeout).
func (c *Chain) rollback(ctx context.Context, started []Resource) ([]lease.Step, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	steps, err := stopReverse(rctx, started, rollbackPrefix)
	if err != nil {
		err = fmt.Errorf("takeover: rollback: %w", err)
	}
	return steps, err
}

// Stop stops every resource of the chain in reverse order, continuing past errors,
// and returns one step per resource plus the joined errors. Because Resource.Stop is
// idempotent, Stop is safe after a failed Start, a previous Stop, or without any
// Start (the agent uses that to clean up after a crash).
//
// ctx is handed to each resource: graceful until it is done, then forceful.
func (c *Chain) Stop(ctx context.Context) ([]lease.Step, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return stopReverse(ctx, c.res, "")
}

// stopReverse stops res from last to first, timing each, and joins the errors.
func stopReverse(ctx context.Context, res []Resource, prefix string) ([]lease.Step, error) {
	steps := make([]lease.Step, 0, len(res))
	var errs []error
	for i := len(res) - 1; i >= 0; i-- {
		r := res[i]
		t0 := time.Now()
		err := r.Stop(ctx)
		step := lease.Step{Name: prefix + r.Name(), Duration: time.Since(t0)}
		if err != nil {
			err = fmt.Errorf("takeover: stop %s: %w", r.Name(), err)
			step.Err = err.Error()
			errs = append(errs, err)
		}
		steps = append(steps, step)
	}
	return steps, errors.Join(errs...)
}

// Restart stops the resources from the one named from to the last, in reverse, and starts
// them again in order, leaving the ones before it (storage, say) running. It is the local
// recovery of a role whose health check failed while its claim is still good. On failure
// the resources it restarted are stopped again; the caller then releases the role.
func (c *Chain) Restart(ctx context.Context, rc RoleContext, from string) ([]lease.Step, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.res, func(r Resource) bool { return r.Name() == from })
	if i < 0 {
		return nil, fmt.Errorf("takeover: restart from %q: no such resource in role %q", from, rc.Role)
	}
	steps, err := stopReverse(ctx, c.res[i:], "restart/stop/")
	if err != nil {
		return steps, fmt.Errorf("takeover: restart role %q: %w", rc.Role, err)
	}
	for j, r := range c.res[i:] {
		t0 := time.Now()
		err := r.Start(ctx, rc)
		step := lease.Step{Name: "restart/" + r.Name(), Duration: time.Since(t0)}
		if err != nil {
			err = fmt.Errorf("takeover: restart %s for role %q: %w", r.Name(), rc.Role, err)
			step.Err = err.Error()
			rb, rbErr := c.rollback(ctx, c.res[i:i+j])
			return append(append(steps, step), rb...), errors.Join(err, rbErr)
		}
		steps = append(steps, step)
	}
	return steps, nil
}

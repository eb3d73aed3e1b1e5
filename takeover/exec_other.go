//go:build !linux

package takeover

import (
	"fmt"

	"go.uber.org/zap"
)

// child is the non-Linux stand-in: nothing can be started, so every child is dead.
// The exec resource needs Linux (process groups, Pdeathsig, waitid).
type child struct {
	pid  int
	log  *zap.Logger
	done chan struct{}
	err  error
}

func spawn(l launch, _ *zap.Logger) (*child, error) {
	return nil, fmt.Errorf("exec %q: %w", l.path, ErrUnsupported)
}

func deadChild(log *zap.Logger, err error) *child {
	c := &child{log: log, done: make(chan struct{}), err: err}
	close(c.done)
	return c
}

func (c *child) hasExited() bool               { return true }
func (c *child) signalGroup(name string) error { return nil }
func (c *child) stderrTail() string            { return "" }

func (c *child) status() string {
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

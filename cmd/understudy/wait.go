package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-ha/understudy/lease"
)

// errWaitTimeout marks a wait that ran out of --timeout; callers add what to do next.
var errWaitTimeout = errors.New("timed out")

// waitCond inspects a view: done=true ends the wait; an error ends it with that error.
type waitCond func(v *lease.View) (done bool, err error)

// waitView re-reads the cluster view after every change under the prefix until cond is
// done, for at most timeout. It watches instead of polling: one watch from the first view's
// revision, and a fresh View per batch of events (so bursts collapse).
func waitView(ctx context.Context, st *lease.Store, timeout time.Duration, cond waitCond) (*lease.View, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wch clientv3.WatchChan
	for {
		v, err := st.View(ctx)
		if err != nil {
			return nil, waitErr(ctx, timeout, err)
		}
		done, err := cond(v)
		if done || err != nil {
			return v, err
		}
		if wch == nil {
			wch = st.Watch(ctx, v.Rev+1)
		}
		select {
		case <-ctx.Done():
			return v, waitErr(ctx, timeout, ctx.Err())
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				// The watch failed (e.g. compaction); the next View catches up, then a new
				// watch starts from its revision. ctx bounds the retries.
				wch = nil
			}
		}
	}
}

func waitErr(ctx context.Context, timeout time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w after %s", errWaitTimeout, timeout)
	}
	return err
}

// newCommandID returns an id for a command the CLI waits on: time-ordered like the
// agent's own, and unique enough for one operator's invocations.
func newCommandID() string {
	return fmt.Sprintf("%020d-cli", time.Now().UnixNano())
}

// sendCommand sends cmd to node with an id the caller can wait for.
func sendCommand(ctx context.Context, st *lease.Store, node string, cmd lease.Command) (string, error) {
	cmd.ID = newCommandID()
	cmd.Time = time.Now()
	if err := st.SendCommand(ctx, node, cmd); err != nil {
		return "", fmt.Errorf("send %s command to node %s: %w", cmd.Kind, node, err)
	}
	return cmd.ID, nil
}

// commandPending reports whether the node still has the command (the agent deletes it
// when it is done).
func commandPending(v *lease.View, node, id string) bool {
	for _, c := range v.Commands[node] {
		if c.ID == id {
			return true
		}
	}
	return false
}

// heldBy lists the roles whose claim names node, sorted.
func heldBy(v *lease.View, node string) []string {
	var roles []string
	for role, c := range v.Claims {
		if c.Node == node {
			roles = append(roles, role)
		}
	}
	slices.Sort(roles)
	return roles
}

// knownNode checks that the cluster knows the node (an id or a live record); an unknown
// name is bad input (exit 2), most likely a typo.
func knownNode(v *lease.View, node string) error {
	if _, ok := v.IDs[node]; ok {
		return nil
	}
	if _, ok := v.Nodes[node]; ok {
		return nil
	}
	return usageErrorf("unknown node %q (known: %s)", node, quoteList(nodeList(v)))
}

func nodeList(v *lease.View) []string {
	seen := map[string]bool{}
	var names []string
	for n := range v.IDs {
		seen[n] = true
		names = append(names, n)
	}
	for n := range v.Nodes {
		if !seen[n] {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lease"
)

func (a *app) newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Add, remove, drain, cordon and qualify nodes",
		Example: `  understudy node add node-e
  understudy node qualify node-e --wait
  understudy node drain node-a --wait
  understudy node remove node-a`,
		RunE: groupRunE,
	}
	cmd.AddCommand(a.newNodeAddCmd(), a.newNodeRemoveCmd(), a.newNodeDrainCmd(),
		a.newNodeCordonCmd(true), a.newNodeCordonCmd(false), a.newNodeQualifyCmd())
	return cmd
}

// nodeArg validates the NAME argument before anything touches etcd.
func nodeArg(args []string) (string, error) {
	if err := lease.CheckNodeName(args[0]); err != nil {
		return "", &exitError{code: exitUsage, err: err}
	}
	return args[0], nil
}

// withNode runs f with a store and a view in which node is known.
func (a *app) withNode(ctx context.Context, args []string, f func(st *lease.Store, v *lease.View, node string) error) error {
	node, err := nodeArg(args)
	if err != nil {
		return err
	}
	st, done, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	v, err := st.View(ctx)
	if err != nil {
		return fmt.Errorf("read cluster %q: %w", a.cluster, err)
	}
	if err := knownNode(v, node); err != nil {
		return err
	}
	return f(st, v, node)
}

func (a *app) newNodeAddCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME",
		Short: "Register a node name and allocate its id (its fence key)",
		Long: `add allocates the node's permanent id. The node shows as down until its agent
starts; it then joins on probation, is qualified (storage, executable, floating IP are
tested without disturbing the holders) and becomes a standby.`,
		Example: "  understudy node add node-e",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			node, err := nodeArg(args)
			if err != nil {
				return err
			}
			st, done, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			id, err := st.AllocateID(cmd.Context(), node)
			if err != nil {
				return fmt.Errorf("add node %s: %w", node, err)
			}
			_, _ = fmt.Fprintf(a.stdout, "node %s added with id %d; start `understudy agent` on it: "+
				"it joins on probation and becomes a standby once qualified\n", node, id)
			return nil
		},
	}
}

func (a *app) newNodeRemoveCmd() *cobra.Command {
	var force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a node from the cluster (drain it first)",
		Long: `remove deletes the node's id, cordon, qualification and records. It refuses unless
the node holds no role and is cordoned (drained) or down; --force skips those checks and
makes a live node stop its roles. A live node is told to leave and remove waits for its
agent to exit (at most --timeout).`,
		Example: `  understudy node drain node-a --wait && understudy node remove node-a
  understudy node remove node-a --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withNode(ctx, args, func(st *lease.Store, v *lease.View, node string) error {
				return a.removeNode(ctx, st, v, node, force, timeout)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even if the node holds roles or is not cordoned")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for a live node's agent to leave")
	return cmd
}

func (a *app) removeNode(ctx context.Context, st *lease.Store, v *lease.View, node string, force bool, timeout time.Duration) error {
	roles := heldBy(v, node)
	_, live := v.Nodes[node]
	if !force {
		if len(roles) > 0 {
			return fmt.Errorf("node %s holds %s: drain it first (understudy node drain %s --wait) or use --force",
				node, strings.Join(roles, ", "), node)
		}
		if live && !v.Cordoned[node] {
			return fmt.Errorf("node %s is live and not cordoned: drain it first (understudy node drain %s --wait) or use --force",
				node, node)
		}
	}
	if live {
		if _, err := sendCommand(ctx, st, node, lease.Command{Kind: lease.CommandRemove, Force: force}); err != nil {
			return err
		}
		_, err := waitView(ctx, st, timeout, func(v *lease.View) (bool, error) {
			_, live := v.Nodes[node]
			return !live, nil
		})
		if errors.Is(err, errWaitTimeout) {
			return fmt.Errorf("node %s: its agent did not leave: %w; stop the agent, then run `understudy node remove %s` again",
				node, err, node)
		}
		if err != nil {
			return err
		}
	}
	// The agent removes its own records on the way out; removing again covers a down node
	// and an agent that died half-way, and is idempotent.
	if err := st.RemoveNode(ctx, node); err != nil {
		return fmt.Errorf("remove node %s: %w", node, err)
	}
	_, _ = fmt.Fprintf(a.stdout, "node %s removed\n", node)
	return nil
}

func (a *app) newNodeDrainCmd() *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain NAME",
		Short: "Cordon a node and have it give its roles back cleanly",
		Long: `drain cordons the node (it takes no new role) and tells its agent to stop its roles
and release them cleanly, so the standbys that take them over need not fence it.
Undo with uncordon.`,
		Example: "  understudy node drain node-a --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withNode(ctx, args, func(st *lease.Store, v *lease.View, node string) error {
				return a.drainNode(ctx, st, v, node, wait, timeout)
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the node holds no role")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

func (a *app) drainNode(ctx context.Context, st *lease.Store, v *lease.View, node string, wait bool, timeout time.Duration) error {
	if err := st.SetCordoned(ctx, node, true); err != nil {
		return fmt.Errorf("cordon node %s: %w", node, err)
	}
	// A down node holds nothing; a queued drain would only surprise it when it returns.
	if _, live := v.Nodes[node]; live {
		if _, err := sendCommand(ctx, st, node, lease.Command{Kind: lease.CommandDrain}); err != nil {
			return err
		}
	}
	_, _ = fmt.Fprintf(a.stdout, "node %s cordoned and draining\n", node)
	if !wait {
		return nil
	}
	start := time.Now()
	// Progress: one line per role as it leaves the node, and where it went.
	pending := map[string]bool{}
	for _, r := range heldBy(v, node) {
		pending[r] = true
	}
	_, err := waitView(ctx, st, timeout, func(v *lease.View) (bool, error) {
		now := map[string]bool{}
		for _, r := range heldBy(v, node) {
			now[r] = true
		}
		for _, r := range slices.Sorted(maps.Keys(pending)) {
			if now[r] {
				continue
			}
			to := "unheld for now"
			if c, ok := v.Claims[r]; ok {
				to = "now held by " + c.Node
			}
			_, _ = fmt.Fprintf(a.stdout, "  %s released after %s, %s\n", r, shortDuration(time.Since(start)), to)
			delete(pending, r)
		}
		return len(now) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("drain node %s: %w", node, err)
	}
	_, _ = fmt.Fprintf(a.stdout, "node %s drained in %s: it holds no role\n", node, shortDuration(time.Since(start)))
	return nil
}

func (a *app) newNodeCordonCmd(on bool) *cobra.Command {
	use, short, example := "cordon NAME", "Keep a node out of failover (it keeps the roles it holds)", "  understudy node cordon node-d"
	if !on {
		use, short, example = "uncordon NAME", "Let a cordoned or drained node take roles again", "  understudy node uncordon node-d"
	}
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withNode(ctx, args, func(st *lease.Store, _ *lease.View, node string) error {
				if err := st.SetCordoned(ctx, node, on); err != nil {
					return fmt.Errorf("%s node %s: %w", cmd.Name(), node, err)
				}
				_, _ = fmt.Fprintf(a.stdout, "node %s %sed\n", node, cmd.Name())
				return nil
			})
		},
	}
}

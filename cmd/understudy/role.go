package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

func (a *app) newRoleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "role",
		Short:   "Move roles between nodes",
		Example: "  understudy role move web --to node-d",
		RunE:    groupRunE,
	}
	cmd.AddCommand(a.newRoleMoveCmd())
	return cmd
}

type moveOpts struct {
	role, to string
	timeout  time.Duration
}

func (a *app) newRoleMoveCmd() *cobra.Command {
	var o moveOpts
	cmd := &cobra.Command{
		Use:   "move ROLE --to NODE",
		Short: "Hand a role to another node (clean release, no fencing)",
		Long: `move tells the current holder to stop the role and release it cleanly with NODE as
the target; NODE then claims it, without fencing the old holder. It waits until NODE holds
the role (at most --timeout) and prints how long the move took. NODE must be live, not
cordoned and have room for one more role.`,
		Example: "  understudy role move web --to node-d --timeout 1m",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.role = args[0]
			if err := lease.CheckRoleName(o.role); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if o.to == "" {
				return usageErrorf("missing --to NODE: the node to move role %s to", o.role)
			}
			if err := lease.CheckNodeName(o.to); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return a.moveRole(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.to, "to", "", "node to move the role to")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for NODE to hold the role")
	return cmd
}

func (a *app) moveRole(ctx context.Context, o moveOpts) error {
	st, done, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	v, err := st.View(ctx)
	if err != nil {
		return fmt.Errorf("read cluster %q: %w", a.cluster, err)
	}
	holder, err := checkMove(v, o.role, o.to)
	if err != nil || holder == o.to {
		if holder == o.to {
			_, _ = fmt.Fprintf(a.stdout, "role %s is already on %s (token %d)\n", o.role, o.to, v.Claims[o.role].Token)
		}
		return err
	}
	start := time.Now()
	id, err := sendCommand(ctx, st, holder, lease.Command{Kind: lease.CommandMove, Role: o.role, To: o.to})
	if err != nil {
		return err
	}
	v, err = waitView(ctx, st, o.timeout, moveDone(o.role, o.to, holder, id))
	if errors.Is(err, errWaitTimeout) {
		return fmt.Errorf("move role %s to %s: %w (%s); it may still complete: see `understudy status` and `understudy history %s`",
			o.role, o.to, err, roleWhere(v, o.role), o.role)
	}
	if err != nil {
		return fmt.Errorf("move role %s to %s: %w", o.role, o.to, err)
	}
	_, _ = fmt.Fprintf(a.stdout, "role %s moved from %s to %s in %s (token %d)\n",
		o.role, holder, o.to, shortDuration(time.Since(start)), v.Claims[o.role].Token)
	return nil
}

// checkMove validates a move against the view and returns the current holder. Unknown
// names are bad input (exit 2); a target that cannot take the role now is a failure.
func checkMove(v *lease.View, role, to string) (string, error) {
	if v.Spec == nil {
		return "", usageErrorf("unknown role %q: no cluster spec applied", role)
	}
	if _, ok := v.Spec.Role(role); !ok {
		names := make([]string, 0, len(v.Spec.Roles))
		for _, r := range v.Spec.Roles {
			names = append(names, r.Name)
		}
		return "", usageErrorf("unknown role %q (roles: %s)", role, strings.Join(names, ", "))
	}
	if err := knownNode(v, to); err != nil {
		return "", err
	}
	c, held := v.Claims[role]
	if held && c.Node == to {
		return to, nil
	}
	rec, live := v.Nodes[to]
	if !live {
		return "", fmt.Errorf("node %s is down: it cannot take role %s", to, role)
	}
	if v.Cordoned[to] {
		return "", fmt.Errorf("node %s is cordoned: uncordon it first (understudy node uncordon %s)", to, to)
	}
	// Agents hand a released role only to a free standby or active target; any other
	// target would leave the role to whichever standby claims it first.
	if rec.State != takeover.StateStandby && rec.State != takeover.StateActive {
		return "", fmt.Errorf("node %s is %s: only a standby or active node can take role %s (qualify it first: understudy node qualify %s --wait)",
			to, rec.State, role, to)
	}
	if !held {
		return "", fmt.Errorf("role %s is unheld: nothing to move; a free qualified standby claims it on its own", role)
	}
	if n, maxRoles := len(heldBy(v, to)), v.Spec.MaxRolesPerNode; maxRoles > 0 && n >= maxRoles {
		return "", fmt.Errorf("node %s already holds %d role(s) (%s), max_roles_per_node is %d",
			to, n, strings.Join(heldBy(v, to), ", "), maxRoles)
	}
	return c.Node, nil
}

// moveDone is done when the claim names the target. It fails early when the old holder
// acknowledged the command but kept the role and recorded no target: it refused the move.
func moveDone(role, to, holder, id string) waitCond {
	return func(v *lease.View) (bool, error) {
		c, held := v.Claims[role]
		if held && c.Node == to {
			return true, nil
		}
		if held && c.Node == holder && v.Targets[role] == "" && !commandPending(v, holder, id) {
			return false, fmt.Errorf("node %s did not release the role (see `understudy history %s`)", holder, role)
		}
		return false, nil
	}
}

func roleWhere(v *lease.View, role string) string {
	if v == nil {
		return "state unknown"
	}
	if c, ok := v.Claims[role]; ok {
		return "now held by " + c.Node
	}
	return "now unheld"
}

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lease"
)

func (a *app) newNodeQualifyCmd() *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "qualify NAME",
		Short: "Have a node's agent test that it can run every role",
		Long: `qualify asks the node's agent to test each role's storage, executable and floating
IP without disturbing the holders. A node that passes becomes a standby. With --wait it
waits for the result and prints every check; exit 1 if the node failed.`,
		Example: "  understudy node qualify node-e --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return a.withNode(ctx, args, func(st *lease.Store, v *lease.View, node string) error {
				return a.qualifyNode(ctx, st, v, node, wait, timeout)
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the result and print the checks")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

func (a *app) qualifyNode(ctx context.Context, st *lease.Store, v *lease.View, node string, wait bool, timeout time.Duration) error {
	if _, live := v.Nodes[node]; !live {
		return fmt.Errorf("node %s is down: qualification runs in its agent; start `understudy agent` on it", node)
	}
	id, err := sendCommand(ctx, st, node, lease.Command{Kind: lease.CommandQualify})
	if err != nil {
		return err
	}
	if !wait {
		_, _ = fmt.Fprintf(a.stdout, "qualification of node %s requested; see `understudy status`\n", node)
		return nil
	}
	start := time.Now()
	v, err = waitView(ctx, st, timeout, func(v *lease.View) (bool, error) {
		if _, live := v.Nodes[node]; !live {
			return false, fmt.Errorf("node %s went down during qualification", node)
		}
		return !commandPending(v, node, id), nil
	})
	if err != nil {
		return fmt.Errorf("qualify node %s: %w", node, err)
	}
	q, ok := v.Qualified[node]
	if !ok {
		return fmt.Errorf("qualify node %s: the agent finished but stored no result; see `understudy history`", node)
	}
	if err := renderQualification(a.stdout, node, q, time.Since(start)); err != nil {
		return err
	}
	if !q.Passed {
		return &exitError{code: exitFailure}
	}
	return nil
}

func renderQualification(w io.Writer, node string, q lease.Qualification, took time.Duration) error {
	tw := newTable(w)
	row(tw, "ROLE", "CHECK", "RESULT", "DETAIL")
	for _, c := range q.Checks {
		result := "passed"
		if !c.Passed {
			result = "FAILED"
		}
		row(tw, dash(c.Role), c.Name, result, dash(oneLine(c.Detail)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "passed: it can stand in for every role"
	if !q.Passed {
		verdict = "FAILED: it stays on probation"
	}
	_, err := fmt.Fprintf(w, "\nnode %s %s (%d checks, spec revision %d, %s)\n",
		node, verdict, len(q.Checks), q.SpecRev, shortDuration(took))
	return err
}

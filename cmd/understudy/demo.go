package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lab"
)

func newDemoCmd() *cobra.Command {
	var o lab.DemoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Tell the failover story in a lab of network namespaces on this machine",
		Long: `demo builds a small farm on this machine out of network namespaces (root needed):
a client network (192.0.2.0/24) where the floating IPs live, a control network with
etcd and a SAN network with tgtd (198.51.100.0/24), and nodes a, b, c, d (later e), each
a host on all three running a real 'understudy agent'. Each of role-a, role-b and role-c
has a LUN on the SAN (reached through the agent's own iSCSI session, fenced with SCSI-3
persistent reservations, ext4 mounted), a floating IP and 'understudy demo-service',
which keeps a write log on the LUN. A client writes to role-a every 20 ms throughout.
The story follows the two flows of the design:

  FIG. 5  a, b, c active and d standby; a fails (links down, kill -9); d fences a, mounts,
          starts, takes the VIP; a comes back as the standby and role-a stays on d.
  FIG. 7  node e is added, qualified and stands by; b fails and one of the two standbys
          takes role-b; the other is put to work with 'role move'; d is drained and
          removed.

At the end every write the client saw acknowledged is read back from the LUN. Each step
prints its elapsed time; the status after each step shows who answers on each VIP.
The lab is removed at the end (also on Ctrl-C); 'understudy lab down --all' removes the
leftovers of a crashed run. --loopback runs the story on 127.0.0.1 without root
(executables only: no storage, fencing or floating IPs).`,
		Example: `  sudo understudy demo
  sudo understudy demo --keep     # keep the lab running afterwards; Ctrl-C stops it
  understudy demo --loopback      # no root: agents and services on 127.0.0.1 only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("demo: find the understudy executable: %w", err)
			}
			o.Binary = bin
			err = lab.RunDemo(cmd.Context(), cmd.OutOrStdout(), o)
			if err != nil && cmd.Context().Err() != nil {
				return &exitError{code: exitFailure} // interrupted: the demo printed so
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Keep, "keep", false, "keep the lab running after the story until Ctrl-C")
	f.StringVar(&o.Dir, "dir", "", "new or empty directory for etcd data, agent configs and logs (kept); default a temporary one (removed)")
	f.DurationVar(&o.TTL, "ttl", lab.DefaultTTL, "lease TTL of the lab's agents (whole seconds)")
	f.BoolVar(&o.NoColour, "no-color", false, "no colours even on a terminal")
	f.BoolVar(&o.Loopback, "loopback", false, "run on 127.0.0.1 without root: no namespaces, storage, fencing or VIPs")
	return cmd
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure failover and move times on a lab cluster on this machine",
		Long: `bench starts the demo's lab (embedded etcd, agents a, b, c active, d standby, on
127.0.0.1) and measures how long role-a is unavailable:

  failover  kill -9 the holder's agent, time until the service answers from the new holder
            (kill-to-running) and the takeover's own time from detecting the expired claim
            to running (detect-to-running); the killed node restarts as the standby.
  move      'understudy role move' to the standby, time until the service answers there.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newBenchFailoverCmd(), newBenchMoveCmd())
	return cmd
}

// benchFlags are the flags both benchmarks share.
type benchFlags struct {
	opts   lab.BenchOptions
	output string
}

func (b *benchFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&b.opts.Trials, "trials", 10, "number of measured trials")
	f.DurationVar(&b.opts.TTL, "ttl", lab.DefaultTTL, "lease TTL of the lab's agents (whole seconds)")
	f.StringVar(&b.opts.Dir, "dir", "", "new or empty directory for etcd data and agent logs (kept); default a temporary one")
	f.StringVarP(&b.output, "output", "o", formatTable, "output format: table or json")
}

// prepare validates the flags and fills what the command knows.
func (b *benchFlags) prepare(cmd *cobra.Command) error {
	if err := outputFlag(b.output, formatTable, formatJSON); err != nil {
		return err
	}
	if b.opts.Trials < 1 {
		return usageErrorf("invalid --trials %d: want 1 or more", b.opts.Trials)
	}
	if b.opts.TTL < time.Second || b.opts.TTL%time.Second != 0 {
		return usageErrorf("invalid --ttl %s: want whole seconds, at least 1s", b.opts.TTL)
	}
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find the understudy executable: %w", err)
	}
	b.opts.Binary = bin
	if b.output == formatTable {
		b.opts.Progress = cmd.OutOrStdout()
	}
	return nil
}

func newBenchFailoverCmd() *cobra.Command {
	var b benchFlags
	cmd := &cobra.Command{
		Use:     "failover",
		Short:   "Kill the holder's agent N times; report kill-to-running and detect-to-running",
		Example: "  understudy bench failover --trials 10\n  understudy bench failover --trials 20 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := b.prepare(cmd); err != nil {
				return err
			}
			rep, err := lab.BenchFailover(cmd.Context(), b.opts)
			if err != nil {
				return err
			}
			if b.output == formatJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			w := cmd.OutOrStdout()
			_, _ = fmt.Fprintf(w, "\nfailover of role-a, %d trials, lease TTL %s:\n", len(rep.Trials), rep.TTL)
			return statsTable(w, map[string]lab.Stats{
				"kill-to-running":   rep.KillToRunning,
				"detect-to-running": rep.DetectToRunning,
			}, "kill-to-running", "detect-to-running")
		},
	}
	b.register(cmd)
	return cmd
}

func newBenchMoveCmd() *cobra.Command {
	var b benchFlags
	cmd := &cobra.Command{
		Use:     "move",
		Short:   "Move a role N times with 'role move'; report command-to-running",
		Example: "  understudy bench move --trials 10",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := b.prepare(cmd); err != nil {
				return err
			}
			rep, err := lab.BenchMove(cmd.Context(), b.opts)
			if err != nil {
				return err
			}
			if b.output == formatJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			w := cmd.OutOrStdout()
			_, _ = fmt.Fprintf(w, "\ngraceful move of role-a, %d trials, lease TTL %s:\n", len(rep.Trials), rep.TTL)
			return statsTable(w, map[string]lab.Stats{"command-to-running": rep.CommandToRunning}, "command-to-running")
		},
	}
	b.register(cmd)
	return cmd
}

// statsTable prints one row of min/p50/p95/max per metric, in the given order.
func statsTable(w io.Writer, stats map[string]lab.Stats, order ...string) error {
	tw := newTable(w)
	row(tw, "METRIC", "N", "MIN", "P50", "P95", "MAX")
	for _, name := range order {
		s := stats[name]
		row(tw, name, fmt.Sprint(s.N), shortDuration(s.Min), shortDuration(s.P50), shortDuration(s.P95), shortDuration(s.Max))
	}
	return tw.Flush()
}

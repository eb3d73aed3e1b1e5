package main

import (
	"fmt"
	"io"
	"os"
	"strings"
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
		Long: `bench builds the demo's lab (network namespaces, etcd, tgtd; agents a, b, c
active with role-a, role-b, role-c, d standby) and measures role-a as a user sees it: a
client in the client namespace asks role-a's VIP every 10 ms, and the figure is the
longest gap in successful answers.

  failover  fail the holder (--mode kill: kill -9 its agent; linkdown: its links go down
            with the agent running; stop: SIGTERM, a clean release), then bring it back
            as the standby; also fail-to-running, detect-to-running and each takeover
            step. With --keepalived (default) the same client then measures keepalived
            moving a VIP between two more namespaces of the same lab, VRRPv2 advert_int 1
            and VRRPv3 advert_int 0.1 (keepalived moves only an address).
  move      'understudy role move' to the standby: command-to-running and client gap.
  scale     many lightweight in-process agents against a 3-member etcd.

--loopback runs failover (kill, stop) and move on 127.0.0.1 without root.`,
		Example: `  sudo understudy bench failover --trials 10
  sudo understudy bench move --trials 10
  understudy bench failover --loopback --trials 5`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newBenchFailoverCmd(), newBenchMoveCmd(), newBenchScaleCmd())
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
	f.BoolVar(&b.opts.Loopback, "loopback", false, "run on 127.0.0.1 without root (no namespaces, storage, fencing or VIPs)")
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
		Use:   "failover",
		Short: "Fail role-a's holder N times; report the client's gap, each step, and keepalived beside it",
		Example: `  sudo understudy bench failover --trials 10
  sudo understudy bench failover --mode linkdown --trials 10 -o json
  sudo understudy bench failover --mode stop --keepalived=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := b.prepare(cmd); err != nil {
				return err
			}
			switch b.opts.Mode {
			case lab.ModeKill, lab.ModeStop:
			case lab.ModeLinkDown:
				if b.opts.Loopback {
					return usageErrorf("invalid --mode linkdown with --loopback: links exist only in the namespace lab")
				}
			default:
				return usageErrorf("invalid --mode %q: allowed kill, linkdown, stop", b.opts.Mode)
			}
			if b.opts.Detection != "lease" && b.opts.Detection != "fast" {
				return usageErrorf("invalid --detection %q: allowed lease, fast", b.opts.Detection)
			}
			if b.opts.Loopback {
				b.opts.Keepalived = false
				if b.opts.Detection == "fast" {
					return usageErrorf("invalid --detection fast with --loopback: fast detection needs fencing, which needs the namespace lab")
				}
			}
			rep, err := lab.BenchFailover(cmd.Context(), b.opts)
			if err != nil {
				return err
			}
			if b.output == formatJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			return failoverTable(cmd.OutOrStdout(), rep)
		},
	}
	b.register(cmd)
	cmd.Flags().StringVar(&b.opts.Mode, "mode", lab.ModeKill, "how the holder fails: kill, linkdown or stop")
	cmd.Flags().BoolVar(&b.opts.Keepalived, "keepalived", true, "also measure keepalived (VRRPv2 1 s, VRRPv3 100 ms adverts) in the same lab")
	cmd.Flags().StringVar(&b.opts.Detection, "detection", "lease", "how standbys detect a dead holder: lease (expiry) or fast (heartbeats + a second check, then fence)")
	return cmd
}

// failoverTable prints the failover report: understudy's figures, its step medians, and
// keepalived's gaps with the ratio of medians.
func failoverTable(w io.Writer, rep *lab.FailoverReport) error {
	where := "network namespaces (iSCSI storage, SCSI-3 fencing, VIP)"
	if !rep.Namespaces {
		where = "127.0.0.1 (executables only)"
	}
	_, _ = fmt.Fprintf(w, "\nfailover of role-a, mode %s, detection %s, %d trials, lease TTL %s, %s:\n",
		rep.Mode, rep.Detection, len(rep.Trials), rep.TTL, where)
	stats := map[string]lab.Stats{
		"client gap":        rep.ClientGap,
		"fail-to-running":   rep.FailToRunning,
		"detect-to-running": rep.DetectToRunning,
	}
	order := []string{"client gap", "fail-to-running", "detect-to-running"}
	for _, k := range rep.Keepalived {
		name := fmt.Sprintf("keepalived v%d %s", k.Version, k.AdvertInt)
		stats[name] = k.Gap
		order = append(order, name)
	}
	if err := statsTable(w, stats, order...); err != nil {
		return err
	}
	var steps []string
	for _, name := range lab.StepOrder(rep.StepP50) {
		steps = append(steps, name+"="+shortDuration(rep.StepP50[name]))
	}
	_, _ = fmt.Fprintf(w, "\ntakeover steps, median: %s\n", strings.Join(steps, " "))
	for _, k := range rep.Keepalived {
		if k.Gap.P50 > 0 {
			_, _ = fmt.Fprintf(w, "client gap p50, understudy / keepalived v%d %s: %.2f\n", k.Version, k.AdvertInt,
				float64(rep.ClientGap.P50)/float64(k.Gap.P50))
		}
	}
	if len(rep.Keepalived) > 0 {
		_, _ = fmt.Fprintf(w, "note: %s\n", rep.Keepalived[0].Caveat)
	}
	return nil
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
			return statsTable(w, map[string]lab.Stats{"command-to-running": rep.CommandToRunning, "client gap": rep.ClientGap},
				"client gap", "command-to-running")
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

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lab"
)

// scaleDefaultTTL is the agent's production default TTL (takeover's `ttl` option). The
// lab's 1 s (lab.DefaultTTL) is too short at scale: 1000 lightweight agents on a 2-core
// machine collapse with it.
const scaleDefaultTTL = 3 * time.Second

// newBenchScaleCmd is `understudy bench scale` (issue #5).
func newBenchScaleCmd() *cobra.Command {
	var o lab.ScaleOptions
	var output string
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Many lightweight in-process agents against a 3-member etcd: claims/s, failover, etcd CPU, keepalives",
		Long: `scale runs --nodes lightweight agents in this process against a 3-member etcd whose
members are child processes ('understudy lab etcd') on 127.0.0.1. An agent is the real
lease protocol without resources: its own lease (lease.Session, KeepAliveOnce every
TTL/3), a permanent node id, a node record, a watch on the roles, and on an unheld role
TryClaim + MarkHolder exactly as the agent does. Agents share one etcd client per
--agents-per-client: a real farm has one per node, but that many gRPC connections on a
few cores would measure this machine rather than etcd.

It reports, for --nodes and again for --baseline-nodes on a fresh cluster:
  start of day   every agent started at once: time until all joined and all roles are
                 claimed, and claims per second
  failover       --trials times: the holder's session is abandoned without revoke (a
                 crash); time until another agent's TryClaim of the role succeeds
  etcd           CPU seconds and % of each member (from /proc) at the start of day and
                 over a steady --window, RSS and peak RSS
  keepalives     requests/s counted by the members (/metrics) against the expected
                 nodes/(TTL/3), and the client bytes per keepalive

The members share this machine's CPUs with the agents; the figures say what this
machine does, and which side ran out first.

--ttl defaults to 3s, the agent's production default. Every agent sends a keepalive
every TTL/3: 1000 agents send 1000/s at 3s but 3000/s at 1s, and at --ttl 1s 1000
lightweight agents on a 2-core machine collapse: the claim phase saturates the CPUs,
keepalives arrive late, sessions expire and set off new claim races, and the farm
never settles.`,
		Example: `  understudy bench scale --nodes 1000
  understudy bench scale --nodes 200 --full-view      # agents re-read everything like the real agent
  understudy bench scale --nodes 1000 -o json > scale.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(output, formatTable, formatJSON); err != nil {
				return err
			}
			if err := checkScaleFlags(o); err != nil {
				return err
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench scale: find the understudy executable: %w", err)
			}
			o.Binary = bin
			w := cmd.OutOrStdout()
			if output == formatTable {
				o.Progress = w
			}
			rep, err := lab.BenchScale(cmd.Context(), o)
			if rep == nil || len(rep.Runs) == 0 {
				return err
			}
			// A run that failed still reports what it measured before: at scale, how it
			// fails is the finding. The error follows, and the exit code says it.
			if output == formatJSON {
				return errors.Join(writeJSON(w, rep), err)
			}
			return errors.Join(scaleTables(w, rep), err)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", lab.DefaultScaleNodes, "number of lightweight agents")
	f.IntVar(&o.Roles, "roles", 0, "number of roles (default nodes/4, at least 1)")
	f.IntVar(&o.BaselineNodes, "baseline-nodes", 4, "repeat with this many agents on a fresh cluster for comparison (0: no baseline)")
	f.DurationVar(&o.TTL, "ttl", scaleDefaultTTL, "lease TTL of every agent, whole seconds: the production default; at 1s, 1000 agents on a 2-core machine collapse")
	f.IntVar(&o.Trials, "trials", lab.DefaultScaleTrials, "failover trials per run")
	f.IntVar(&o.AgentsPerClient, "agents-per-client", lab.DefaultScaleAgentsPerClient, "agents sharing one etcd client")
	f.DurationVar(&o.Window, "window", lab.DefaultScaleWindow, "steady-state measurement window")
	f.BoolVar(&o.FullView, "full-view", false, "agents watch the whole prefix and re-read it after every change and every second, as the real agent does")
	f.DurationVar(&o.Timeout, "timeout", lab.DefaultScaleTimeout, "bound of each wait (members ready, start of day, one failover)")
	f.StringVar(&o.Dir, "dir", "", "new or empty directory for the members' data and logs (kept); default a temporary one")
	f.StringVarP(&output, "output", "o", formatTable, "output format: table or json")
	return cmd
}

func checkScaleFlags(o lab.ScaleOptions) error {
	switch {
	case o.Nodes < 2:
		return usageErrorf("invalid --nodes %d: want 2 or more", o.Nodes)
	case o.Roles < 0 || o.Roles >= o.Nodes:
		return usageErrorf("invalid --roles %d: want 1 to %d (nodes-1: a failover needs a standby), or 0 for nodes/4", o.Roles, o.Nodes-1)
	case o.BaselineNodes == 1 || o.BaselineNodes < 0:
		return usageErrorf("invalid --baseline-nodes %d: want 0 (none) or 2 or more", o.BaselineNodes)
	case o.TTL < time.Second || o.TTL%time.Second != 0:
		return usageErrorf("invalid --ttl %s: want whole seconds, at least 1s", o.TTL)
	case o.Trials < 1:
		return usageErrorf("invalid --trials %d: want 1 or more", o.Trials)
	case o.AgentsPerClient < 1:
		return usageErrorf("invalid --agents-per-client %d: want 1 or more", o.AgentsPerClient)
	case o.Window <= 0 || o.Timeout <= 0:
		return usageErrorf("invalid --window %s or --timeout %s: want positive durations", o.Window, o.Timeout)
	}
	return nil
}

// scaleTables prints the runs side by side, then each run's members.
func scaleTables(w io.Writer, rep *lab.ScaleReport) error {
	if len(rep.Runs) == 0 {
		return nil
	}
	r0 := rep.Runs[0]
	_, _ = fmt.Fprintf(w, "\nlightweight agents (lease protocol, no resources), TTL %s, %d etcd members; %s\n",
		r0.TTL, rep.EtcdMembers, rep.Note)
	tw := newTable(w)
	head := []string{"METRIC"}
	for _, r := range rep.Runs {
		head = append(head, fmt.Sprintf("%d NODES", r.Nodes))
	}
	row(tw, head...)
	for _, m := range scaleMetrics {
		cols := []string{m.name}
		for _, r := range rep.Runs {
			cols = append(cols, m.value(r))
		}
		row(tw, cols...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, _ = fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "NODES", "MEMBER", "PID", "LEADER", "JOIN CPU", "CLAIM CPU", "STEADY CPU", "STEADY CPU%", "RSS", "PEAK RSS", "KEEPALIVES/S")
	for _, r := range rep.Runs {
		for i, m := range r.Steady.Members {
			join, claim := "-", "-"
			if i < len(r.Join.Members) && i < len(r.Claim.Members) {
				join = fmt.Sprintf("%.2fs", r.Join.Members[i].CPUSeconds)
				claim = fmt.Sprintf("%.2fs", r.Claim.Members[i].CPUSeconds)
			}
			row(tw, fmt.Sprint(r.Nodes), m.Name, fmt.Sprint(m.PID), yesNo(m.Name == r.Leader), join, claim,
				fmt.Sprintf("%.2fs", m.CPUSeconds), fmt.Sprintf("%.0f%%", m.CPUPercent),
				sizeIEC(float64(m.RSSBytes)), sizeIEC(float64(m.PeakRSSBytes)), fmt.Sprintf("%.0f", m.Keepalives))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Runs {
		if r.Error != "" {
			_, _ = fmt.Fprintf(w, "\nthe run with %d nodes stopped early; the figures above are what it measured before\n", r.Nodes)
		}
	}
	return nil
}

// scaleMetrics are the rows of the side-by-side table, in order.
var scaleMetrics = []struct {
	name  string
	value func(r lab.ScaleRun) string
}{
	{"roles", func(r lab.ScaleRun) string { return fmt.Sprint(r.Roles) }},
	{"etcd clients (agents share them)", func(r lab.ScaleRun) string { return fmt.Sprint(r.Clients) }},
	{"agents re-read everything (--full-view)", func(r lab.ScaleRun) string { return yesNo(r.FullView) }},
	{"id allocation, all nodes", func(r lab.ScaleRun) string { return shortDuration(r.IDAllocation) }},
	{"join: all agents started at once, all joined", func(r lab.ScaleRun) string { return shortDuration(r.Joined) }},
	{"join: etcd CPU / agents CPU", func(r lab.ScaleRun) string { return cpuPair(r.Join) }},
	{"claim: spec applied, all roles claimed", func(r lab.ScaleRun) string { return shortDuration(r.Claimed) }},
	{"claim: claims/s", func(r lab.ScaleRun) string { return fmt.Sprintf("%.1f", r.ClaimsPerSecond) }},
	{"claim: etcd CPU / agents CPU", func(r lab.ScaleRun) string { return cpuPair(r.Claim) }},
	{"failover min / p50 / max", func(r lab.ScaleRun) string { return statsLine(r.Failover) }},
	{"failover to MarkHolder p50", func(r lab.ScaleRun) string { return shortDuration(r.FailoverMarked.P50) }},
	{"steady: keepalives/s (expected N/(TTL/3))", func(r lab.ScaleRun) string {
		return fmt.Sprintf("%.0f (%.0f)", r.Steady.Traffic.Keepalives, r.KeepalivesExpected)
	}},
	{"steady: leases renewed/s (leader)", func(r lab.ScaleRun) string { return fmt.Sprintf("%.0f", r.Steady.Traffic.Renewed) }},
	{"steady: client bytes/s in / out", func(r lab.ScaleRun) string {
		return sizeIEC(r.Steady.Traffic.ClientInBytes) + " / " + sizeIEC(r.Steady.Traffic.ClientOutBytes)
	}},
	{"steady: bytes per keepalive (in+out)", func(r lab.ScaleRun) string { return fmt.Sprintf("%.0f", r.BytesPerKeepalive) }},
	{"steady: peer bytes/s sent", func(r lab.ScaleRun) string { return sizeIEC(r.Steady.Traffic.PeerSentBytes) }},
	{"steady: etcd CPU (3 members)", func(r lab.ScaleRun) string { return fmt.Sprintf("%.0f%%", r.Steady.EtcdCPUPercent) }},
	{"steady: agents CPU / RSS", func(r lab.ScaleRun) string {
		return fmt.Sprintf("%.0f%% / %s", r.Steady.AgentsCPUPercent, sizeIEC(float64(r.Steady.AgentsRSSBytes)))
	}},
	{"steady: machine busy", func(r lab.ScaleRun) string { return fmt.Sprintf("%.0f%%", r.Steady.MachineBusyPercent) }},
	{"full view: keys / size / latency", func(r lab.ScaleRun) string {
		return fmt.Sprintf("%d / %s / %s", r.View.Keys, sizeIEC(float64(r.View.Bytes)), shortDuration(r.View.Latency))
	}},
	{"real agents' re-reads (N x view/s)", func(r lab.ScaleRun) string { return sizeIEC(r.View.RealAgentBytesPerSecond) + "/s" }},
	{"claims / lost races / errors", func(r lab.ScaleRun) string {
		return fmt.Sprintf("%d / %d / %d", r.Claims, r.ClaimRaces, r.ClaimErrors)
	}},
	{"stranded own claims / sessions lost", func(r lab.ScaleRun) string {
		return fmt.Sprintf("%d / %d", r.Stranded, r.SessionsLost)
	}},
}

// cpuPair: "etcd 1.2s (80%) / agents 0.5s (33%)"; percent of one CPU.
func cpuPair(u lab.Usage) string {
	return fmt.Sprintf("%.1fs (%.0f%%) / %.1fs (%.0f%%)", u.EtcdCPUSeconds, u.EtcdCPUPercent, u.AgentsCPUSeconds, u.AgentsCPUPercent)
}

func statsLine(s lab.Stats) string {
	return strings.Join([]string{shortDuration(s.Min), shortDuration(s.P50), shortDuration(s.Max)}, " / ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// sizeIEC prints a byte count compactly: "812B", "3.4KiB", "12.0MiB".
func sizeIEC(b float64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%.0fB", b)
	}
	div, exp := float64(unit), 0
	for n := b / unit; n >= unit && exp < 3; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", b/div, "KMGT"[exp])
}

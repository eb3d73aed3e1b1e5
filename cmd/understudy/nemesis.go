package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lab/nemesis"
)

// newNemesisCmd is `understudy nemesis`: the fault-injection suite on the namespace lab.
func newNemesisCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nemesis",
		Short: "Inject faults into a namespace lab while clients write, and check the invariants",
		Long: `nemesis builds a namespace lab (3 etcd members, tgtd, nodes a-e, roles role-a/b/c),
runs clients writing to every role through its floating IP, injects faults (the
scenarios), and judges the run from evidence: acknowledged writes against the LUNs read
directly, fencing tokens on the LUNs, ARP answers for each VIP, each node's resources,
and the clients' unavailability windows. See docs/reliability.md.`,
		Example: `  understudy nemesis list
  sudo understudy nemesis run --scenario pause --seed 7`,
		Args: cobra.NoArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(newNemesisRunCmd(), newNemesisListCmd())
	return cmd
}

func newNemesisRunCmd() *cobra.Command {
	var o nemesis.Options
	var output, reportFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one scenario, or all, against a fresh namespace lab (root)",
		Example: `  sudo understudy nemesis run --scenario kill
  sudo understudy nemesis run --scenario all --duration 0        # CI: every scenario once
  sudo understudy nemesis run --scenario all --duration 2h --seed 42 --report soak.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(output, formatTable, formatJSON); err != nil {
				return err
			}
			if o.Scenario != "all" && nemesis.Find(o.Scenario) == nil {
				return usageErrorf("invalid --scenario %q: allowed all, %s", o.Scenario, strings.Join(nemesis.Names(), ", "))
			}
			if o.Duration < 0 {
				return usageErrorf("invalid --duration %s: want 0 (each scenario once) or more", o.Duration)
			}
			if o.TTL < time.Second || o.TTL%time.Second != 0 {
				return usageErrorf("invalid --ttl %s: want whole seconds, at least 1s", o.TTL)
			}
			if o.Seed < 0 {
				return usageErrorf("invalid --seed %d: want a positive number (0: from the clock)", o.Seed)
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("nemesis: find the understudy executable: %w", err)
			}
			o.Binary, o.Out = bin, cmd.ErrOrStderr()
			rep, err := nemesis.Run(cmd.Context(), o)
			if rep != nil {
				if output == formatJSON {
					if jerr := writeJSON(cmd.OutOrStdout(), rep); jerr != nil {
						return jerr
					}
				} else {
					rep.WriteText(cmd.OutOrStdout())
				}
				if reportFile != "" {
					if werr := writeJSONFile(reportFile, rep); werr != nil {
						return werr
					}
				}
			}
			if err != nil {
				return err
			}
			if !rep.OK() {
				return &exitError{code: exitFailure, err: fmt.Errorf("nemesis: an invariant failed (replay: --seed %d)", rep.Seed)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Scenario, "scenario", "all", "scenario to run, or all (see `understudy nemesis list`)")
	f.DurationVar(&o.Duration, "duration", 0, "keep injecting faults (chosen by the seed) until this much time passed; 0: each scenario (and variant) once")
	f.Int64Var(&o.Seed, "seed", 0, "seed of the random schedule (0: from the clock); printed for replay")
	f.DurationVar(&o.TTL, "ttl", nemesis.DefaultTTL, "lease TTL of the lab's agents (whole seconds)")
	f.StringVar(&o.Dir, "dir", "", "new or empty directory for the lab's etcd data and agent logs (kept); default a temporary one")
	f.StringVarP(&output, "output", "o", formatTable, "output format: table or json")
	f.StringVar(&reportFile, "report", "", "also write the report as JSON to this file")
	return cmd
}

func newNemesisListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the scenarios, what each injects and what understudy promises under it",
		Example: `  understudy nemesis list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, s := range nemesis.Scenarios() {
				name := s.Name
				if vs := s.Variants(); len(vs) > 1 {
					name += " (" + strings.Join(vs, ", ") + ")"
				}
				_, _ = fmt.Fprintf(tw, "%s\tfault:\t%s\n\tpromise:\t%s\n", name, s.Fault, s.Promise)
			}
			return tw.Flush()
		},
	}
}

func writeJSONFile(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("nemesis: report: %w", err)
	}
	if err := writeJSON(f, v); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes, documented in `understudy --help` so scripts can rely on them.
const (
	exitOK       = 0
	exitFailure  = 1 // the operation failed (etcd unreachable, refused, timed out ...)
	exitUsage    = 2 // bad invocation or bad input (unknown flag, invalid spec, unknown name)
	exitDegraded = 3 // status: at least one role of the spec is unheld
)

// exitError carries a specific exit code. A nil err exits silently with that code (status
// uses it for "degraded", which its own output already explains).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports bad input: exit code 2 and a hint to read --help.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// app holds what every command shares: output streams and the connection flags.
type app struct {
	stdout, stderr io.Writer
	configPath     string
	endpoints      []string
	cluster        string // resolved from flags, env and config by openStore
	prefix         string
	flags          *pflag.FlagSet // the root's persistent flags, for openStore
}

// run executes one invocation and returns the process exit code. It never calls os.Exit,
// so tests run it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	// Errors that cobra raises before a command's RunE (unknown command, wrong argument
	// count, missing required flag) are usage errors; mark when a RunE really started.
	ran := false
	markRunE(root, &ran)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	if !ran {
		code = exitUsage
	}
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			return code
		}
	}
	_, _ = fmt.Fprintf(stderr, "understudy: %v\n", err)
	if code == exitUsage && cmd != nil {
		_, _ = fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

func markRunE(c *cobra.Command, ran *bool) {
	if f := c.RunE; f != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*ran = true
			return f(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRunE(sub, ran)
	}
}

func (a *app) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "understudy",
		Short: "N+M failover: standbys take over the roles of dead nodes",
		Long: `understudy runs one agent per server. Every active role (storage + executable +
floating IP) is held through an etcd lease; when a holder dies, a standby fences it,
mounts the storage, starts the executable and takes the floating IP.

The other commands are the operator's view and controls of a running cluster.

Exit codes: 0 ok, 1 failure, 2 usage or bad input, 3 status degraded (a role is unheld).`,
		Example: `  understudy apply -f cluster.yaml
  understudy status
  understudy role move web --to node-d`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          nil, // root with subcommands: cobra reports unknown commands
	}
	pf := root.PersistentFlags()
	a.flags = pf
	pf.StringVar(&a.configPath, "config", "", "agent config file to read etcd endpoints and credentials from (env UNDERSTUDY_CONFIG)")
	pf.StringSliceVar(&a.endpoints, "etcd-endpoints", nil, "etcd endpoint URLs, comma separated (default from config or UNDERSTUDY_ETCD_ENDPOINTS)")
	pf.StringVar(&a.cluster, "cluster", "default", "cluster name")
	pf.StringVar(&a.prefix, "prefix", "", "etcd key prefix (default /understudy/<cluster>/)")

	root.AddCommand(
		a.newAgentCmd(),
		a.newStatusCmd(),
		a.newHistoryCmd(),
		a.newApplyCmd(),
		a.newNodeCmd(),
		a.newRoleCmd(),
		a.newEtcdSetupCmd(),
		newFenceCmd(), // cmd/understudy/fence.go, owned by the fence engineer
		newFenceAgentCmd(),
		// --- lab engineer's commands (demo.go, lab/): the seed story and benchmarks. ---
		newDemoCmd(),
		newBenchCmd(),
		newLabCmd(),
		newNemesisCmd(),
		newDemoServiceCmd(),
		newVersionCmd(),
		newDocsCmd(),
	)
	return root
}

// groupRunE makes a command that only groups subcommands reject unknown subcommands
// (cobra would print help and exit 0) and print help when called bare.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, set lazily only for the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErrorf("%s", msg)
}

// outputFlag validates -o against the allowed formats before anything touches etcd.
func outputFlag(value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return usageErrorf("invalid -o value %q: allowed %s", value, strings.Join(allowed, ", "))
}
